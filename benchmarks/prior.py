"""Is the learned prior a prior? Random codes, activation maximisation through it, and realism,
all judged by the independent judge (``kgan_core.judge``), every number beside its controls.

    .venv/bin/python benchmarks/prior.py [--run RUN_DIR] [--cache /tmp/kgan-bench-prior]
                                         [--prior-steps 2500] [--am-steps 100] [--encoder small|critic] [--prior FILE]

1. Random codes. 500 codes drawn in the prior's code region (each dimension normal with the
   real codes' spread, moved inside the per-dimension bounds and the length bound) are
   decoded; so are 500 codes of a PCA-128 decoder fitted to the same training images and
   sampled the same way. Beside them: real held-out digits, the run's own samples (what a
   generator trained on the data reaches), blank (black) images, uniform noise, the data's
   mean image, and the decoded mean code. Per column: the share the judge
   finds data-like (inside the real digits' k=3 NN manifold in judge features, nearer a real
   digit than a blank image, and classified with confidence >= 0.9), each condition apart, the
   median nearest-real distance in judge features (in units of the real-to-real
   nearest-neighbour distance; real digits about 1) and the judge's median confidence.
2. Reconstruction (SSIM/PSNR on the held-out digits), prior and PCA-128 side by side — an
   autoencoder's number, not the criterion.
3. Activation maximisation of every critic layer's mean, for every member of the run, through
   the prior and (for contrast) on pixels: how many members' images are data-like, how many
   are blank-like (nearer a blank image than any real digit in judge features), median NN ratio.

Runs on one CPU thread; CPU seconds are reported. Writes results.json and PNGs into --cache.
Without --run it trains the README's MNIST k=10 run first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kgan_core.config import TrainConfig
from kgan_core.data import load_dataset
from kgan_core.judge import control_images, judge_for
from kgan_core.prior import JudgeRealism, PCADecoder, PriorConfig, load_prior, ssim_psnr, train_prior
from kgan_core.render import image_grid, labelled_grid
from kgan_core.run import load_run
from kgan_core.visualise import objectives, param
from kgan_core.visualise.optimise import maximise

SAMPLES = 500
REFERENCE = 2000  # real training digits the realism of everything is measured against
COLUMNS = ("real held-out", "k-GAN samples", "blank", "noise", "data mean", "decoded mean code", "PCA-128 random",
           "prior random")


def readme_run(cache: Path) -> Path:
    """The README's `kgan train --data mnist --k 10` (image defaults, 2,000 steps, seed 0)."""
    from kgan_core.train import train

    run_dir = cache / "mnist-k10"
    train(TrainConfig(dataset="mnist", k=10, seed=0, device="cpu"), run_dir)
    return run_dir


def prior_config(args, run_dir: Path, side: int) -> PriorConfig:
    """The prior works at the run's image side, so its decodes are what the run's critics read."""
    extra = {"run": str(run_dir), "member": 0} if args.encoder == "critic" else {}
    return PriorConfig(dataset="mnist", image_size=side, encoder=args.encoder, code_dim=128, width=16,
                       steps=args.prior_steps, batch_size=64, holdout=500, log_every=250, seed=0, device="cpu",
                       **extra)


def am_through(run, critic, layer: str, method: str, prior, steps: int, seed: int) -> torch.Tensor:
    """(k, C, H, W): every member's activation-max image of ``layer``'s mean."""
    objective = objectives.layer_mean(layer)
    g = torch.Generator().manual_seed(seed)
    lead = (run.k, 1)
    p = param.prior_code(prior, lead, g) if method == "prior" else param.pixel((*lead, *run.item_shape), g)
    data = run.dataset
    sample = data.to_model(data.x[torch.randperm(data.n, generator=g)[:256]])
    with torch.no_grad():
        on_real = objective(critic.features(sample.expand(run.k, *sample.shape).contiguous(), upto=layer))
    scale = on_real.std(1, keepdim=True).clamp_min(1e-8)
    result = maximise(critic, objective, p, steps=steps, lr=0.05, generator=g, scale=scale)
    return result.images[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=None, help="an MNIST k-GAN run folder (default: train the README's run)")
    parser.add_argument("--cache", default="/tmp/kgan-bench-prior")
    parser.add_argument("--prior-steps", type=int, default=2500)
    parser.add_argument("--am-steps", type=int, default=100)
    parser.add_argument("--prior", default=None, help="an already trained prior file (else one is trained)")
    parser.add_argument("--encoder", choices=("small", "critic"), default="small")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run) if args.run else readme_run(cache)
    run = load_run(run_dir)
    side = run.item_shape[-1]
    data = load_dataset("mnist", image_size=side)
    cpu = time.process_time()
    judge = judge_for(data)
    results: dict = {"run": str(run_dir), "judge": judge.describe(), "judge_cpu_seconds": time.process_time() - cpu}

    config = prior_config(args, run_dir, side)
    prior_path = (Path(args.prior) if args.prior
                  else cache / f"prior-{args.encoder}-{side}px-s{args.prior_steps}.safetensors")
    if not prior_path.exists():
        train_prior(config, prior_path, dataset=data,
                    callback=lambda p: print(f"  prior step {p.step}: held-out mse {p.heldout_mse:.4f}", flush=True))
    prior = load_prior(prior_path)
    results["prior"] = {"path": str(prior_path), "metrics": prior.info["metrics"], "code_dim": prior.code_dim,
                        "region_radius": prior.region.radius}

    x = data.to_model(data.x)
    held = torch.tensor(prior.info["heldout_rows"])
    training = torch.ones(data.n, dtype=torch.bool)
    training[held] = False
    train_x, held_x = x[training], x[held]
    g = torch.Generator().manual_seed(1)
    reference = train_x[torch.randperm(len(train_x), generator=g)[:REFERENCE]]
    realism = JudgeRealism(judge, reference)
    pca = PCADecoder(train_x, 128)
    controls = control_images(reference, SAMPLES, seed=1)
    with torch.no_grad():
        images = {
            "real held-out": held_x[:SAMPLES],
            # What a generator trained on the data reaches: the bar is attainable, not only by real images.
            "k-GAN samples": run.sample(SAMPLES, seed=3),
            "blank": controls["blank_black"],
            "noise": controls["noise"],
            "data mean": controls["tile_mean"],
            "decoded mean code": prior.decode(prior.region.mean[None]).expand(SAMPLES, -1, -1, -1),
            "PCA-128 random": pca.random_images(SAMPLES, g),
            "prior random": prior.random_images(SAMPLES, g),
        }
        results["random_codes"] = {name: realism.summary(imgs) for name, imgs in images.items()}
        prior_ssim, prior_psnr = ssim_psnr(prior.decode(prior.encode(held_x)), held_x)
        pca_ssim, pca_psnr = ssim_psnr(pca.decode(pca.encode(held_x)), held_x)
    results["reconstruction"] = {"prior": {"ssim": prior_ssim, "psnr": prior_psnr},
                                 "PCA-128": {"ssim": pca_ssim, "psnr": pca_psnr}}
    image_grid(images["prior random"][:64], ncol=8).save(cache / "prior-random-codes.png")
    image_grid(images["PCA-128 random"][:64], ncol=8).save(cache / "pca128-random-codes.png")

    critic = run.critic.requires_grad_(False)
    layers = list(critic.layer_names)
    am: dict = {}
    cells = []
    for layer in layers:
        am[layer] = {}
        row = []
        for method in ("prior", "pixel"):
            started = time.process_time()
            found = am_through(run, critic, layer, method, prior, args.am_steps, seed=0)
            scores = {"data_like": int(realism.data_like(found).sum()),
                      "blank_like": int(realism.blank_like(found).sum()),
                      "inside_core": int(realism.inside_core(found).sum()),
                      "median_nn_ratio": float(realism.nn_ratio(found).median()),
                      "min_pixel_std": float(found.flatten(1).std(1).min()),
                      "cpu_seconds": time.process_time() - started}
            am[layer][method] = scores
            row.append(found)
        cells.append(torch.stack(row, 1))  # (k, 2, C, H, W)
    results["activation_max"] = am
    grid = torch.cat(cells, 1)  # (k, 2 * layers, C, H, W)
    labelled_grid(grid, row_labels=[f"member {j}" for j in range(run.k)],
                  col_labels=[f"{layer} {m}" for layer in layers for m in ("prior", "pixel")],
                  title="activation max of each layer's mean: through the prior, and on pixels"
                  ).save(cache / "activation-max-through-prior.png")
    (cache / "results.json").write_text(json.dumps(results, indent=2))
    report(results, run.k)


def report(r: dict, k: int) -> None:
    print(f"\nrun {r['run']}; judge: {r['judge']}")
    print("\n## random codes, beside their controls (500 images each; judge features)")
    cols = r["random_codes"]
    print("| | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    # A criterion a control passes says nothing: it must separate real images from every control.
    controls = ("blank", "noise", "data mean", "decoded mean code")

    def verdict(key: str) -> str:
        gap = cols["real held-out"][key] - max(cols[c][key] for c in controls)
        return "" if gap >= 0.3 else " — uninformative: a control passes it"

    for key, label in (("data_like_share", "**data-like** (manifold, not blank, confident)"
                        + verdict("data_like_share")),
                       ("inside_share", "inside the real k=3 NN manifold"),
                       ("inside_core_share", "**inside its dense half** (balls up to the median radius)"
                        + verdict("inside_core_share")),
                       ("confident_share", "judge confidence >= 0.9"),
                       ("blank_like_share", "blank-like (nearer a blank than any digit)"),
                       ("median_confidence", "median judge confidence"),
                       ("median_nn_ratio", "median NN ratio (real ~1)")):
        print(f"| {label} | " + " | ".join(f"{cols[c][key]:.2f}" for c in COLUMNS) + " |")
    rec = r["reconstruction"]
    m = r["prior"]["metrics"]
    print(f"\nreconstruction of 500 held-out digits (not the criterion): prior SSIM {rec['prior']['ssim']:.3f} / "
          f"PSNR {rec['prior']['psnr']:.1f} dB; PCA-128 SSIM {rec['PCA-128']['ssim']:.3f} / "
          f"PSNR {rec['PCA-128']['psnr']:.1f} dB; prior training {m['train_cpu_seconds']:.0f} CPU s")
    print(f"\n## activation max of each critic layer's mean, {k} members (data-like / inside the dense half "
          "of the manifold / blank-like / median NN ratio)")
    print("| layer | through the prior | on pixels |")
    print("|---|---|---|")
    for layer, methods in r["activation_max"].items():
        print(f"| {layer} | " + " | ".join(
            f"{v['data_like']}/{k} data-like, {v['inside_core']}/{k} dense, {v['blank_like']}/{k} blank-like, "
            f"NN {v['median_nn_ratio']:.2f}"
            for v in methods.values()) + " |")
    ratios = [v["prior"]["median_nn_ratio"] for v in r["activation_max"].values()]
    print(f"median over layers of the prior's NN ratio: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
