"""What defines a k-GAN run (TrainConfig), where its data and device come from.

Kept apart from the trainer so that loading a finished run (``kgan_core.run``), the API's
parameter checks and the prior need not import the training loop.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from kgan_core.data import Dataset, load_dataset

# Fields that may differ when a run is resumed; every other field must match the checkpoint.
RESUMABLE_FIELDS = frozenset({"steps", "checkpoint_every", "log_every", "device", "execution"})


class TrainConfig(BaseModel):
    """Everything that defines a k-GAN run. Bounds keep a typo from asking for a year of GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field("ring8", description="built-in name or path to a folder/archive/array")
    data_root: str | None = Field(None, description="folder holding built-in datasets' files")
    image_size: int | None = Field(None, ge=8, le=512)
    channels: Literal[1, 3] | None = None
    limit: int | None = Field(None, ge=1, le=10_000_000, description="use only the first N items")
    n_points: int = Field(10_000, ge=10, le=1_000_000, description="size of ring8/grid25")
    k: int = Field(8, ge=1, le=128, description="number of members")
    arch: Literal["auto", "mlp", "thesis", "dcgan64", "dcgan128"] = "auto"
    latent_dim: int | None = Field(None, ge=1, le=1024)
    width: int | None = Field(None, ge=1, le=4096, description="hidden units (mlp) / base channels")
    steps: int = Field(2000, ge=1, le=10_000_000, description="generator updates per member")
    batch_size: int = Field(64, ge=1, le=4096, description="per member")
    n_critic: int = Field(5, ge=1, le=100)
    loss: Literal["wgan-gp", "wgan-clip"] = "wgan-gp"
    gp_lambda: float = Field(10.0, ge=0.0, le=1000.0)
    clip_value: float = Field(0.01, gt=0.0, le=10.0)
    lr_g: float = Field(1e-4, gt=0.0, le=1.0)
    lr_d: float = Field(1e-4, gt=0.0, le=1.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.9, ge=0.0, lt=1.0)
    assignment: Literal["voronoi", "balanced", "none"] = "voronoi"
    rounds: int = Field(4, ge=0, le=10_000, description="medoid moves + re-tilings during training")
    lr_decay: Literal["linear", "none"] = Field(
        "linear", description="linear: learning rates fall to 0 at the last step (damps the final GAN oscillation)")
    medoid: Literal["mean", "sample"] = "mean"
    medoid_moves: Literal["descent", "always"] = Field(
        "descent", description="descent: with voronoi tiles a point mass moves to its generator's medoid only "
        "if that lowers the tiling cost (k-medoids' rule), so a half-trained generator cannot pull its tile off "
        "the data; always: every round moves every mass")
    medoid_samples: int = Field(256, ge=2, le=10_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    checkpoint_every: int = Field(500, ge=1, le=10_000_000)
    log_every: int = Field(50, ge=1, le=10_000_000)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    execution: Literal["batched", "sequential"] = "batched"


class TrainingError(ValueError):
    """A run cannot start as configured; the message says what to change."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def dataset_for(config: TrainConfig) -> Dataset:
    return load_dataset(config.dataset, root=config.data_root, image_size=config.image_size,
                        channels=config.channels, n_points=config.n_points, seed=config.seed,
                        limit=config.limit)
