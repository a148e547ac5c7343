"""``kgan remote train|status|fetch``: drive a kgan service over HTTP with this client.

Registered in the ``kgan.commands`` entry-point group, so ``kgan`` gains these commands
without kgan_core importing the client. The URL and key come from ``--url``/``--key`` or
the KGAN_URL / KGAN_API_KEY environment variables (a key on the command line lands in the
shell's history)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from kgan_client.errors import ApiError, JobFailed, KganError
from kgan_client.progress import describe, format_eta
from kgan_client.sync import Client, Job, Model

DEFAULT_URL = "http://localhost:8000"


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise KganError(f"--set expects FIELD=VALUE, got {item!r}")
        params[name.strip().replace("-", "_")] = _value(value)
    flags = {"k": args.k, "steps": args.steps, "image_size": args.image_size, "seed": args.seed}
    params.update({name: value for name, value in flags.items() if value is not None})
    return params


def connect(args: argparse.Namespace) -> Client:
    if not args.key:
        raise KganError("no API key: pass --key or set KGAN_API_KEY (kgan serve prints one on its first start; "
                        "kgan create-key makes more)")
    return Client(args.url, args.key)


def cmd_train(args: argparse.Namespace, kgan: Client) -> int:
    dataset_id = args.dataset_id
    if args.upload:
        uploaded = kgan.upload_dataset(args.upload)
        print(f"uploaded {args.upload}: dataset {uploaded.id} ({uploaded.n_items} images)", file=sys.stderr)
        dataset_id = uploaded.id
    if (args.data is None) == (dataset_id is None):
        raise KganError("say what to train on: --data <built-in>, --dataset-id <id> or --upload <archive>")
    job = kgan.train(args.data, dataset_id=dataset_id, idempotency_key=args.idempotency_key, **train_params(args))
    print(job.id)
    if args.no_wait:
        return 0
    job.wait(progress=True)
    print(f"model {job.info.model_id}")
    return 0


def print_job(job: Job, as_json: bool) -> None:
    if as_json:
        print(job.info.model_dump_json(indent=2))
        return
    print(describe(job.info) + (f"  model {job.info.model_id}" if job.info.model_id else ""))
    if job.info.error:
        print(f"  {job.info.error.title}: {job.info.error.detail or ''}")


def cmd_status(args: argparse.Namespace, kgan: Client) -> int:
    if args.job_id is None:
        jobs = kgan.jobs(status=args.status)[: args.limit]
        if args.json:
            print(json.dumps([j.info.model_dump(mode="json") for j in jobs], indent=2))
            return 0
        for job in jobs:
            p = job.info.progress
            eta = format_eta(p.eta_s) if job.status == "running" else ""
            print(f"{job.id}  {job.info.kind:<11} {job.status:<9} {p.step:>7}/{p.total:<7} {eta:<10} "
                  f"{job.info.model_id or ''}")
        return 0
    job = kgan.job(args.job_id)
    if args.watch:
        job.wait(progress=True, check=False)
    print_job(job, args.json)
    return 0 if job.status in ("succeeded", "queued", "running") else 1


def find_model(kgan: Client, ident: str) -> tuple[Model | None, Job | None]:
    """A model id, or a job id (whose model, if it made one)."""
    try:
        return kgan.model(ident), None
    except ApiError as exc:
        if exc.status != 404:
            raise
    job = kgan.job(ident)
    return (job.model() if job.info.model_id else None), job


def cmd_fetch(args: argparse.Namespace, kgan: Client) -> int:
    out = Path(args.out)
    model, job = find_model(kgan, args.id)
    if model is None:
        assert job is not None
        paths = job.download_artifacts(out)
    else:
        paths = model.download_artifacts(out)
        for member in model.members:
            path = out / f"member-{member.k}-samples.png"
            member.samples(args.n, args.seed).save(path)
            paths.append(path)
    for path in paths:
        print(path)
    return 0


def cmd_delete(args: argparse.Namespace, kgan: Client) -> int:
    (kgan.delete_model if args.what == "model" else kgan.delete_dataset)(args.id)
    print(f"deleted {args.what} {args.id}")
    return 0


COMMANDS = {"train": cmd_train, "status": cmd_status, "fetch": cmd_fetch, "delete": cmd_delete}


def run(args: argparse.Namespace) -> int:
    try:
        with connect(args) as kgan:
            return COMMANDS[args.remote_command](args, kgan)
    except JobFailed as exc:
        print(f"kgan remote {args.remote_command}: {exc}", file=sys.stderr)
        return 1
    except KganError as exc:
        print(f"kgan remote {args.remote_command}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, httpx.TransportError) as exc:  # connection refused, unknown host, an unwritable folder
        print(f"kgan remote {args.remote_command}: error: {exc} (is the service running at {args.url}?)",
              file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # --url and --key are accepted after each command too (kgan remote status --url ...).
    service = argparse.ArgumentParser(add_help=False)
    service.add_argument("--url", default=os.environ.get("KGAN_URL", DEFAULT_URL),
                         help=f"the service (default: $KGAN_URL or {DEFAULT_URL})")
    service.add_argument("--key", default=os.environ.get("KGAN_API_KEY"), help="API key (default: $KGAN_API_KEY)")
    remote = sub.add_parser("remote", help="train, watch, fetch and delete models on a kgan service over HTTP")
    commands = remote.add_subparsers(dest="remote_command", required=True)

    p = commands.add_parser("train", parents=[service], help="submit a train job and show its progress until it ends")
    p.add_argument("--data", help="a built-in dataset (ring8, grid25, mnist, ...)")
    p.add_argument("--dataset-id", help="one of your uploaded datasets")
    p.add_argument("--upload", help="upload this .zip/.tar/.tar.gz of images first and train on it")
    p.add_argument("--k", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="any other train parameter")
    p.add_argument("--idempotency-key", help="retrying with the same key returns the same job")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")

    p = commands.add_parser("status", parents=[service], help="one job's progress, or your recent jobs")
    p.add_argument("job_id", nargs="?")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--watch", action="store_true", help="show a progress bar until the job ends")
    p.add_argument("--json", action="store_true")

    p = commands.add_parser("fetch", parents=[service], help="download a model's artifacts and each member's samples")
    p.add_argument("id", help="a model id, or a job id")
    p.add_argument("--out", required=True, help="folder (created; files already there with the same content "
                   "are not fetched again)")
    p.add_argument("--n", type=int, default=64, help="samples per member")
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser("delete", parents=[service], help="delete a model (with its checkpoint and pictures) "
                            "or a dataset, to free storage; refused while jobs still need it")
    p.add_argument("what", choices=["model", "dataset"])
    p.add_argument("id")
    remote.set_defaults(func=run)
