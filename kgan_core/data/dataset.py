"""The one in-memory form every dataset takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


class DatasetError(ValueError):
    """A dataset cannot be loaded; the message names the file or name and what to do."""


@dataclass(frozen=True)
class Dataset:
    """A whole dataset as tensors: never a per-item Python loop at training time.

    ``x`` is float32 (N, D) for points, uint8 (N, C, H, W) for images (4x smaller than
    float and what the training device gathers batches from).
    """

    name: str
    x: torch.Tensor
    labels: torch.Tensor | None
    kind: Literal["points", "images"]
    centres: torch.Tensor | None = None  # mode centres of ring8 / grid25
    sigma: float | None = None           # standard deviation of each mode

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of stored items in the model's range: images [-1, 1], points as they are."""
        return images_to_model(x) if self.kind == "images" else x.float()


def images_to_model(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1]."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def images_from_model(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 0..255 (clamped, rounded)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
