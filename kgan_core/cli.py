"""Train k-GAN ensembles and see, member by member, what each generator and critic learnt.

``kgan train``, ``sample``, ``info`` and ``health`` live here. Other packages add commands
through the ``kgan.commands`` entry-point group (the service adds ``serve`` and
``create-key``), so this library never imports the service.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from kgan_core.checkpoint import CheckpointError
from kgan_core.data import BUILTIN_DATASETS, DatasetError
from kgan_core.models import ArchitectureError
from kgan_core.render import image_grid, labelled_png_bytes, save_bytes, titled_figure
from kgan_core.runtime import keep_freed_memory
from kgan_core.train import Progress, TrainConfig, TrainingError, train

USER_ERRORS = (DatasetError, CheckpointError, ArchitectureError, TrainingError, ValidationError,
               ValueError, FileNotFoundError)


# What a person typed for each TrainConfig field that has a flag of its own.
FLAG_OF_FIELD = {"dataset": "--data", "data_root": "--data-root", "k": "--k", "arch": "--arch", "steps": "--steps",
                 "seed": "--seed", "assignment": "--assignment", "image_size": "--image-size", "device": "--device"}


def config_problem(exc: ValidationError) -> str:
    """A TrainConfig refusal as one line per field, named as typed (a flag or ``--set FIELD=``), with the
    value given and what is allowed; an unknown field gets the nearest real names."""
    fields = list(TrainConfig.model_fields)
    lines, unknown = [], False
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "config"
        typed = f"{FLAG_OF_FIELD[name]} {error.get('input')}" if name in FLAG_OF_FIELD else f"--set {name}="
        if error["type"] == "extra_forbidden":
            near = difflib.get_close_matches(name, fields, n=3)
            lines.append(f"--set {name}: no such training setting" + (f"; did you mean {' or '.join(near)}?"
                                                                       if near else ""))
            unknown = unknown or not near
            continue
        if name not in FLAG_OF_FIELD:
            typed += str(error.get("input"))
        allowed = ("must be one of auto, cpu, cuda, cuda:N, mps" if name == "device"
                   else error["msg"][0].lower() + error["msg"][1:])
        lines.append(f"{typed}: {allowed}")
    if unknown:
        lines.append(f"the settings are TrainConfig's fields: {', '.join(fields)}")
    return "invalid training settings:\n  " + "\n  ".join(lines)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".toml":
        return tomllib.loads(text)
    return json.loads(text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = load_config_file(Path(args.config)) if args.config else {}
    flags = {"dataset": args.data, "k": args.k, "arch": args.arch, "steps": args.steps,
             "seed": args.seed, "assignment": args.assignment, "image_size": args.image_size,
             "data_root": args.data_root, "device": args.device}
    values.update({name: value for name, value in flags.items() if value is not None})
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        values[name.strip().replace("-", "_")] = _parse_value(value)
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        raise ValueError(config_problem(exc)) from None


def print_progress(progress: Progress) -> None:
    w = sum(progress.wasserstein) / len(progress.wasserstein)
    eta = f"{progress.eta_s:6.0f}s" if progress.eta_s is not None else "     ?"
    print(f"step {progress.step:>7}/{progress.total}  W≈{w:8.4f}  eta {eta}  "
          f"tiles {progress.tile_sizes}", flush=True)
    for event in progress.events:
        print(f"  note: {event}", flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    keep_freed_memory()
    result = train(config, Path(args.out), callback=None if args.quiet else print_progress,
                   resume=not args.no_resume)
    print(f"run saved in {result.run_dir} at step {result.step}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from kgan_core.run import load_run

    out = Path(args.out)
    if out.suffix not in (".npy", ".png"):  # before loading the run: a typo costs nothing
        raise ValueError(f"--out must end in .npy (the samples as an array) or .png (a picture), got {out.name!r}")
    run = load_run(args.run)
    if args.member is not None and not 0 <= args.member < run.k:
        raise ValueError(f"--member {args.member}: this run has {run.k} members, numbered 0 to {run.k - 1}")
    samples = run.sample(args.n, member=args.member, seed=args.seed)
    if out.suffix == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, samples.cpu().numpy())
    elif out.suffix == ".png":
        who = f"member {args.member} of {run.k}" if args.member is not None else f"ensemble of {run.k}"
        title = f"{who}: {args.n} samples, seed {args.seed}, step {run.step}"
        if run.dataset_kind == "points":
            from kgan_core.visualise.samples import points_plot

            save_bytes(out, points_plot(run, args.member, args.n, args.seed, title=title))
        else:
            # The same title as the points picture: a grid alone does not say whose samples it shows.
            save_bytes(out, labelled_png_bytes(titled_figure(image_grid(samples), title)))
    print(f"wrote {args.n} samples to {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from kgan_core.run import load_run

    run = load_run(args.run)
    from kgan_core.health import flags_by_member

    health = run.metrics.get("health")
    info = {"run": str(run.run_dir), "step": run.step, "k": run.k, "spec": run.spec.to_dict(),
            "tile_sizes": run.tile_sizes, "tile_shares": [round(s, 4) for s in run.tile_shares],
            "health": {"flags": flags_by_member(health), "feature_space": health.get("feature_space")}
            if health else None,
            "metrics": run.metrics, "events": run.events, "config": run.config.model_dump()}
    print(json.dumps(info, indent=2))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from kgan_core.health import run_health, store_health
    from kgan_core.run import load_run

    run = load_run(args.run)
    health = run_health(run, judge=not args.no_judge, cache_dir=args.judge_cache)
    if not args.no_store:
        store_health(args.run, health)
    if health["judge"]:
        judge = health["judge"]
        quality = (f"held-out accuracy {judge['held_out_accuracy']:.3f}" if judge["held_out_accuracy"] is not None
                   else f"held-out reconstruction error {judge['held_out_error']:.4f}")
        print(f"judge: {judge['kind']} trained on {judge['dataset']} ({quality})")
    print(f"collapse measured in {health['feature_space']}; {health['samples_per_member']} samples per member")
    for name, why in health["skipped"].items():
        print(f"skipped {name}: {why}")
    for member in health["members"]:
        numbers = "  ".join(f"{name}={check['value']}" + ("!" if check["flagged"] else "")
                            for name, check in member["checks"].items())
        verdict = ", ".join(member["flags"]) or "healthy"
        print(f"member {member['member']:>3}: {verdict:<40} {numbers}")
    print("! = past its threshold" + ("" if args.no_store else f"; stored in {Path(args.run) / 'run.json'}"))
    return 0


def _default(field: str) -> Any:
    return TrainConfig.model_fields[field].default


EXAMPLES = """first run (ring of 8 Gaussians, 8 members, a few CPU-minutes):
  kgan train --data ring8 --k 8 --steps 1200 --out runs/ring8
  kgan sample runs/ring8 --n 2500 --out runs/ring8/samples.png
  kgan info runs/ring8

each command has its own help: kgan train --help"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgan", description=__doc__.split("\n")[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a k-GAN run into a folder, or resume the one there",
                       description="Train a k-GAN run into --out, or resume it where it stopped if --out holds "
                       "a checkpoint. Flags override --config; every other setting is a TrainConfig field "
                       "(kgan_core/config.py), given with --set FIELD=VALUE.")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of TrainConfig fields; flags override it")
    p.add_argument("--data", metavar="NAME_OR_PATH",
                   help=f"built-in dataset ({', '.join(BUILTIN_DATASETS)}), or a folder, .zip, .tar(.gz) of "
                   f"images, or a .npy/.npz array (default {_default('dataset')})")
    p.add_argument("--data-root", metavar="DIR", help="folder holding built-in datasets' files (MNIST's 10,000 "
                   "test digits ship inside the package)")
    p.add_argument("--k", type=int, help=f"number of members, one per tile of the data (default {_default('k')})")
    p.add_argument("--arch", choices=["auto", "mlp", "thesis", "resize", "dcgan64", "dcgan128"],
                   help="network family; auto picks by data shape (default auto)")
    p.add_argument("--steps", type=int, help=f"generator updates per member (default {_default('steps')})")
    p.add_argument("--seed", type=int, help=f"seed of the whole run (default {_default('seed')})")
    p.add_argument("--assignment", choices=["voronoi", "balanced", "none"],
                   help="how data is split between members: voronoi (nearest point mass), balanced "
                   "(equal-mass cells) or none (k independent GANs on all the data) (default voronoi)")
    p.add_argument("--image-size", type=int, metavar="PX", help="resize images to PX x PX (default: the data's own)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto: a GPU when there is one)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="any other TrainConfig field, e.g. --set lr_g=2e-4 --set width=64 (repeatable)")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: checkpoint.safetensors and run.json go here (resumed if it holds a checkpoint)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing run")
    p.add_argument("--quiet", action="store_true", help="print no progress lines, only where the run was saved")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples from a run (an array, an image grid or a points plot)")
    p.add_argument("run", metavar="RUN_DIR", help="run folder made by kgan train")
    p.add_argument("--member", type=int, help="one member (0 to k-1); default: the ensemble weighted by tile size")
    p.add_argument("--n", type=int, default=64, help="how many samples (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="FILE.npy (the samples as an array) or FILE.png (an image grid, or for points a plot "
                   "coloured by member over the real data)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("info", help="print a run's config, tile sizes, metrics and health flags as JSON")
    p.add_argument("run", metavar="RUN_DIR", help="run folder made by kgan train")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("health", help="check each member for collapse, critic inversion, a bad Wasserstein "
                       "estimate, high-frequency artefacts and saturation; stores the result in the run")
    p.add_argument("run", metavar="RUN_DIR", help="run folder made by kgan train")
    p.add_argument("--no-judge", action="store_true",
                   help="measure collapse in pixels instead of loading or training the data's judge")
    p.add_argument("--judge-cache", help="folder of cached judges (default $KGAN_CACHE_DIR/judges)")
    p.add_argument("--no-store", action="store_true", help="print only; leave run.json and the checkpoint alone")
    p.set_defaults(func=cmd_health)

    for ep in entry_points(group="kgan.commands"):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"kgan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
