"""What defines a k-GAN run (TrainConfig), where its data and device come from.

Kept apart from the trainer so that loading a finished run (``kgan_core.run``), the API's
parameter checks and the prior need not import the training loop.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from kgan_core.data import Dataset, load_dataset
from kgan_core.data.files import DEFAULT_MAX_PIXELS

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
    arch: Literal["auto", "mlp", "thesis", "resize", "dcgan64", "dcgan128"] = "auto"
    latent_dim: int | None = Field(None, ge=1, le=1024)
    width: int | None = Field(None, ge=1, le=4096, description="hidden units (mlp) / base channels")
    steps: int = Field(2000, ge=1, le=10_000_000, description="generator updates per member")
    batch_size: int | None = Field(None, ge=1, le=4096, description="per member (default by data shape)")
    n_critic: int | None = Field(None, ge=1, le=100, description="critic updates per generator update "
                                 "(default by data shape)")
    loss: Literal["wgan-gp", "wgan-clip"] = "wgan-gp"
    gp_lambda: float | None = Field(None, ge=0.0, le=1000.0, description="gradient penalty weight (default by "
                                    "data shape)")
    clip_value: float = Field(0.01, gt=0.0, le=10.0)
    lr_g: float | None = Field(None, gt=0.0, le=1.0, description="generator's Adam LR (default by data shape)")
    lr_d: float | None = Field(None, gt=0.0, le=1.0, description="critic's Adam LR (default by data shape)")
    beta1: float | None = Field(None, ge=0.0, lt=1.0, description="Adam's beta1 (default by data shape)")
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
    execution: Literal["auto", "batched", "sequential"] = Field(
        "auto", description="auto: time a few steps of each path on this device at the start (and at each "
        "resume) and train with the faster; batched/sequential force a path (both train the same model)")


# Fields left None in a TrainConfig take these values, chosen by the shape of the data.
# Points: the WGAN-GP paper's recipe (BENCHMARKS.md §Mode coverage's tables), except the
# gradient penalty, 1 rather than the paper's 10: each member's critic reads its tile whitened
# (MLPCritic), and at 10 the penalty held the critics so flat that members settled far narrower
# than their mode — on ring8 (k=8, 1,200 steps, three seeds) 1, 4 and 6 of 8 members flagged
# for collapse at 10, none at 1, with as many samples within 3σ of a mode (BENCHMARKS.md
# §Mode coverage, "Within a mode").
POINT_DEFAULTS = {"batch_size": 64, "n_critic": 5, "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.5, "gp_lambda": 1.0}
# Images: the two time-scale rule (Heusel et al. 2017): one critic update per generator update,
# the critic at 4x the generator's learning rate, Adam betas (0, 0.9): on a CPU budget, the
# most generator updates per CPU second with a critic that stays ahead. With these, the README's
# MNIST k=10 run (2,000 steps, about 14 CPU-minutes) draws every tile's digit (BENCHMARKS.md
# §Image quality: the three-seed results and the short runs behind this choice).
IMAGE_DEFAULTS = {"batch_size": 32, "n_critic": 1, "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "gp_lambda": 10.0}
DATA_DEFAULTED_FIELDS = frozenset(POINT_DEFAULTS)


def with_data_defaults(config: TrainConfig, item_shape: tuple[int, ...]) -> TrainConfig:
    """The config with every field left None filled in for data items of this shape."""
    defaults = POINT_DEFAULTS if len(item_shape) == 1 else IMAGE_DEFAULTS
    return config.model_copy(update={name: value for name, value in defaults.items()
                                     if getattr(config, name) is None})


class TrainingError(ValueError):
    """A run cannot start as configured; the message says what to change."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def dataset_for(config: TrainConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    return load_dataset(config.dataset, root=config.data_root, image_size=config.image_size,
                        channels=config.channels, n_points=config.n_points, seed=config.seed,
                        limit=config.limit, max_pixels=max_pixels)
