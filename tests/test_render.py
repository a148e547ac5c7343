"""Pictures compare across members: one colour per member everywhere, points members on the
same axes and size, grid labels that never run into the next cell, titles that wrap."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgan_core.render import (
    MEMBER_COLOURS,
    TITLE_MIN_WIDTH,
    _font,
    _text_size,
    _wrap,
    labelled_grid,
    member_colour,
    points_bounds,
    points_png,
)
from tests._runs import one_thread, tiny_points_run_dir

ROOT = Path(__file__).resolve().parents[1]


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def pixels_near(png: bytes, colour: str, within: float = 12.0) -> int:
    """How many pixels are within `within` (RGB distance) of colour."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)
    return int((np.linalg.norm(image - rgb(colour), axis=-1) < within).sum())


def test_the_gallery_uses_the_same_member_colours_as_the_pictures():
    charts = (ROOT / "api" / "gallery" / "charts.js").read_text()
    listed = re.search(r"MEMBER_COLOURS = \[([^\]]*)\]", charts).group(1)
    assert tuple(re.findall(r'"(#[0-9a-f]{6})"', listed)) == MEMBER_COLOURS
    assert member_colour(3) == member_colour(3 + len(MEMBER_COLOURS)) != member_colour(4)


def ring(n: int = 800) -> torch.Tensor:
    angle = torch.linspace(0, 2 * torch.pi, n)
    return torch.stack([2 * angle.cos(), 2 * angle.sin()], 1)


def test_each_members_points_plot_has_the_same_axes_size_and_only_its_own_colour():
    data = ring()
    bounds = points_bounds(data)
    samples = {0: torch.full((200, 2), 1.0) + 0.05 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0)),
               1: torch.full((200, 2), -1.0) + 0.05 * torch.randn(200, 2, generator=torch.Generator().manual_seed(1))}
    plots = {j: points_png({j: s}, reference=data, bounds=bounds, tile=data[:100], point_masses={j: s.mean(0)},
                           title=f"member {j} of 2") for j, s in samples.items()}
    sizes = {Image.open(io.BytesIO(png)).size for png in plots.values()}
    assert len(sizes) == 1, sizes
    for j, png in plots.items():
        other = member_colour(1 - j)
        assert pixels_near(png, member_colour(j)) > 50, f"member {j} is drawn in its colour"
        assert pixels_near(png, other) == 0, f"member {j}'s plot shows no other member's colour"
    # The same axes: a point at the same data coordinates lands on the same pixel in both plots.
    marks = [points_png({j: torch.tensor([[0.0, 0.0]])}, bounds=bounds, legend=False, title="t") for j in (0, 1)]
    where = [np.argwhere(np.linalg.norm(np.asarray(Image.open(io.BytesIO(m)).convert("RGB")).astype(float)
                                        - rgb(member_colour(j)), axis=-1) < 12).mean(0) for j, m in enumerate(marks)]
    assert np.allclose(where[0], where[1], atol=0.5)


@pytest.fixture(scope="module")
def points_run():
    from kgan_core.run import load_run

    with one_thread():
        yield load_run(tiny_points_run_dir())


def test_the_ensemble_plot_colours_each_draw_by_the_member_that_drew_it(points_run):
    from kgan_core.visualise.samples import ensemble_points, points_plot

    with one_thread():
        points, drawn_by = ensemble_points(points_run, 300, seed=4)
        assert torch.equal(points, points_run.sample(300, seed=4)), "the same draws as kgan sample"
        for j in range(points_run.k):  # each draw is what member j's generator makes of its z
            assert drawn_by.eq(j).any()
        png = points_plot(points_run, None, 300, seed=4)
    for j in range(points_run.k):
        assert pixels_near(png, member_colour(j)) > 20, f"member {j} coloured in the ensemble plot"


def test_every_member_plot_of_a_run_has_one_size(points_run):
    from kgan_core.visualise.samples import points_plot

    with one_thread():
        sizes = {Image.open(io.BytesIO(points_plot(points_run, j, 100, seed=0, title=f"member {j}"))).size
                 for j in range(points_run.k)}
    assert len(sizes) == 1, sizes


def ink_columns(image: Image.Image, top: int, bottom: int) -> np.ndarray:
    band = np.asarray(image.convert("L"))[top:bottom]
    return (band < 128).any(0)


def test_column_labels_stay_inside_their_own_cell_at_small_image_sizes():
    labels = ["mean of samples", "medoid sample", "point mass"]  # the medoid picture's columns
    image = labelled_grid(-torch.ones(1, 3, 1, 32, 32), row_labels=["member 0"], col_labels=labels)
    pixels = np.asarray(image.convert("L"))
    first_row = int(np.argwhere((pixels == 0).sum(1) >= 3 * 64)[0, 0])  # the black cells (2x: 64 px) start here
    cells_at = (pixels[first_row + 5] == 0)
    edges = np.flatnonzero(np.diff(cells_at.astype(int)))  # [start0, end0, start1, end1, ...]
    gaps = [(edges[i] + edges[i + 1]) // 2 for i in (1, 3)]  # the middles between neighbouring cells
    line = _text_size("Ag", _font())[1] + 4
    ink = ink_columns(image, first_row - line, first_row)
    assert ink.any(), "the column labels are drawn"
    assert not any(ink[g] for g in gaps), "a label crosses into its neighbour's cell"
    assert json.loads(json.dumps(image.info["kgan_labels"]))["cols"] == labels


def test_a_long_title_wraps_to_the_grid_width_instead_of_widening_the_picture():
    title = "medoid · member 0 of 3 · seed 0 · step 60 · 256 samples each · a long tail of detail"
    grid = labelled_grid(torch.zeros(1, 2, 1, 32, 32), col_labels=["a", "b"], title=title)
    bare = labelled_grid(torch.zeros(1, 2, 1, 32, 32), col_labels=["a", "b"], title="t")
    one_line = _text_size(title, _font(14))[0]
    assert grid.width <= max(bare.width, TITLE_MIN_WIDTH) < one_line and grid.height > bare.height
    assert grid.info["kgan_labels"]["title"] == title


def mode_and_members(tight_sd: float = 0.002):
    """One mode of sd 0.02 at (2, 0) on a ring, a member as tight as `tight_sd` and one as wide as the mode."""
    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([2.0, 0.0])
    data = torch.cat([ring(800), centre + 0.02 * torch.randn(400, 2, generator=g)])
    tile = data[800:]
    tight = centre + tight_sd * torch.randn(300, 2, generator=g)
    wide = centre + 0.02 * torch.randn(300, 2, generator=g)
    return data, tile, centre, tight, wide


def test_the_point_mass_ring_does_not_hide_a_tight_members_samples():
    data, tile, centre, tight, _ = mode_and_members()
    bounds = points_bounds(data)
    bare = points_png({0: tight}, bounds=bounds, legend=False, zoom=False)
    marked = points_png({0: tight}, bounds=bounds, legend=False, zoom=False, point_masses={0: centre})
    assert pixels_near(marked, member_colour(0)) >= 0.8 * pixels_near(bare, member_colour(0)) > 0


def test_the_zoom_shows_a_member_narrower_than_its_mode_as_narrower():
    data, tile, centre, tight, wide = mode_and_members()
    bounds = points_bounds(data)

    def drawn(points, zoom):
        return pixels_near(points_png({0: points}, reference=data, bounds=bounds, tile=tile,
                                      point_masses={0: centre}, zoom=zoom, title="member 0"), member_colour(0))

    # On the whole ring both are a dot of a few pixels: the picture cannot tell them apart.
    assert drawn(wide, zoom=False) < 3 * drawn(tight, zoom=False)
    # Zoomed on the mode, the member as wide as its mode covers many times the tight one's area.
    assert drawn(wide, zoom=True) - drawn(wide, zoom=False) > 5 * (drawn(tight, zoom=True) - drawn(tight, zoom=False))
    plots = [points_png({0: p}, reference=data, bounds=bounds, tile=tile, point_masses={0: centre}, title="m")
             for p in (tight, wide)]
    assert len({Image.open(io.BytesIO(png)).size for png in plots}) == 1, "zoomed plots of a run keep one size"


def test_the_ensemble_plot_zooms_on_every_member():
    data, _, centre, tight, wide = mode_and_members()
    other = torch.tensor([-2.0, 0.0])
    samples = {0: tight, 1: wide - centre + other}
    masses = {0: centre, 1: other}
    bounds = points_bounds(data)
    with_zoom = points_png(samples, reference=data, bounds=bounds, point_masses=masses)
    without = points_png(samples, reference=data, bounds=bounds, point_masses=masses, zoom=False)
    assert Image.open(io.BytesIO(with_zoom)).size[1] > Image.open(io.BytesIO(without)).size[1]
    for j in samples:
        assert pixels_near(with_zoom, member_colour(j)) > pixels_near(without, member_colour(j))


def test_a_wrapped_title_keeps_every_separator():
    title = "samples · all 10 members · seed 0 · step 500 · 8 per member, same z for every member"
    font = _font(14)
    assert _wrap(title, font, 10_000) == [title]
    narrow = _wrap(title, font, 200)
    # A break at a separator starts the next line with it ("· seed 0"), a break between words
    # starts it with the word: either way the lines joined by spaces are the title again.
    assert len(narrow) > 1 and " ".join(narrow) == title


def ink_rows(image: Image.Image, left: int, right: int) -> np.ndarray:
    band = np.asarray(image.convert("L"))[:, left:right]
    return (band < 128).any(1)


def test_a_row_label_of_several_lines_makes_its_row_tall_enough():
    # 8 px cells, no enlargement: three lines of label are taller than the cell they label.
    images = torch.ones(2, 2, 1, 8, 8)
    one_line = labelled_grid(images, row_labels=["a", "b"], scale=1)
    three = labelled_grid(images, row_labels=["member 0\n8 at random\nlabels 1: 70%", "nearest"], scale=1)
    line = _text_size("Ag", _font())[1] + 4
    assert three.height >= one_line.height + 2 * line
    inked = ink_rows(three, 0, 20)
    starts = np.flatnonzero(np.diff(inked.astype(int)) == 1)
    assert len(starts) == 4, "three lines for the first row and one for the second, none drawn over another"
    assert three.info["kgan_labels"]["rows"][0] == "member 0\n8 at random\nlabels 1: 70%"
