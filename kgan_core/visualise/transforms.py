"""Random, size-preserving image transforms applied before every critic evaluation during
activation maximisation (Lucid's ``transform``): an image that only activates the critic at
one exact pixel alignment is an adversarial pattern, not a feature; one that survives small
shifts and rescalings is.

A transform is ``t(images (N, C, H, W), generator) -> images`` of the same shape. Draws come
from the caller's generator, so a seed fixes every shift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def jitter(d: int) -> Transform:
    """Shift by up to ±d pixels in each direction (edges replicated)."""

    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if d <= 0:
            return x
        h, w = x.shape[-2:]
        dy, dx = (int(v) for v in torch.randint(0, 2 * d + 1, (2,), generator=g))
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        return padded[..., dy:dy + h, dx:dx + w]

    return apply


def random_scale(scales: Sequence[float]) -> Transform:
    """Rescale by one of ``scales`` about the centre, keeping the image size."""

    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = float(scales[int(torch.randint(len(scales), (1,), generator=g))])
        if s == 1.0:
            return x
        theta = torch.tensor([[1.0 / s, 0.0, 0.0], [0.0, 1.0 / s, 0.0]], device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return apply


def compose(transforms: Sequence[Transform]) -> Transform:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for t in transforms:
            x = t(x, g)
        return x

    return apply


def standard(side: int) -> Transform:
    """Lucid's default recipe, sized to the image: jitter by ~1/16 of the side, mild scaling,
    then a finer jitter."""
    d = max(1, side // 16)
    return compose([jitter(d), random_scale([0.9, 0.95, 1.0, 1.05, 1.1]), jitter(max(1, d // 2))])
