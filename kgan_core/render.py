"""Turning model outputs into pictures.

Values are mapped to pixels the same way for every member (model range [-1, 1] -> 0..255,
clamped), so panels of different members compare.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> uint8, fixed mapping (no per-image rescaling)."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_grid(images: torch.Tensor, ncol: int | None = None, padding: int = 2,
               pad_value: int = 255) -> Image.Image:
    """Tile (N, C, H, W) model-range images into one PIL image, row-major."""
    n, c, h, w = images.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = math.ceil(n / ncol)
    pixels = to_uint8(images)
    canvas = torch.full((c, nrow * (h + padding) + padding, ncol * (w + padding) + padding),
                        pad_value, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        canvas[:, y:y + h, x:x + w] = pixels[i]
    array = canvas.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def scatter_png(points: torch.Tensor, reference: torch.Tensor | None = None, title: str = "",
                size: float = 4.0) -> bytes:
    """A scatter plot of 2-D samples (optionally over the real data) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="#bbbbbb", label="data")
    ax.scatter(points[:, 0].cpu(), points[:, 1].cpu(), s=2, c="#d62728", label="samples")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_bytes(path: str | Path, data: bytes) -> None:
    from kgan_core.checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(path), data)
