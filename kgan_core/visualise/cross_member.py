"""Cross-member matrix: how real critic D_i finds the samples of generator G_j (k × k),
measured against D_i's own real tile.

WGAN critics have arbitrary offsets and scales, so raw scores only compare within a row.
Each row is normalised: cell (i, j) = (mean D_i(G_j samples) − mean D_i(tile i)) / spread of
D_i on tile i — "how many of its own tile's spreads below (or above) its real data does D_i
put G_j's samples". Read per row: ``critic_ranks_own_generator_first[i]`` says whether D_i
finds its own generator's samples the most real of all generators'. A positive diagonal
cell is a warning, not a success: the critic rates its generator's samples above the real
images it was trained on (an inverted critic, or a generator that found its blind spot).

The colour scale is fitted to the values: diverging (blue below 0, red above, each side
stretched to its own extreme, or to a quarter of the other side's if that is larger) when
they straddle 0, sequential when all have one sign, and never white, so a cell near 0 still
shows against the background.
"""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import Visualisation, bounded_int, rounded, tile_items, title_for

_BLUE, _GREY, _RED = torch.tensor([0.1, 0.25, 0.8]), torch.tensor([0.82, 0.82, 0.82]), torch.tensor([0.8, 0.1, 0.1])
_PALE, _DARK = torch.tensor([0.98, 0.9, 0.55]), torch.tensor([0.25, 0.05, 0.4])
# Cells are drawn this many pixels wide before labelled_grid enlarges them (3x to 48 px): the
# diagonal's one-pixel frame becomes three.
DIAGONAL_CELL = 16


def fitted_colours(matrix: torch.Tensor) -> tuple[torch.Tensor, str]:
    """(R, C) values -> (R, C, 3, 1, 1) model-range RGB cells and a one-line legend."""
    lo, hi = float(matrix.min()), float(matrix.max())
    if lo < 0 < hi:
        # Each side stretched to its own extreme, but never to less than a quarter of the other
        # side's: a lone +0.01 among -5s must not look as red as a +5.
        neg, pos = max(-lo, hi / 4), max(hi, -lo / 4)
        t = torch.where(matrix < 0, matrix / neg, matrix / pos)[..., None]
        rgb = torch.where(t < 0, _GREY - t * (_BLUE - _GREY), _GREY + t * (_RED - _GREY))
        legend = f"blue {-neg:+.2f} · grey 0 · red {pos:+.2f}"
    else:
        t = ((matrix - lo) / (hi - lo) if hi > lo else torch.zeros_like(matrix))[..., None]
        rgb = _PALE + t * (_DARK - _PALE)
        legend = f"pale {lo:+.2f} · dark {hi:+.2f}"
    return (rgb * 2 - 1)[..., None, None], legend


def _critic_on(run, images: torch.Tensor) -> torch.Tensor:
    """(k, B) every critic's scores on the same images (B, ...)."""
    k = run.k
    return run.critic(images.expand(k, *images.shape).contiguous())


def cross_member(run, member: int | None = None, *, seed: int = 0, n: int = 64) -> Visualisation:
    if member is not None:
        run.check_member(member)
    n = bounded_int("n", n, 1, 1024)
    k = run.k
    fakes = run.sample_members(n, seed=seed)  # (k, n, ...)
    g = torch.Generator().manual_seed(seed)
    fake_m = torch.zeros(k, k)
    real_m, real_spread = torch.full((k, k), float("nan")), torch.full((k,), float("nan"))
    with torch.no_grad():
        for j in range(k):
            fake_m[:, j] = _critic_on(run, fakes[j]).mean(1).cpu()
            items = tile_items(run, j)
            if items.shape[0]:
                pick = torch.randperm(items.shape[0], generator=g)[:max(n, 2)]
                scores = _critic_on(run, items[pick]).cpu()
                real_m[:, j] = scores.mean(1)
                real_spread[j] = scores[j].std() if pick.numel() > 1 else float("nan")
    own_real = torch.diagonal(real_m).nan_to_num(0.0)
    spread = real_spread.nan_to_num(1.0).clamp_min(1e-8)
    relative = (fake_m - own_real[:, None]) / spread[:, None]
    row_first = [int(torch.argmax(relative[i])) == i for i in range(k)]
    column_first = [int(torch.argmax(fake_m[:, j] - own_real)) == j for j in range(k)]
    prefers_fakes = [i for i in range(k) if relative[i, i] > 0]
    warnings = [f"critic D_{i} rates its own generator's samples {float(relative[i, i]):+.2f} tile spreads above "
                f"its real tile: an inverted critic or a generator in its blind spot; its row says little"
                for i in prefers_fakes]
    numbers = {"n": n, "fake_scores": rounded(fake_m), "real_scores": rounded(real_m.nan_to_num(0.0)),
               "own_tile_spread": rounded(spread),
               "relative_to_own_real_tile_in_spreads": rounded(relative),
               "critic_ranks_own_generator_first": row_first,
               "share_of_critics_ranking_own_generator_first": round(sum(row_first) / k, 4),
               "generator_ranked_first_by_own_critic": column_first,
               "critics_preferring_own_samples_to_real_tile": prefers_fakes,
               "warnings": warnings}
    if member is not None:
        numbers["member_row"] = rounded(relative[member])
        numbers["member_column"] = rounded(relative[:, member])
    cells, legend = fitted_colours(relative)
    warn = f" · WARNING: {len(prefers_fakes)} critic(s) prefer their samples to real data" if prefers_fakes else ""
    title = title_for(run, "cross-member", member, seed,
                      f"row i: D_i(G_j) - D_i(own tile), in D_i's tile spreads; {n} samples each; {legend}; "
                      f"framed: each critic on its own generator; own first: D_i scores G_i's samples above every "
                      f"other G_j's{warn}")
    captions = [[f"{float(v):+.2f}" + ("!" if i == j and i in prefers_fakes else "") for j, v in enumerate(row)]
                for i, row in enumerate(relative)]
    rows = [f"D_{i}" + (" <" if i == member else "") + (" own first" if row_first[i] else "") for i in range(k)]
    # The diagonal is what the matrix is read against: a black frame marks it, so D_i's own cell
    # is found without counting columns.
    grid = cells.expand(k, k, 3, DIAGONAL_CELL, DIAGONAL_CELL).clone()
    for i in range(k):
        grid[i, i, :, [0, -1], :] = -1.0
        grid[i, i, :, :, [0, -1]] = -1.0
    image = labelled_grid(grid, row_labels=rows,
                          col_labels=[f"G_{j}" + ("*" if j == member else "") for j in range(k)],
                          captions=captions, title=title, min_cell=48)
    vis = Visualisation("cross-member", member, seed, title, image, numbers)
    vis.images = None  # the cells are colours, not images: the numbers are in the JSON
    return vis
