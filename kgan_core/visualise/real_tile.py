"""Real tile: the real images member k is responsible for — a random sample of the tile, and
beside it the images nearest to its point mass, labelled as such.

The nearest images are the tile's cleanest, most typical ones; alone they make a mixed tile
look pure. The random sample shows what the member really has to learn, and for labelled
data the tile's label histogram says how mixed it is.
"""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_int,
    members_of,
    require_images,
    rounded,
    seeded,
    tile_items,
    title_for,
)


def tile_rows(run, member: int) -> torch.Tensor:
    """Dataset row indices of member's tile (every row for assignment='none')."""
    if run.config.assignment == "none":
        return torch.arange(run.dataset.n)
    return torch.nonzero(run.assignment.cpu() == member).flatten()


def label_histogram(run, member: int) -> dict[str, float] | None:
    """Share of each label in member's tile, largest first; None when the data has no labels."""
    labels = run.dataset.labels
    rows = tile_rows(run, member)
    if labels is None or not rows.numel():
        return None
    counts = torch.bincount(labels[rows], minlength=int(labels.max()) + 1)
    names = run.dataset.classes or tuple(str(i) for i in range(counts.numel()))
    order = torch.argsort(counts, descending=True)
    return {names[int(i)]: float(counts[i]) / rows.numel() for i in order if counts[i] > 0}


def _mix(histogram: dict[str, float] | None, top: int = 4) -> str:
    """The tile's label mix as "labels 9: 40%, 7: 29%, 4: 25%, other 6%": a colon between label
    and share (digit labels run into their percentages otherwise: "1 70%" reads as 170 %), and
    the share of every label not named, so a mixed tile cannot look pure."""
    if not histogram:
        return ""
    named = list(histogram.items())[:top]
    rest = 1.0 - sum(share for _, share in named)
    parts = [f"{name}: {100 * share:.0f}%" for name, share in named]
    if len(histogram) > top:
        parts.append(f"other {100 * rest:.0f}%")
    return "labels " + ", ".join(parts)


def real_tile(run, member: int | None = None, *, seed: int = 0, n: int | None = None) -> Visualisation:
    require_images(run, "real-tile")
    members = members_of(run, member)
    n = bounded_int("n", n if n is not None else 8, 1, 64)
    title = title_for(run, "real tile", member, seed,
                      f"per member: {n} drawn at random from the tile, then the {n} nearest to its point mass m")
    rows, labels, numbers = [], [], {"n": n, "members": {}}
    for j in members:
        items = tile_items(run, j)
        count = items.shape[0]
        mass = run.point_masses[j].reshape(1, -1)
        dist = torch.cdist(items.reshape(count, -1), mass)[:, 0] if count else torch.zeros(0)
        nearest = torch.argsort(dist)[:n]
        drawn = torch.randperm(count, generator=seeded(seed + j))[:n]
        histogram = label_histogram(run, j)
        share = run.tile_shares[j]
        numbers["members"][str(j)] = rounded({
            "tile_size": run.tile_sizes[j], "tile_share": share, "shown_each": int(nearest.numel()),
            "random_indices_in_tile": drawn.tolist(), "label_histogram": histogram,
            "distances_to_point_mass_nearest": dist[nearest].tolist(),
            "distances_to_point_mass_random": dist[drawn].tolist(),
            "mean_distance_in_tile": float(dist.mean()) if count else None,
        })
        for picked, kind in ((drawn, "random"), (nearest, "nearest to m")):
            chosen = items[picked]
            blank = torch.ones(n - chosen.shape[0], *run.item_shape, device=items.device)  # a small tile: white cells
            rows.append(torch.cat([chosen, blank]))
            if kind == "random":
                # One line each for the member, its tile's label mix (the random row is the one it
                # describes) and what the row shows: on one line they ran together.
                lines = [f"member {j} ({100 * share:.1f}% of the data)"] + ([_mix(histogram)] if histogram else [])
                labels.append("\n".join([*lines, f"{drawn.numel()} of its {count:,}, at random"]))
            else:
                labels.append(kind)
    grid = torch.stack(rows)
    image = labelled_grid(grid, row_labels=labels, col_labels=[str(i) for i in range(n)], title=title)
    return Visualisation("real-tile", member, seed, title, image, numbers, images=grid)
