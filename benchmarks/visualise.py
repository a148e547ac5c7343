"""Visualisation targets of issue 3 on MNIST with a k=10 run, on CPU.

    .venv/bin/python benchmarks/visualise.py [--cache /tmp/kgan-bench] [--steps 300] [--prior-steps 600]

Trains (or reuses, from --cache) a k=10 MNIST run at 32 px and a prior with the small
encoder, then measures:
- prior fidelity on 500 held-out digits: SSIM (target >= 0.7) and PSNR;
- activation maximisation of the last critic layer (score) for every member, without a
  prior (pixels; regularised) and with the prior (DGN-AM): activation reached against the
  max over the real images of the member's tile;
- realism: each maximised image's distance to the nearest real digit in E's feature space,
  divided by the median real-to-real nearest-neighbour distance (1 = as close as real digits
  are to one another);
- principal directions vs random directions: image change per unit step, per member;
- the time each visualisation of one member takes (target <= 10 s; activation maximisation
  and prior training are reported).
Runs on one CPU thread so timings do not depend on what else the machine is doing with the
other cores. Prints a table; writes results.json into the cache folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kgan_core.prior import PriorConfig, load_prior, train_prior
from kgan_core.run import load_run
from kgan_core.train import TrainConfig, train
from kgan_core.visualise import VISUALISATIONS, visualise


def run_config(steps: int) -> TrainConfig:
    return TrainConfig(dataset="mnist", image_size=32, k=10, width=8, batch_size=32,
                       n_critic=2, steps=steps, rounds=3, lr_g=3e-4, lr_d=3e-4, seed=0, device="cpu",
                       log_every=25, checkpoint_every=100)


def prior_config(steps: int) -> PriorConfig:
    return PriorConfig(dataset="mnist", image_size=32, encoder="small", code_dim=128,
                       width=32, steps=steps, batch_size=64, holdout=500, log_every=250, seed=0, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default="/tmp/kgan-bench")
    parser.add_argument("--steps", type=int, default=300, help="k-GAN generator steps")
    parser.add_argument("--prior-steps", type=int, default=600)
    parser.add_argument("--am-steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(args.cache)
    run_dir = cache / f"mnist-k10-s{args.steps}"
    started = time.perf_counter()
    train(run_config(args.steps), run_dir,
          callback=lambda p: print(f"  run step {p.step}/{p.total}  tiles {p.tile_sizes}", flush=True))
    train_s = time.perf_counter() - started
    prior_path = cache / f"prior-small-32-s{args.prior_steps}-v2.safetensors"
    if not prior_path.exists():
        train_prior(prior_config(args.prior_steps), prior_path,
                    callback=lambda p: print(f"  prior step {p.step}: held-out mse {p.heldout_mse:.4f}", flush=True))
    prior = load_prior(prior_path)
    run = load_run(run_dir)
    _ = run.dataset  # loaded once, outside the timings
    results: dict = {"run": str(run_dir), "run_train_seconds_this_call": round(train_s, 1), "prior": str(prior_path),
                     "prior_metrics": prior.info["metrics"], "tile_label_nmi": run.metrics.get("tile_label_nmi")}

    timings = {}
    for what in VISUALISATIONS:
        if what == "activation-max":
            continue
        vis = visualise(run, what, 0)
        timings[what] = vis.timings["total_seconds"]
    results["seconds_per_visualisation_member0"] = timings

    am = visualise(run, "activation-max", None, prior=prior, steps=args.am_steps, seed=0)
    results["activation_max"] = {"numbers": am.numbers, "timings": am.timings}
    am.save(cache / "activation-max-score.png")
    am_one = visualise(run, "activation-max", 0, prior=prior, steps=args.am_steps, seed=0)
    results["activation_max_member0_seconds"] = am_one.timings["total_seconds"]

    every = visualise(run, "activation-max", None, layer="all", prior=prior, steps=args.am_steps, seed=0)
    results["activation_max_every_layer"] = {
        layer: {m: {"reach": sum(d["members"][str(j)][m]["reaches_real_max"] for j in range(run.k)),
                    "median_nn_ratio": statistics.median(d["members"][str(j)][m]["feature_nn_ratio"]
                                                         for j in range(run.k))}
                for m in every.numbers["methods"]}
        for layer, d in every.numbers["layers"].items()}
    every.save(cache / "activation-max-every-layer.png")

    directions = {}
    for j in range(run.k):
        n = visualise(run, "principal-directions", j).numbers
        directions[j] = (n["mean_change_principal"], n["mean_change_random"], n["principal_over_random"])
    results["principal_directions"] = directions
    visualise(run, "principal-directions", 0).save(cache / "principal-directions-m0.png")
    (cache / "results.json").write_text(json.dumps(results, indent=2))
    report(results, run.k)


def report(r: dict, k: int) -> None:
    m = r["prior_metrics"]
    print("\n## prior fidelity (500 held-out digits, 32 px)")
    print(f"SSIM {m['heldout_ssim']:.3f} (target >= 0.7)   PSNR {m['heldout_psnr']:.2f} dB   "
          f"training {m['train_seconds']:.0f} s")
    am = r["activation_max"]["numbers"]["members"]
    methods = r["activation_max"]["numbers"]["methods"]
    print("\n## activation maximisation of the last critic layer (score), per member")
    print("member | tile max | tile mean | " + " | ".join(f"{x} reached" for x in methods) + " | "
          + " | ".join(f"{x} NN ratio" for x in methods))
    for j in range(k):
        e = am[str(j)]
        print(f"{j:>6} | {e['real_max']:8.3f} | {e['real_mean']:9.3f} | "
              + " | ".join(f"{e[x]['reached']:10.3f}" for x in methods) + " | "
              + " | ".join(f"{e[x]['feature_nn_ratio']:8.2f}" for x in methods))
    for x in methods:
        reach = sum(am[str(j)][x]["reaches_real_max"] for j in range(k))
        ratio = statistics.median(am[str(j)][x]["feature_nn_ratio"] for j in range(k))
        print(f"{x:>12}: reaches the tile max for {reach}/{k} members; median E-feature NN ratio {ratio:.2f} "
              "(real digits: 1.00)")
    t = r["activation_max"]["timings"]
    print(f"time, all {k} members at once: " + ", ".join(f"{a} {b:.1f} s" for a, b in t.items())
          + f"; member 0 alone: {r['activation_max_member0_seconds']:.1f} s")
    print("\n## every critic layer's mean, every member: members reaching the tile max; median NN ratio")
    for layer, methods_ in r["activation_max_every_layer"].items():
        print(f"{layer:>6}: " + " | ".join(f"{m} {v['reach']}/{k}, {v['median_nn_ratio']:.2f}"
                                           for m, v in methods_.items()))
    print("\n## principal directions vs random (image RMS change per unit step, 5 PCs vs 3 random)")
    d = r["principal_directions"]
    for j in range(k):
        p, q, ratio = d[j]
        print(f"member {j}: principal {p:.4f}  random {q:.4f}  ratio {ratio:.2f}")
    wins = sum(d[j][2] > 1 for j in range(k))
    print(f"principal > random for {wins}/{k} members; median ratio {statistics.median(d[j][2] for j in range(k)):.2f}")
    print("\n## seconds per visualisation of member 0 (target <= 10 s)")
    for what, s in r["seconds_per_visualisation_member0"].items():
        print(f"{what:>22}: {s:6.2f}")


if __name__ == "__main__":
    main()
