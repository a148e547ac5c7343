"""The one in-memory form every dataset takes, and the map between stored and model ranges."""

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
    float and what the training device gathers batches from). ``labels`` are int64 class
    indices into ``classes`` (names, when the source has them: digits, sub-folders, people).
    """

    name: str
    x: torch.Tensor
    labels: torch.Tensor | None
    kind: Literal["points", "images"]
    centres: torch.Tensor | None = None  # mode centres of ring8 / grid25
    sigma: float | None = None           # standard deviation of each mode
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # A malformed Dataset would otherwise fail far away, inside a training step.
        x = self.x
        expected = {"points": (2, torch.float32), "images": (4, torch.uint8)}.get(self.kind)
        if expected is None:
            raise DatasetError(f"dataset {self.name!r}: kind must be 'points' or 'images', got {self.kind!r}")
        if (x.ndim, x.dtype) != expected:
            raise DatasetError(f"dataset {self.name!r}: {self.kind} must be a {expected[1]} tensor of rank "
                               f"{expected[0]}, got {x.dtype} of shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise DatasetError(f"dataset {self.name!r} is empty")
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != (x.shape[0],)):
            raise DatasetError(f"dataset {self.name!r}: labels must be int64 of shape ({x.shape[0]},), got "
                               f"{self.labels.dtype} of shape {tuple(self.labels.shape)}")
        if self.classes is not None and self.labels is not None and int(self.labels.max()) >= len(self.classes):
            raise DatasetError(f"dataset {self.name!r}: a label exceeds the {len(self.classes)} class names")
        if not x.is_contiguous():
            object.__setattr__(self, "x", x.contiguous())

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of stored items in the model's range: images [-1, 1], points as they are (float32)."""
        return images_to_model(x) if self.kind == "images" else x.to(torch.float32)


def images_to_model(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    if x_uint8.dtype != torch.uint8:
        # A float batch here is almost always already in model range; scaling it again is silent garbage.
        raise TypeError(f"images_to_model expects uint8 images, got {x_uint8.dtype}")
    return x_uint8.to(torch.float32).div_(127.5).sub_(1.0)


def images_from_model(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 0..255 (clamped, rounded); exact inverse of images_to_model."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
