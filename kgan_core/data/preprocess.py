"""Resizing and colour conversion, identical for decoded files and for whole arrays.

Both paths go through the same two definitions (PIL's luma weights and ``fit_square``),
so a folder of PNGs and the same pixels saved as ``.npy`` load to the same tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Bicubic is antialiased when shrinking (PIL widens the kernel), as the thesis' 250 -> 128 needs.
RESAMPLE = Image.Resampling.BICUBIC


def fit_square(image: Image.Image, size: int | None) -> Image.Image:
    """Centre-crop to a square (so faces are not squashed), then resize to size x size."""
    if size is None or image.size == (size, size):
        return image
    w, h = image.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), RESAMPLE)


def rgb_to_grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 1, H, W), bit-exact with PIL's convert("L") (ITU-R 601-2 luma)."""
    rgb = x.to(torch.int32)
    luma = rgb[:, 0:1] * 19595 + rgb[:, 1:2] * 38470 + rgb[:, 2:3] * 7471 + 0x8000
    return (luma >> 16).to(torch.uint8)


def set_channels(x: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(N, C, H, W) uint8 -> the requested number of channels (1 = grey, 3 = RGB); None keeps C."""
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and x.shape[1] == 3:
        return rgb_to_grey(x)
    raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) through ``fit_square``, one item at a time.

    A load-time loop (70,000 MNIST digits take about a second) buys exact agreement with
    images decoded from files; training never sees anything but the finished tensor.
    """
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    items = x.cpu().permute(0, 2, 3, 1).numpy()
    out = np.empty((x.shape[0], size, size, x.shape[1]), dtype=np.uint8)
    for i, item in enumerate(items):
        image = Image.fromarray(np.ascontiguousarray(item[:, :, 0] if x.shape[1] == 1 else item))
        out[i] = np.asarray(fit_square(image, size)).reshape(size, size, -1)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
