"""Image quality of k-GAN members, judged by an independent network, beside every control.

    .venv/bin/python benchmarks/image_quality.py [--seeds 3] [--only kgan,single,none] [--steps N]
    .venv/bin/python benchmarks/image_quality.py --image-size 64 --arch dcgan64 --device cuda   # the GPU row

MNIST (the 10,000 test digits the package ships) with the image defaults of TrainConfig,
three models trained the same number of generator updates with the same batch and
optimiser settings, as in benchmarks/mode_coverage.py:

- the k-GAN, k=10, voronoi tiles: what `kgan train --data mnist --k 10` trains;
- a single GAN (k=1) whose parameter count matches the ten members together (its width
  is solved for), so both sides update the same number of parameters the same number of
  times;
- `assignment=none`: ten GANs that each see all of the data.

The judge is `kgan_core.judge.judge_for(data)`: a classifier trained on the digits alone,
never on anything generated. Per k-GAN member, against its own tile: whether the judge's
most frequent class among the member's samples is the tile's majority class, and the median
confidence. For each ensemble (samples drawn in proportion to tile share), against the
data: the class histogram's KL to the data's, the Fréchet distance in the judge's features,
and the share of pixels above 0.5 beside the data's. Beside them, the judge's controls on
the same reference: a real split-half (the floor), noise, blank images and the mean image;
a metric the controls do not separate is marked uninformative. CPU seconds of all threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from kgan_core.config import TrainConfig, with_data_defaults
from kgan_core.data import load_dataset
from kgan_core.data.builtin import BUNDLED_MNIST
from kgan_core.judge import judge_for, scores_with_controls
from kgan_core.models import default_spec, width_for_budget
from kgan_core.run import load_run
from kgan_core.train import train

ROWS = ("kgan", "single", "none")
N_SAMPLES = 2000          # ensemble samples per model
N_MEMBER_SAMPLES = 200    # samples per member, judged against the member's tile
TARGETS = {"members_missed": 1, "confidence_median": 0.9, "class_kl": 0.05, "bright_share_ratio": 0.2,
           "fd_ratio": 0.5}


def bright_share(images: torch.Tensor) -> float:
    """Share of pixels above 0.5 (model range [-1, 1]): do samples use white like the data does?"""
    return float((images > 0.5).float().mean())


def train_row(row: str, base: TrainConfig, k: int, seed: int, out: Path) -> tuple[Path, float]:
    data_shape = load_dataset(base.dataset, root=base.data_root, image_size=base.image_size).item_shape
    if row == "single":
        spec = default_spec(data_shape, base.arch, base.latent_dim, base.width)
        overrides = {"k": 1, "width": width_for_budget(spec, k)}
    elif row == "none":
        overrides = {"k": k, "assignment": "none"}
    else:
        overrides = {"k": k}
    config = base.model_copy(update=overrides | {"seed": seed})
    run_dir = out / f"{row}-seed{seed}"
    spent = run_dir / "train_cpu_s.txt"
    if spent.is_file():  # finished in an earlier invocation with the same --keep folder
        return run_dir, float(spent.read_text())
    cpu = time.process_time()
    train(config, run_dir)
    cpu = time.process_time() - cpu
    spent.write_text(f"{cpu}\n")
    return run_dir, cpu


def member_rows(run_dir: Path, data, judge, seed: int) -> list[dict]:
    """Per member: the judge's verdict on its samples against its own tile."""
    run = load_run(run_dir)
    x = data.to_model(data.x)
    out = []
    for j in range(run.k):
        tile = x[run.assignment == j]
        samples = run.sample(N_MEMBER_SAMPLES, member=j, seed=seed)
        scores = scores_with_controls(samples, tile, judge, seed=seed)
        seen = scores.histograms["samples"]
        out.append({
            "member": j, "tile_majority": scores.reference_majority,
            "samples_majority": max(range(len(seen)), key=seen.__getitem__),
            "majority_share": scores.value("majority_share"),
            "confidence": scores.value("confidence_median"),
            "real_confidence": scores.value("confidence_median", "real"),
            "bright": bright_share(samples),
            # Realism against the tile itself, beside the real split-half (the floor) and the
            # tile's mean image (the blur the class verdict alone cannot tell from a digit).
            "fd": scores.value("fd"), "fd_real": scores.value("fd", "real"),
            "fd_tile_mean": scores.value("fd", "tile_mean"),
            "fd_beats_controls": scores.metrics["fd"].beats_bad_controls,
            "recall": scores.value("recall"), "recall_real": scores.value("recall", "real"),
        })
    return out


def ensemble_scores(runs: dict[str, Path], data, judge, seed: int):
    """Every model's ensemble samples against the data, in one table with the controls."""
    samples = {row: load_run(d).sample(N_SAMPLES, seed=seed) for row, d in runs.items()}
    first, *rest = samples
    return scores_with_controls(samples[first], data.to_model(data.x), judge, seed=seed, sample_name=first,
                                extra={row: samples[row] for row in rest}), samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="train seeds first-seed .. first-seed + seeds - 1 (to split seeds across processes)")
    parser.add_argument("--only", default=",".join(ROWS), help="which models to train: kgan,single,none")
    parser.add_argument("--data", default=str(BUNDLED_MNIST))
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="default: the image default of TrainConfig")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--arch", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--keep", default=None, help="keep the run folders here (default: a temporary folder); "
                        "runs finished there by an earlier invocation are judged, not trained again")
    args = parser.parse_args(argv)
    rows = [r for r in args.only.split(",") if r]
    data = load_dataset(args.data, image_size=args.image_size)
    base = with_data_defaults(TrainConfig(dataset=args.data, image_size=args.image_size, arch=args.arch,
                                          device=args.device, log_every=10_000, checkpoint_every=10_000),
                              data.item_shape)
    if args.steps is not None:
        base = base.model_copy(update={"steps": args.steps})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, {args.seeds} seed(s); "
          f"steps {base.steps}, batch {base.batch_size}, n_critic {base.n_critic}, lr_g {base.lr_g}, "
          f"lr_d {base.lr_d}, betas ({base.beta1}, {base.beta2})", flush=True)
    judge = None  # trained (or loaded) after the first runs: its CPU time is not a run's
    data_bright = bright_share(data.to_model(data.x))
    per_seed = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runs, cpu = {}, {}
            for row in rows:
                runs[row], cpu[row] = train_row(row, base, args.k, seed, out)
                print(f"  seed {seed} {row}: {cpu[row]:.0f} CPU-s", file=sys.stderr, flush=True)
            if judge is None:
                judge = judge_for(data)
                print(f"judge: {judge.kind}, held-out accuracy {judge.held_out_accuracy:.3f}", flush=True)
            scores, samples = ensemble_scores(runs, data, judge, seed)
            members = member_rows(runs["kgan"], data, judge, seed) if "kgan" in runs else []
            per_seed.append({"seed": seed, "cpu": cpu, "scores": scores, "members": members,
                             "bright": {row: bright_share(s) for row, s in samples.items()}})
            print(scores.table(), file=sys.stderr, flush=True)
    print_tables(per_seed, rows, data_bright, args.k)
    return 0


def print_tables(per_seed: list[dict], rows: list[str], data_bright: float, k: int) -> None:
    candidates = [*rows, "real", "noise", "blank_black", "blank_white", "tile_mean"]
    labels = {"kgan": f"k-GAN k={k}", "single": "single GAN (same parameters)", "none": "assignment=none",
              "real": "control: real split-half", "noise": "control: noise", "blank_black": "control: blank (black)",
              "blank_white": "control: blank (white)", "tile_mean": "control: data mean image"}
    first = per_seed[0]["scores"]
    informative = {m: all(s["scores"].metrics[m].informative for s in per_seed) for m in ("fd", "class_kl")}
    print("\nEnsembles against the data (median of seeds; per seed in brackets):\n")
    print(f"| model | FD, judge features{'' if informative['fd'] else ' (uninformative)'} "
          f"| class KL to data{'' if informative['class_kl'] else ' (uninformative)'} "
          f"| pixels > 0.5 (data {data_bright:.3f}) | CPU s |")
    print("|---|---|---|---|---|")
    for c in candidates:
        if c not in first.metrics["fd"].values:
            continue
        fd = [s["scores"].value("fd", c) for s in per_seed]
        kl = [s["scores"].value("class_kl", c) for s in per_seed]
        bright = [s["bright"][c] for s in per_seed] if c in rows else []
        cpu = [s["cpu"][c] for s in per_seed] if c in rows else []
        print(f"| {labels[c]} | {fmt(fd, '.3g')} | {fmt(kl, '.3f')} | {fmt(bright, '.3f') if bright else '—'} "
              f"| {fmt(cpu, '.0f') if cpu else '—'} |")
    if "kgan" not in rows:
        return
    print("\nk-GAN members against their own tiles (median of seeds):\n")
    print("| seed | members whose samples are their tile's majority class | median confidence "
          "(real tile images) | members whose FD to their tile beats every bad control | members' pixels > 0.5 |")
    print("|---|---|---|---|---|")
    for s in per_seed:
        m = s["members"]
        hits = sum(r["samples_majority"] == r["tile_majority"] for r in m)
        conf = statistics.median(r["confidence"] for r in m)
        real = statistics.median(r["real_confidence"] for r in m)
        bright = statistics.median(r["bright"] for r in m)
        realistic = sum(r["fd_beats_controls"] for r in m)
        print(f"| {s['seed']} | {hits}/{len(m)} | {conf:.3f} ({real:.3f}) | {realistic}/{len(m)} | {bright:.3f} |")
    print("\nPer member, seed 0, against its own tile (FD and recall in judge features; real = the "
          "tile's other half, tile mean = its mean image repeated):\n")
    print("| member | tile's digit → samples' | share | confidence | FD (real / tile mean) "
          "| beats every bad control | recall (real) | pixels > 0.5 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in per_seed[0]["members"]:
        print(f"| {r['member']} | {r['tile_majority']} → {r['samples_majority']} | {r['majority_share']:.2f} "
              f"| {r['confidence']:.3f} | {r['fd']:.3g} ({r['fd_real']:.3g} / {r['fd_tile_mean']:.3g}) "
              f"| {'yes' if r['fd_beats_controls'] else 'no'} | {r['recall']:.2f} ({r['recall_real']:.2f}) "
              f"| {r['bright']:.3f} |")
    verdicts(per_seed, rows, data_bright, k)


def verdicts(per_seed: list[dict], rows: list[str], data_bright: float, k: int) -> None:
    """Each target, met or not, from the medians; a target on an uninformative metric is not met."""
    med = statistics.median
    hits = med(sum(r["samples_majority"] == r["tile_majority"] for r in s["members"]) for s in per_seed)
    conf = med(med(r["confidence"] for r in s["members"]) for s in per_seed)
    kl = med(s["scores"].value("class_kl", "kgan") for s in per_seed)
    bright = med(s["bright"]["kgan"] for s in per_seed)
    # The tile's mean image is classified as its digit with high confidence too: a member counts
    # only if its samples also beat the mean image (and noise, blanks) on FD to its tile.
    realistic = med(sum(r["fd_beats_controls"] for r in s["members"]) for s in per_seed)
    lines = [
        (f"members recognised {hits:g}/{k} (target ≥ {k - TARGETS['members_missed']})",
         hits >= k - TARGETS["members_missed"]),
        (f"members whose FD to their tile beats every bad control {realistic:g}/{k} "
         f"(needed for the class verdicts to mean anything: ≥ {k - TARGETS['members_missed']})",
         realistic >= k - TARGETS["members_missed"]),
        (f"median confidence {conf:.3f} (target ≥ {TARGETS['confidence_median']})",
         conf >= TARGETS["confidence_median"]),
        (f"ensemble class KL {kl:.3f} (target ≤ {TARGETS['class_kl']})",
         kl <= TARGETS["class_kl"] and all(s["scores"].metrics["class_kl"].informative for s in per_seed)),
        (f"pixels > 0.5: {bright:.3f} vs data {data_bright:.3f} (target within 20 %)",
         abs(bright - data_bright) <= TARGETS["bright_share_ratio"] * data_bright),
    ]
    fd = med(s["scores"].value("fd", "kgan") for s in per_seed)
    for other in ("single", "none"):
        if other in rows:
            fd_other = med(s["scores"].value("fd", other) for s in per_seed)
            lines.append((f"FD {fd:.3g} vs {other} {fd_other:.3g} (target ≤ half)",
                          fd <= TARGETS["fd_ratio"] * fd_other
                          and all(s["scores"].metrics["fd"].informative for s in per_seed)))
    print("\nTargets:")
    for text, met in lines:
        print(f"  {'met' if met else 'NOT met'}: {text}")


def fmt(values: list[float], spec: str) -> str:
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.median(values), spec)} [{' / '.join(format(v, spec) for v in values)}]"


if __name__ == "__main__":
    sys.exit(main())
