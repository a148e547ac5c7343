"""Resizing and colour conversion on whole uint8 image tensors."""

from __future__ import annotations

import torch
from torch.nn import functional as F

# ITU-R BT.601 luma, the same weights PIL's convert("L") uses.
LUMA = torch.tensor([0.299, 0.587, 0.114])


def set_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(N, C, H, W) uint8 -> the requested number of channels (1 = grey, 3 = RGB)."""
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and x.shape[1] == 3:
        grey = (x.float() * LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size), antialiased (the thesis resized 250 -> 128)."""
    if size is None or x.shape[-2:] == (size, size):
        return x
    out = []
    for chunk in x.split(1024):  # bounds the float copy for large sets
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)
