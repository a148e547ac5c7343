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


# One colour per member in every picture (scatter plots, curves, the gallery's charts and chips,
# which repeat this list in api/gallery/charts.js): member j is the same colour everywhere.
MEMBER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf")
DATA_GREY = "#c8c8c8"


def member_colour(j: int) -> str:
    """Member j's colour (hex), cycling after ten members."""
    return MEMBER_COLOURS[j % len(MEMBER_COLOURS)]


def _tint(colour: str, amount: float) -> str:
    """colour mixed with white: amount 0 is white, 1 the colour itself."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - amount * (255 - c)):02x}" for c in rgb)


def points_bounds(points: torch.Tensor, margin: float = 0.08) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) around every point, with a margin: the axes every member of a run
    is drawn on, so their plots compare point for point."""
    lo, hi = points.min(0).values.float(), points.max(0).values.float()
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * (1 + margin) or 1.0
    return (float(centre[0]) - half, float(centre[0]) + half, float(centre[1]) - half, float(centre[1]) + half)


# A zoom panel spans this many of its real points' standard deviations each side of the point
# mass: a member as wide as its mode fills the middle half, a collapsed one is a dot.
ZOOM_SPREADS = 4.0
ZOOMS_PER_ROW = 4


def _zoom_regions(samples: dict[int, torch.Tensor], point_masses: dict[int, torch.Tensor],
                  reference: torch.Tensor | None, tile: torch.Tensor | None) -> dict[int, dict]:
    """For each member with a point mass: the real points around it (its tile when given, else the
    reference points nearest its mass), and the per-axis standard deviation of those and of its samples."""
    masses = torch.stack([point_masses[j].float().cpu() for j in point_masses])
    owners = list(point_masses)
    regions = {}
    for j, points in samples.items():
        if j not in point_masses:
            continue
        if tile is not None and len(samples) == 1:
            real = tile.float().cpu()
        elif reference is not None:
            reference = reference.float().cpu()
            nearest = torch.cdist(reference, masses).argmin(1)
            real = reference[nearest == owners.index(j)]
        else:
            real = None
        points = points.float().cpu()
        regions[j] = {"centre": point_masses[j].float().cpu(), "real": real, "samples": points,
                      "sample_sd": points.std(0) if len(points) > 1 else None,
                      "real_sd": real.std(0) if real is not None and len(real) > 1 else None}
    return regions


def _draw_zoom(ax, j: int, region: dict, half: float, single: bool) -> None:
    cx, cy = (float(v) for v in region["centre"])
    if region["real"] is not None:
        real = region["real"]
        ax.scatter(real[:, 0], real[:, 1], s=4, c=_tint(member_colour(j), 0.45) if single else DATA_GREY, lw=0,
                   rasterized=True)
    points = region["samples"]
    ax.scatter(points[:, 0], points[:, 1], s=4, c=member_colour(j), lw=0, rasterized=True)
    # Hollow, so the samples under it stay visible.
    ax.plot([cx], [cy], marker="o", ms=9, mfc="none", mec="black", mew=1.0, ls="none")
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#888888")
    sd, real_sd = region["sample_sd"], region["real_sd"]
    if single:
        lines = ["zoom on its point mass,", f"{2 * half:.3g} wide"]
        if sd is not None:
            lines.append(f"sd samples {float(sd[0]):.2g}, {float(sd[1]):.2g}")
        if real_sd is not None:
            lines.append(f"sd tile      {float(real_sd[0]):.2g}, {float(real_sd[1]):.2g}")
    else:  # a narrow panel: the ratio per axis, explained once above the panels
        measured = sd is not None and real_sd is not None and bool((real_sd > 0).all())
        ratio = (sd / real_sd).tolist() if measured else None
        lines = [f"member {j}", f"sd/real {ratio[0]:.2f}, {ratio[1]:.2f}" if ratio else "sd/real –"]
    ax.set_title("\n".join(lines), fontsize=9, loc="left", pad=2)


def points_png(samples: dict[int, torch.Tensor], *, reference: torch.Tensor | None = None,
               bounds: tuple[float, float, float, float] | None = None, tile: torch.Tensor | None = None,
               point_masses: dict[int, torch.Tensor] | None = None, legend: bool = True,
               title: str = "", inches: float = 3.4, dpi: int = 100, zoom: bool = True) -> bytes:
    """2-D samples coloured by member over the real data, as PNG bytes.

    ``samples`` maps member index -> (n, 2) points. The real data (``reference``) is drawn
    faint grey, the real points of the one member's ``tile`` in a light tint of its colour, each
    ``point_masses[j]`` as a hollow black ring. The square axes are ``inches`` wide with the
    title wrapped above and the legend below them, so plots with the same ``bounds`` (see
    ``points_bounds``), legend entries and title length share axes, aspect and pixel size.

    With ``zoom`` and point masses, a row of zoom panels under the legend shows each member
    around its point mass, ZOOM_SPREADS standard deviations of its real points each side, with
    the per-axis standard deviation of its samples beside that of the real points: on the whole
    data range a member much narrower than its mode and one as wide as it are both a dot.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    every = [p.float().cpu() for p in samples.values()] + ([reference.float().cpu()] if reference is not None else [])
    x0, x1, y0, y1 = bounds or points_bounds(torch.cat(every))
    only = next(iter(samples)) if len(samples) == 1 else None
    lines = textwrap.wrap(title, width=int(inches * dpi / 6.2)) if title else []
    entries = ((reference is not None) + (tile is not None and only is not None) + len(samples)
               + (point_masses is not None)) if legend else 0
    ncol = 2
    regions = _zoom_regions(samples, point_masses, reference, tile) if zoom and point_masses else {}
    zoom_rows = -(-len(regions) // ZOOMS_PER_ROW)
    zoom_side = 1.6 if only is not None else 1.15
    zoom_cell = zoom_side + (0.75 if only is not None else 0.45)  # the panel and its lines of numbers above it
    zoom_head = 0.4 if regions and only is None else 0.0  # one explanation above every member's panel
    zoom_height = zoom_rows * zoom_cell + zoom_head
    head, foot, margin = 0.18 * len(lines) + 0.08, 0.2 * -(-entries // ncol) + 0.3, 0.45
    # Several members' legend entries carry longer labels: their plot is wider, axes centred.
    width = max(inches + margin + 0.1, 4.6 if len(samples) > 1 else 0,
                min(len(regions), ZOOMS_PER_ROW) * (zoom_side + 0.25) + 0.2)
    height = inches + head + foot + zoom_height
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    # A fixed frame (no tight bbox): plots of the same size put their axes at the same pixels.
    left = (width - inches - margin - 0.1) / 2 + margin
    ax = fig.add_axes((left / width, (foot + zoom_height) / height, inches / width, inches / height))
    handles = []
    if reference is not None:
        handles.append(ax.scatter(reference[:, 0].cpu(), reference[:, 1].cpu(), s=1.5, c=DATA_GREY, lw=0,
                                  label="real data", rasterized=True))
    if tile is not None and only is not None:
        handles.append(ax.scatter(tile[:, 0].cpu(), tile[:, 1].cpu(), s=3, c=_tint(member_colour(only), 0.45), lw=0,
                                  label=f"its tile: {len(tile):,} real", rasterized=True))
    for j, points in samples.items():
        points = points.float().cpu()
        inside = ((points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1))
        outside = f" ({int((~inside).sum())} outside)" if not bool(inside.all()) else ""
        handles.append(ax.scatter(points[:, 0], points[:, 1], s=3, c=member_colour(j), lw=0,
                                  label=f"member {j}: {len(points):,}{outside}"))
    for j, mass in (point_masses or {}).items():
        # A hollow ring: a filled marker would hide a member whose samples are tighter than it.
        line, = ax.plot([float(mass[0])], [float(mass[1])], marker="o", ms=8, mfc="none", mec="black",
                        mew=1.0, ls="none", label="point mass" + ("" if only is not None else "es"))
        if j == next(iter(point_masses)):
            handles.append(line)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=9)
    if regions:
        spreads = [float(r["real_sd"].max()) for r in regions.values() if r["real_sd"] is not None]
        spreads = spreads or [float(r["sample_sd"].max()) for r in regions.values() if r["sample_sd"] is not None]
        # One window for every panel of the picture, so the panels compare with each other.
        half = ZOOM_SPREADS * max(spreads) if spreads and max(spreads) > 0 else 0.05 * (x1 - x0)
        per_row = min(len(regions), ZOOMS_PER_ROW)
        row_left = (width - per_row * (zoom_side + 0.25) + 0.25) / 2
        for i, (j, region) in enumerate(regions.items()):
            row, column = divmod(i, ZOOMS_PER_ROW)
            bottom = zoom_height - zoom_head - (row + 1) * zoom_cell + 0.1
            zax = fig.add_axes(((row_left + column * (zoom_side + 0.25)) / width, bottom / height,
                                zoom_side / width, zoom_side / height))
            _draw_zoom(zax, j, region, half, only is not None)
        if zoom_head:
            note = (f"Zoomed: {2 * half:.3g} wide around each point mass (the ring). sd/real: the sd of the "
                    "member's samples over that of the real points nearest its mass, per axis (x, y).")
            fig.text(0.02, (zoom_height - 0.02) / height, "\n".join(textwrap.wrap(note, width=int(width * dpi / 7.2))),
                     fontsize=9, va="top", ha="left")
    if lines:
        fig.text(0.02, 1 - 0.04 / height, "\n".join(lines), fontsize=9, va="top", ha="left")
    if legend:
        key = fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=9, frameon=False,
                         handletextpad=0.1, columnspacing=0.8, borderaxespad=0.1,
                         bbox_to_anchor=(0.5, zoom_height / height))
        for handle in key.legend_handles:  # dots big enough to read their colour
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([24])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def scatter_png(points: torch.Tensor, reference: torch.Tensor | None = None, title: str = "",
                size: float = 4.0) -> bytes:
    """A scatter plot of 2-D samples of unknown members (optionally over the real data) as PNG bytes."""
    return points_png({0: points}, reference=reference, legend=False, title=title, inches=size)


def save_bytes(path: str | Path, data: bytes) -> None:
    from kgan_core.checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(path), data)


# --- labelled grids ---------------------------------------------------------------------------

LABEL_FONT_SIZE = 12
TITLE_MIN_WIDTH = 260
LABEL_INK = 0
BACKGROUND = 255


def _font(size: int = LABEL_FONT_SIZE):
    from PIL import ImageFont

    # Pillow's bundled font: the same glyphs on every machine, so renders are reproducible.
    return ImageFont.load_default(size=size)


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return right - left, bottom


def _wrap(text: str, font, width: int) -> list[str]:
    """text in lines no wider than width pixels, broken at " · " first, then at spaces."""
    lines: list[str] = []
    for part in text.split(" · "):
        # By position, not identity: `word is part.split(" ")[0]` held only for interned one-letter
        # words, so most separators were dropped and "samples · all 10 members" read "samples all 10 members".
        for position, word in enumerate(part.split(" ")):
            if not lines:
                lines.append(word)
                continue
            glue = " · " if position == 0 else " "
            if _text_size(lines[-1] + glue + word, font)[0] <= width:
                lines[-1] += glue + word
            else:
                lines.append(("· " if glue == " · " else "") + word)
    return lines


def labelled_grid(images: torch.Tensor, *, row_labels: list[str] | None = None,
                  col_labels: list[str] | None = None, title: str = "", scale: int | None = None,
                  captions: list[list[str]] | None = None, padding: int = 2, min_cell: int = 64) -> Image.Image:
    """A (rows, cols, C, H, W) grid of model-range images with row labels on the left, column
    labels on top and a title line above everything; ``captions[r][c]`` (e.g. a value) is
    written under cell (r, c). A row label may hold several lines ("\n"): a row grows to fit
    them, so a label never runs into the next row's.

    Pixels use ``to_uint8``'s fixed mapping, so the same value is the same grey in every
    panel and for every member. Small images are enlarged by an integer factor (nearest
    neighbour, so no pixel is invented) until a cell is at least ``min_cell`` pixels wide; a
    cell is widened to its column label, and the title wraps to the grid's width (at least
    ``TITLE_MIN_WIDTH``), so no text overlaps and the picture is no wider than its grid needs.
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
    label_lines = [text.split("\n") for text in row_labels or []]
    left = max([_text_size(t, font)[0] for lines in label_lines for t in lines], default=0)
    left = left + 8 if row_labels else 0
    rh = max([ch] + [len(lines) * line for lines in label_lines])  # a row: its cells, or its label if taller
    top_cols = line if col_labels else 0
    if captions is not None and (len(captions) != rows or any(len(r) != cols for r in captions)):
        raise ValueError(f"captions must be {rows} rows of {cols} strings")
    cap = line if captions else 0
    cw = max(cw, max((_text_size(t, font)[0] + 2 for r in captions or [] for t in r), default=0),
             max((_text_size(t, font)[0] + 8 for t in col_labels or []), default=0))
    grid_w = cols * (cw + padding) + padding
    title_lines = _wrap(title, title_font, max(left + grid_w, TITLE_MIN_WIDTH) - 8) if title else []
    title_line = _text_size("Ag", title_font)[1] + 3
    top_title = len(title_lines) * title_line + 6 if title else 0
    width = max([left + grid_w] + [_text_size(t, title_font)[0] + 8 for t in title_lines])
    height = top_title + top_cols + rows * (rh + cap + padding) + padding
    mode = "L" if c == 1 else "RGB"
    canvas = Image.new(mode, (width, height), BACKGROUND if c == 1 else (BACKGROUND,) * 3)
    for i in range(rows * cols):
        r, col = divmod(i, cols)
        tile = pixels[i].permute(1, 2, 0).numpy()
        tile_img = Image.fromarray(tile[:, :, 0] if c == 1 else tile, mode=mode)
        x0 = left + padding + col * (cw + padding) + (cw - w * scale) // 2
        canvas.paste(tile_img, (x0, top_title + top_cols + padding + r * (rh + cap + padding) + (rh - ch) // 2))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    ink = LABEL_INK if c == 1 else (LABEL_INK,) * 3
    for i, text in enumerate(title_lines):
        draw.text((4, 4 + i * title_line), text, fill=ink, font=title_font)
    for col, text in enumerate(col_labels or []):
        tw = _text_size(text, font)[0]
        x = left + padding + col * (cw + padding) + max(0, (cw - tw) // 2)
        draw.text((x, top_title + 1), text, fill=ink, font=font)
    for r, lines in enumerate(label_lines):
        y = top_title + top_cols + padding + r * (rh + cap + padding) + max(0, (rh - len(lines) * line) // 2)
        for i, text in enumerate(lines):
            draw.text((2, y + i * line), text, fill=ink, font=font)
    for r, row in enumerate(captions or []):
        for col, text in enumerate(row):
            tw = _text_size(text, font)[0]
            x = left + padding + col * (cw + padding) + max(0, (cw - tw) // 2)
            draw.text((x, top_title + top_cols + padding + r * (rh + cap + padding) + rh + 1), text, fill=ink,
                      font=font)
    canvas.info["kgan_labels"] = {"title": title, "rows": list(row_labels or []), "cols": list(col_labels or []),
                                  "captions": [list(r) for r in captions or []]}
    canvas.info["kgan_images"] = images.detach().cpu()  # the raw values, for a .npy beside the PNG
    return canvas


def titled_figure(image: Image.Image, title: str) -> Image.Image:
    """Put a title line above an already rendered image (e.g. a matplotlib plot)."""
    font = _font(LABEL_FONT_SIZE + 2)
    lines = _wrap(title, font, max(image.width, TITLE_MIN_WIDTH) - 8)
    line = _text_size("Ag", font)[1] + 3
    top = len(lines) * line + 6
    width = max([image.width] + [_text_size(t, font)[0] + 8 for t in lines])
    canvas = Image.new(image.mode, (width, image.height + top), "white")
    canvas.paste(image, (0, top))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(lines):
        draw.text((4, 4 + i * line), text, fill="black", font=font)
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
