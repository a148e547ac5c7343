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


# --- labelled grids ---------------------------------------------------------------------------

LABEL_FONT_SIZE = 12
LABEL_INK = 0
BACKGROUND = 255


def _font(size: int = LABEL_FONT_SIZE):
    from PIL import ImageFont

    # Pillow's bundled font: the same glyphs on every machine, so renders are reproducible.
    return ImageFont.load_default(size=size)


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return right - left, bottom


def labelled_grid(images: torch.Tensor, *, row_labels: list[str] | None = None,
                  col_labels: list[str] | None = None, title: str = "", scale: int | None = None,
                  captions: list[list[str]] | None = None, padding: int = 2, min_cell: int = 64) -> Image.Image:
    """A (rows, cols, C, H, W) grid of model-range images with row labels on the left, column
    labels on top and a title line above everything; ``captions[r][c]`` (e.g. a value) is
    written under cell (r, c).

    Pixels use ``to_uint8``'s fixed mapping, so the same value is the same grey in every
    panel and for every member. Small images are enlarged by an integer factor (nearest
    neighbour, so no pixel is invented) until a cell is at least ``min_cell`` pixels wide.
    """
    if images.dim() != 5:
        raise ValueError(f"labelled_grid expects (rows, cols, C, H, W) images, got shape {tuple(images.shape)}")
    rows, cols, c, h, w = images.shape
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    scale = scale or max(1, math.ceil(min_cell / w))
    pixels = to_uint8(images.reshape(rows * cols, c, h, w))
    if scale > 1:
        pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    ch, cw = h * scale, w * scale
    font, title_font = _font(), _font(LABEL_FONT_SIZE + 2)
    line = _text_size("Ag", font)[1] + 4
    left = max([_text_size(t, font)[0] for t in row_labels or []], default=0)
    left = left + 8 if row_labels else 0
    top_title = _text_size("Ag", title_font)[1] + 8 if title else 0
    top_cols = line if col_labels else 0
    if captions is not None and (len(captions) != rows or any(len(r) != cols for r in captions)):
        raise ValueError(f"captions must be {rows} rows of {cols} strings")
    cap = line if captions else 0
    cw = max(cw, max((_text_size(t, font)[0] + 2 for r in captions or [] for t in r), default=0))
    grid_w = cols * (cw + padding) + padding
    width = max(left + grid_w, _text_size(title, title_font)[0] + 8 if title else 0)
    height = top_title + top_cols + rows * (ch + cap + padding) + padding
    mode = "L" if c == 1 else "RGB"
    canvas = Image.new(mode, (width, height), BACKGROUND if c == 1 else (BACKGROUND,) * 3)
    for i in range(rows * cols):
        r, col = divmod(i, cols)
        tile = pixels[i].permute(1, 2, 0).numpy()
        tile_img = Image.fromarray(tile[:, :, 0] if c == 1 else tile, mode=mode)
        x0 = left + padding + col * (cw + padding) + (cw - w * scale) // 2
        canvas.paste(tile_img, (x0, top_title + top_cols + padding + r * (ch + cap + padding)))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    ink = LABEL_INK if c == 1 else (LABEL_INK,) * 3
    if title:
        draw.text((4, 4), title, fill=ink, font=title_font)
    for col, text in enumerate(col_labels or []):
        tw = _text_size(text, font)[0]
        x = left + padding + col * (cw + padding) + max(0, (cw - tw) // 2)
        draw.text((x, top_title + 1), text, fill=ink, font=font)
    for r, text in enumerate(row_labels or []):
        y = top_title + top_cols + padding + r * (ch + cap + padding) + max(0, (ch - line) // 2)
        draw.text((2, y), text, fill=ink, font=font)
    for r, row in enumerate(captions or []):
        for col, text in enumerate(row):
            tw = _text_size(text, font)[0]
            x = left + padding + col * (cw + padding) + max(0, (cw - tw) // 2)
            draw.text((x, top_title + top_cols + padding + r * (ch + cap + padding) + ch + 1), text, fill=ink,
                      font=font)
    canvas.info["kgan_labels"] = {"title": title, "rows": list(row_labels or []), "cols": list(col_labels or []),
                                  "captions": [list(r) for r in captions or []]}
    return canvas


def titled_figure(image: Image.Image, title: str) -> Image.Image:
    """Put a title line above an already rendered image (e.g. a matplotlib plot)."""
    font = _font(LABEL_FONT_SIZE + 2)
    top = _text_size("Ag", font)[1] + 8
    width = max(image.width, _text_size(title, font)[0] + 8)
    canvas = Image.new(image.mode, (width, image.height + top), "white")
    canvas.paste(image, (0, top))
    from PIL import ImageDraw

    ImageDraw.Draw(canvas).text((4, 4), title, fill="black", font=font)
    canvas.info["kgan_labels"] = {"title": title, "rows": [], "cols": []}
    return canvas


def labelled_png_bytes(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes carrying the grid's labels (and any ``text``) as PNG text chunks, so a reader
    of the file alone knows what each row and column shows."""
    import json

    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    labels = image.info.get("kgan_labels")
    if labels:
        info.add_text("Title", labels["title"])
        info.add_text("kgan-labels", json.dumps(labels))
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()
