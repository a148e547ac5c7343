"""Checkpoints: one safetensors file with weights, optimiser state, tiles and RNG state,
plus a human-readable ``run.json``. Both are written to a temporary file and renamed, so a
crash never leaves a half-written checkpoint. The safetensors file carries the state as
JSON metadata too, so weights and state can never disagree.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

CHECKPOINT_FILE = "checkpoint.safetensors"
RUN_FILE = "run.json"
FORMAT = "kgan-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to a different model."""


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    config: dict[str, Any]
    spec: dict[str, Any]
    step: int
    generator: dict[str, torch.Tensor]
    critic: dict[str, torch.Tensor]
    opt_g: dict[str, Any]
    opt_d: dict[str, Any]
    masses: torch.Tensor
    assignment: torch.Tensor
    rng_state: torch.Tensor
    state: dict[str, Any] = field(default_factory=dict)  # rounds done, history, metrics, events


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _flatten_optimizer(prefix: str, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict:
    """Optimiser state tensors go into the safetensors file; the rest stays JSON."""
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            tensors[f"{prefix}.{index}.{name}"] = torch.as_tensor(value).detach().contiguous().cpu()
    return {"param_groups": state["param_groups"], "indices": list(state["state"].keys())}


def _unflatten_optimizer(prefix: str, meta: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    start = f"{prefix}."
    for key, value in tensors.items():
        if key.startswith(start):
            index, name = key[len(start):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: Path, ckpt: Checkpoint, summary: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, value in ckpt.generator.items():
        tensors[f"generator.{name}"] = value.detach().contiguous().cpu()
    for name, value in ckpt.critic.items():
        tensors[f"critic.{name}"] = value.detach().contiguous().cpu()
    opt_meta = {"opt_g": _flatten_optimizer("opt_g", ckpt.opt_g, tensors),
                "opt_d": _flatten_optimizer("opt_d", ckpt.opt_d, tensors)}
    tensors["tiles.masses"] = ckpt.masses.detach().contiguous().cpu()
    tensors["tiles.assignment"] = ckpt.assignment.detach().contiguous().cpu()
    tensors["rng.state"] = ckpt.rng_state.contiguous().cpu()
    meta = {"config": ckpt.config, "spec": ckpt.spec, "step": ckpt.step, "state": ckpt.state,
            "optimizers": opt_meta}
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{CHECKPOINT_FILE}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": FORMAT, "meta": json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, run_dir / CHECKPOINT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_bytes(run_dir / RUN_FILE, json.dumps(summary, indent=2).encode())


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_FILE).is_file()


def load_checkpoint(run_dir: Path) -> Checkpoint:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir}: expected {path} (train a run there first)")
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable kgan checkpoint: {exc}") from exc
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a kgan checkpoint (format {header.get('format')!r}, "
                              f"expected {FORMAT!r})")
    meta = json.loads(header["meta"])

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    return Checkpoint(
        config=meta["config"], spec=meta["spec"], step=int(meta["step"]),
        generator=part("generator"), critic=part("critic"),
        opt_g=_unflatten_optimizer("opt_g", meta["optimizers"]["opt_g"], tensors),
        opt_d=_unflatten_optimizer("opt_d", meta["optimizers"]["opt_d"], tensors),
        masses=tensors["tiles.masses"], assignment=tensors["tiles.assignment"],
        rng_state=tensors["rng.state"], state=meta["state"],
    )
