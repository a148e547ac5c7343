"""Visualisations that prove what they show, on an MNIST k=10 run, every control a column.

    .venv/bin/python benchmarks/visualise.py --run RUN_DIR [--out /tmp/kgan-vis-bench] [--am-steps 200]
                                             [--prior PRIOR_FILE] [--random 50] [--methods pixel,prior]
                                             [--parts am,directions,latent,cross,pictures]

Without --run it trains the README's MNIST k=10 run (the image defaults) into --out first. Runs on
one torch thread and reports CPU seconds. Measures, with the independent judge
(``kgan_core.judge``, trained on the data alone and cached):
- activation maximisation of every critic layer's mean, per member and search: z over the
  real tile (the tile's spread as the unit) beside the controls — best real tile image, tile
  mean, tile mean binarised, black, white, noise — and the same search on a re-initialised
  critic; members beating every control by the margin; the AM cross-member matrix's diagonal
  leads and the selectivity bar; the judge's class and confidence for each AM image beside
  the tile's majority label;
- principal directions (in z, and edited at a middle generator layer) ranked among random
  ones (percentile), for the trained generators and, as the control, re-initialised ones;
- frozen-latent's frozen-vs-resampled ratio and traversal effects in judge features;
- cross-member: critics ranking their own generator first, and warnings;
- real tiles: each tile's majority label share;
- CPU seconds per visualisation of one member.
Prints tables; writes results.json and the pictures (PNG + JSON + NPY) into --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kgan_core.models import build_generator
from kgan_core.run import load_run
from kgan_core.train import TrainConfig, train
from kgan_core.visualise import visualise
from kgan_core.visualise.activation import CONTROLS
from kgan_core.visualise.base import seeded
from kgan_core.visualise.directions import (
    equal_steps,
    layer_modules,
    principal_directions_of,
    random_directions_at,
    traverse,
)
from kgan_core.visualise.effects import feature_space, path_effect, percentile, sample_spread
from kgan_core.visualise.real_tile import label_histogram

PARTS = ("am", "directions", "latent", "cross", "pictures")


def readme_run(out: Path) -> Path:
    """The README's `kgan train --data mnist --k 10` (image defaults, 2,000 steps, seed 0)."""
    run_dir = out / "mnist-k10"
    train(TrainConfig(dataset="mnist", k=10, seed=0, device="cpu", log_every=100), run_dir,
          callback=lambda p: print(f"  run step {p.step}/{p.total}", flush=True))
    return run_dir


def cpu_seconds(fn):
    started = time.process_time()
    value = fn()
    return value, time.process_time() - started


def middle_layer(generator) -> str:
    """A generator layer halfway through, for GANSpace edits at a layer."""
    names = [n for n, m in layer_modules(generator).items() if "norm" in type(m).__name__.lower()]
    return names[len(names) // 2] if names else list(layer_modules(generator))[len(layer_modules(generator)) // 2]


def direction_percentiles(generator, latent_dim: int, space, layer: str | None, random: int, seed: int = 0,
                          components: int = 3, n_base: int = 8, span: float = 3.0, steps: int = 7) -> list[float]:
    """Percentile of each of the top ``components`` principal directions among ``random`` random ones."""
    spread = sample_spread(space, generator, latent_dim, seed)
    pcs, pc_spread, _ = principal_directions_of(generator, latent_dim, components, seed, layer)
    rand, rand_spread = random_directions_at(generator, latent_dim, random, seed, layer)
    pc_spread, rand_spread = equal_steps(layer, pc_spread, rand_spread)
    base = torch.randn(n_base, latent_dim, generator=seeded(seed + 1))
    offsets = torch.linspace(-span, span, steps)
    images = traverse(generator, layer, base, torch.cat([pcs, rand]), torch.cat([pc_spread, rand_spread]), offsets)
    effect = path_effect(space, images, offsets, spread).mean(0)
    return [percentile(float(v), effect[components:]) for v in effect[:components]]


def reinitialised_generator(run, seed: int = 7_777_777):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = build_generator(run.spec, 1)
    return g.eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="an MNIST k-GAN run folder (default: train the README's run into --out)")
    parser.add_argument("--out", default="/tmp/kgan-vis-bench")
    parser.add_argument("--am-steps", type=int, default=200)
    parser.add_argument("--prior", help="a prior file: adds the prior search")
    parser.add_argument("--random", type=int, default=50, help="random directions per member")
    parser.add_argument("--methods", default=None,
                        help="activation-max searches, comma-separated "
                             "(default: pixel,regularised, and prior with --prior)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"what to measure, comma-separated, of {','.join(PARTS)} (default: all)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        parser.error(f"unknown parts {sorted(parts - set(PARTS))}; parts are {', '.join(PARTS)}")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = load_run(args.run or readme_run(out))
    _ = run.dataset
    space = feature_space(run, True)
    results: dict = {"run": str(run.run_dir), "step": run.step, "k": run.k, "judge": space.judge.describe()}
    majority = {}
    for j in range(run.k):
        hist = label_histogram(run, j) or {}
        top = next(iter(hist.items()), (None, 0.0))
        majority[j] = (top[0], top[1])
    results["tile_majority"] = {j: list(v) for j, v in majority.items()}

    am = {}
    methods = (args.methods.split(",") if args.methods
               else ["pixel", "regularised"] + (["prior"] if args.prior else []))
    for layer in run.critic.layer_names if "am" in parts else []:
        vis, sec = cpu_seconds(lambda layer=layer: visualise(run, "activation-max", None, layer=layer, methods=methods,
                                                             prior=args.prior, steps=args.am_steps, judge=True))
        vis.save(out / f"activation-max-{layer}.png")
        am[layer] = {"numbers": vis.numbers, "cpu_seconds": sec}
    results["activation_max"] = am

    dirs = {}
    for j in range(run.k) if "directions" in parts else []:
        gen = run.member(j).generator.requires_grad_(False)
        layer = middle_layer(gen)
        fresh = reinitialised_generator(run, 7_777_777 + j)
        dirs[j] = {"layer": layer,
                   "z": direction_percentiles(gen, run.spec.latent_dim, space, None, args.random),
                   "at_layer": direction_percentiles(gen, run.spec.latent_dim, space, layer, args.random),
                   "untrained_z": direction_percentiles(fresh, run.spec.latent_dim, space, None, args.random),
                   "untrained_at_layer": direction_percentiles(fresh, run.spec.latent_dim, space, layer, args.random)}
    results["principal_directions"] = dirs

    latent = {}
    for j in range(run.k) if "latent" in parts else []:
        frozen = visualise(run, "frozen-latent", j, judge=True).numbers
        trav = visualise(run, "traversal", j, judge=True).numbers
        latent[j] = {"frozen_vs_resampled": [d["frozen_vs_resampled"] for d in frozen["dims"].values()],
                     "traversal_effect": [d["effect_per_sd"] for d in trav["dims"].values()]}
    results["latent"] = latent

    if "cross" in parts:
        cross = visualise(run, "cross-member", n=256)
        cross.save(out / "cross-member.png")
        results["cross_member"] = {k: cross.numbers[k] for k in ("critic_ranks_own_generator_first", "warnings",
                                                                 "share_of_critics_ranking_own_generator_first")}
    if "pictures" in parts:
        results["cpu_seconds_member0"] = pictures(run, out, args.am_steps)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report(results, methods)


def pictures(run, out: Path, am_steps: int) -> dict[str, float]:
    """Every kind of picture for member 0 (CPU seconds each), and the ones BENCHMARKS.md describes."""
    seconds = {}
    for what, options in (("samples", {}), ("medoid", {}), ("real-tile", {}), ("frozen-latent", {"judge": True}),
                          ("traversal", {"judge": True}), ("principal-directions", {"judge": True}),
                          ("cross-member", {}), ("channel-atlas", {}),
                          ("activation-max", {"judge": True, "steps": am_steps})):
        vis, sec = cpu_seconds(lambda what=what, options=options: visualise(run, what, 0, **options))
        vis.save(out / f"{what}-m0.png")
        seconds[what] = round(sec, 2)
    visualise(run, "real-tile", None).save(out / "real-tile.png")
    visualise(run, "channel-atlas", None, steps=am_steps).save(out / "channel-atlas.png")
    visualise(run, "channel-atlas", 0, steps=am_steps, n=3, diversity=1.0).save(out / "channel-atlas-m0-div.png")
    for j in (0, 1):
        visualise(run, "principal-directions", j, judge=True).save(out / f"principal-directions-m{j}.png")
        visualise(run, "frozen-latent", j, judge=True).save(out / f"frozen-latent-m{j}.png")
        visualise(run, "traversal", j, judge=True).save(out / f"traversal-m{j}.png")
    return seconds


def report(r: dict, methods: list[str]) -> None:
    k, j = r["k"], r["judge"]
    print(f"run {r['run']} (step {r['step']}); judge: {j['kind']}, held-out accuracy {j['held_out_accuracy']}")
    print("tile majority label (share): " + ", ".join(f"{m}: {v[0]} ({100 * v[1]:.0f}%)"
                                                       for m, v in r["tile_majority"].items()))
    for layer, entry in r["activation_max"].items():
        n = entry["numbers"]
        print(f"\n## activation max, {layer} mean ({entry['cpu_seconds']:.0f} CPU s): z over the real tile")
        for method in methods:
            print(f"\n### {method}")
            print("| member | search z | " + " | ".join(CONTROLS) + " | margin | beats | re-init z | re-init margin "
                  "| re-init beats | judge class (conf) | tile majority |")
            print("|" + "---|" * (len(CONTROLS) + 9))
            for m in range(k):
                t, f = n["members"][str(m)]["trained"], n["members"][str(m)]["reinit"]
                judge = t[method].get("judge", {})
                yes = {True: "yes", False: "no"}
                print(f"| {m} | {t[method]['z']:+.2f} | " + " | ".join(f"{t['controls_z'][c]:+.2f}" for c in CONTROLS)
                      + f" | {t[method]['margin_over_best_control']:+.2f} | {yes[t[method]['beats_controls']]}"
                      f" | {f[method]['z']:+.2f} | {f[method]['margin_over_best_control']:+.2f}"
                      f" | {yes[f[method]['beats_controls']]}"
                      f" | {judge.get('class')} ({judge.get('confidence', float('nan')):.2f})"
                      f" | {r['tile_majority'][m][0]} |")
            h = n["headline"][method]
            s = n["selectivity"][method]
            agree = sum(str(n["members"][str(m)]["trained"][method].get("judge", {}).get("class"))
                        == str(r["tile_majority"][m][0]) for m in range(k))
            print(f"beats every control by {n['margin']}: trained {h['trained']}/{k}, "
                  f"re-initialised {h['reinit']}/{k}; "
                  f"diagonal leads its row: trained {s['trained']['dominant_rows']}/{k}, re-initialised "
                  f"{s['reinit']['dominant_rows']}/{k}; selective rows (lead > {s['bar_z']}) {s['selective_rows']}/{k}"
                  f" -> {'passes' if s['passes'] else 'fails'}; judge class = tile majority {agree}/{k}")
    if r["principal_directions"]:
        directions_report(r, k)
    if r["latent"]:
        lat = r["latent"]
        print("\n## latent grids (judge features)")
        print("frozen-vs-resampled (top dim), median over members: "
              f"{statistics.median(v['frozen_vs_resampled'][0] for v in lat.values()):.2f}; traversal effect of "
              f"the top dim per sd, median: {statistics.median(v['traversal_effect'][0] for v in lat.values()):.3f}")
    if "cross_member" in r:
        c = r["cross_member"]
        print(f"\n## cross-member: critics ranking their own generator first "
              f"{sum(c['critic_ranks_own_generator_first'])}/{k}; warnings: {len(c['warnings'])}")
        for w in c["warnings"]:
            print("  " + w)
    if "cpu_seconds_member0" in r:
        print("\n## CPU seconds per visualisation of member 0")
        for what, s in r["cpu_seconds_member0"].items():
            print(f"{what:>22}: {s:7.2f}")


def directions_report(r: dict, k: int) -> None:
    print("\n## principal directions: percentile of PC1-3 among random directions (judge features)")
    print("| member | layer | z: trained | z: untrained | at layer: trained | at layer: untrained |")
    print("|---|---|---|---|---|---|")
    counts = {key: 0 for key in ("z", "untrained_z", "at_layer", "untrained_at_layer")}
    for m, d in r["principal_directions"].items():
        for key in counts:
            counts[key] += all(p >= 95 for p in d[key])
        print(f"| {m} | {d['layer']} | " + " | ".join("/".join(f"{p:.0f}" for p in d[key])
                                                     for key in ("z", "untrained_z", "at_layer", "untrained_at_layer"))
              + " |")
    print("top 3 all above the 95th percentile: " + ", ".join(f"{key} {v}/{k}" for key, v in counts.items()))

if __name__ == "__main__":
    main()
