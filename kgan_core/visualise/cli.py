"""``kgan visualise`` and ``kgan train-prior``, registered through the ``kgan.commands``
entry-point group (see ``kgan_core.cli``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from kgan_core.visualise.errors import OptionError

    options: dict[str, Any] = {}
    for name in ("n", "layer", "channel", "unit", "steps", "prior", "vgg_weights"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.method:
        options["methods"] = args.method
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise OptionError(f"--set expects NAME=VALUE, got {item!r}")
        options[name.strip().replace("-", "_")] = _value(value)
    return options


def cmd_visualise(args: argparse.Namespace) -> int:
    from kgan_core.run import load_run
    from kgan_core.visualise import visualise

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must end in .png (the numbers are written beside it as .json), got {out.name!r}")
    run = load_run(args.run)
    vis = visualise(run, args.what, args.member, seed=args.seed, **_options(args))
    png, js = vis.save(out)
    npy = f", {png.with_suffix('.npy')} (the images shown, model range)" if vis.images is not None else ""
    print(f"wrote {png}, {js}{npy}")
    return 0


def cmd_train_prior(args: argparse.Namespace) -> int:
    from kgan_core.prior import PriorConfig, train_prior

    fields = {"dataset": args.data, "data_root": args.data_root, "image_size": args.image_size,
              "channels": args.channels, "limit": args.limit, "encoder": args.encoder, "run": args.run,
              "member": args.member, "layer": args.layer, "vgg_weights": args.vgg_weights, "steps": args.steps,
              "code_dim": args.code_dim, "width": args.width, "seed": args.seed, "device": args.device}
    values = {k: v for k, v in fields.items() if v is not None}
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        values[name.strip().replace("-", "_")] = _value(value)
    config = PriorConfig.model_validate(values)

    def progress(p) -> None:
        if not args.quiet:
            print(f"step {p.step:>6}/{p.total}  pixel {p.losses['pixel']:.4f}  held-out mse {p.heldout_mse:.4f}",
                  flush=True)

    result = train_prior(config, Path(args.out), callback=progress)
    m = result.metrics
    print(f"prior saved in {result.path}: held-out SSIM {m['heldout_ssim']:.3f}, PSNR {m['heldout_psnr']:.2f} dB")
    return 0


def register(subparsers) -> None:
    from kgan_core.visualise import METHODS, VISUALISATIONS

    names = list(VISUALISATIONS)
    p = subparsers.add_parser("visualise", help="render what a member learnt (PNG + numbers as JSON)",
                              description="; ".join(f"{n}: {e.description}" for n, e in VISUALISATIONS.items()))
    p.add_argument("run", help="run folder")
    p.add_argument("--what", required=True, choices=names)
    p.add_argument("--member", type=int, help="one member; default: every member side by side where it makes sense")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, help="how many images per member")
    p.add_argument("--layer", help="critic layer (activation-max), or all for every layer; default: the last")
    p.add_argument("--channel", type=int, help="one channel of the layer (activation-max)")
    p.add_argument("--unit", type=int, help="one unit of the layer (activation-max)")
    p.add_argument("--method", action="append", choices=list(METHODS),
                   help="activation-max search (repeatable); default: pixel, regularised, and prior if given")
    p.add_argument("--prior", help="prior file from kgan train-prior (activation-max)")
    p.add_argument("--vgg-weights", help="VGG-16 weights, for a prior with the vgg16 encoder")
    p.add_argument("--steps", type=int, help="optimisation steps (activation-max) or traversal columns")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="any other option (JSON values)")
    p.add_argument("--out", required=True,
                   help="FILE.png; FILE.json gets the numbers and FILE.npy the images shown (rows, columns, C, H, W)")
    p.set_defaults(func=cmd_visualise)

    p = subparsers.add_parser("train-prior", help="train the image prior used by activation maximisation")
    p.add_argument("--data", help="built-in dataset or path (default mnist)")
    p.add_argument("--data-root")
    p.add_argument("--image-size", type=int)
    p.add_argument("--channels", type=int, choices=[1, 3])
    p.add_argument("--limit", type=int)
    p.add_argument("--encoder", choices=["small", "critic", "vgg16"])
    p.add_argument("--run", help="run folder whose critic is the encoder (--encoder critic)")
    p.add_argument("--member", type=int)
    p.add_argument("--layer")
    p.add_argument("--vgg-weights")
    p.add_argument("--steps", type=int)
    p.add_argument("--code-dim", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="any other PriorConfig field")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True, help="FILE.safetensors")
    p.set_defaults(func=cmd_train_prior)
