"""Stacked MNIST mode collapse: a k-GAN against a single GAN with the same total parameters.

    .venv/bin/python benchmarks/stacked_mnist.py                 # the CPU budget (BENCHMARKS.md)
    .venv/bin/python benchmarks/stacked_mnist.py --full          # the published protocol's scale, for a GPU

Both sides train on the same stacked-mnist images (three MNIST digits as the R, G, B
channels; 1,000 modes), get the same generator updates per member, batch and optimiser
defaults; the single GAN's width is solved so that its generator + critic hold as many
parameters as the k members together. Each is scored as Metz et al. 2017 / VEEGAN / PacGAN
do: 26,000 samples, every channel classified by the MNIST judge (kgan_core.judge, trained on
the digits alone), modes captured of 1,000 and KL(mode histogram ‖ uniform) in nats.
Beside them, the same numbers for 26,000 real stacked digits not used in training (the
floor) and for noise, blank and mean images. Published anchors (26,000 samples, GPU-scale
training; Elfeki et al. 2019, "GDPP", Table 2): WGAN-GP 995 modes / KL 0.148, GDPP 1,000 / 0.135.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from kgan_core.data import load_dataset
from kgan_core.judge import judge_for
from kgan_core.judge.modes import PROTOCOL_SAMPLES, mode_controls, sampled_mode_scores
from kgan_core.models import build_critic, build_generator, default_spec, parameter_count, width_for_budget
from kgan_core.render import image_grid, png_bytes, save_bytes
from kgan_core.run import load_run
from kgan_core.train import TrainConfig, train

STACKED_SHAPE = (3, 28, 28)
# --full: the training-set size the published protocol stacks (128,000 images) and enough
# updates for GPU-scale DCGAN training; the default architecture and optimiser settings.
FULL = {"n_data": 128_000, "steps": 20_000, "width": None, "k": 10}


def total_parameters(width: int | None, k: int) -> tuple[int, int]:
    spec = default_spec(STACKED_SHAPE, width=width)
    return spec.width, k * (parameter_count(build_generator(spec, 1)) + parameter_count(build_critic(spec, 1)))


def train_and_score(config: TrainConfig, judge, samples: int, picture: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cpu = time.process_time()
        train(config, Path(tmp) / "run")
        train_cpu = time.process_time() - cpu
        run = load_run(Path(tmp) / "run")
        if picture is not None:
            save_bytes(picture, png_bytes(image_grid(run.sample(64, seed=config.seed))))
        scores = sampled_mode_scores(lambda count, i: run.sample(count, seed=config.seed * 1000 + i), judge, samples)
    return {**scores, "train_cpu_s": train_cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2000, help="generator updates per member (default: as "
                        "`kgan train`, the README's MNIST budget)")
    parser.add_argument("--width", type=int, default=None, help="members' base channels (default: the image "
                        "default; the single GAN's is solved)")
    parser.add_argument("--n-data", type=int, default=10_000, help="stacked images trained on")
    parser.add_argument("--samples", type=int, default=PROTOCOL_SAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", help="folder with the full MNIST IDX set (default: the bundled test digits)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rows", default="controls,untrained,kgan,single",
                        help="which rows to run (separate processes can run them side by side)")
    parser.add_argument("--pictures", type=Path, help="folder for a PNG of 64 samples of each trained side")
    parser.add_argument("--full", action="store_true", help=f"the published protocol's scale ({FULL}); for a GPU")
    args = parser.parse_args(argv)
    if args.full:
        args.n_data, args.steps, args.width, args.k = FULL["n_data"], FULL["steps"], FULL["width"], FULL["k"]

    started = time.process_time()
    judge = judge_for(load_dataset("mnist", root=args.data_root))
    width, k_params = total_parameters(args.width, args.k)
    single_width = width_for_budget(default_spec(STACKED_SHAPE, width=width), args.k)
    _, single_params = total_parameters(single_width, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST judge held-out accuracy "
          f"{100 * judge.held_out_accuracy:.1f}% per digit; {args.samples:,} samples per row; "
          f"{args.n_data:,} stacked training images; {args.steps} generator updates per member", flush=True)

    wanted = args.rows.split(",")
    rows = {}
    if "controls" in wanted:
        real = load_dataset("stacked-mnist", root=args.data_root, n_points=args.samples, seed=args.seed + 10_000)
        rows = {f"control: {name}": scores for name, scores in mode_controls(real.to_model(real.x), judge).items()}
        print(f"  controls done ({time.process_time() - started:.0f} CPU s)", file=sys.stderr, flush=True)
    common = {"dataset": "stacked-mnist", "data_root": args.data_root, "n_points": args.n_data,
              "steps": args.steps, "seed": args.seed, "log_every": args.steps, "device": args.device}
    sides = {"kgan": (f"k-GAN k={args.k}, width {width}, {k_params:,} parameters", {"k": args.k, "width": width}),
             "single": (f"single GAN, width {single_width}, {single_params:,} parameters",
                        {"k": 1, "width": single_width}),
             # The control a mode count must beat: blobs an untrained generator draws can read as
             # many digit triples without looking like digits.
             "untrained": (f"control: k-GAN k={args.k} after 1 update (untrained)",
                           {"k": args.k, "width": width, "steps": 1, "log_every": 1})}
    for label, overrides in (sides[name] for name in sides if name in wanted):
        name = f"k{overrides['k']}-steps{overrides.get('steps', args.steps)}"
        picture = args.pictures / f"stacked-mnist-{name}.png" if args.pictures else None
        rows[label] = train_and_score(TrainConfig(**{**common, **overrides}), judge, args.samples, picture)
        print(f"  {label}: {rows[label]}", file=sys.stderr, flush=True)

    print("\n| row | modes (of 1,000) | KL to uniform | training CPU s |")
    print("|---|---|---|---|")
    for label, r in rows.items():
        cpu = f"{r['train_cpu_s']:.0f}" if "train_cpu_s" in r else "–"
        print(f"| {label} | {r['modes']} | {r['kl']:.3f} | {cpu} |")
    print(f"\nTotal CPU: {time.process_time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
