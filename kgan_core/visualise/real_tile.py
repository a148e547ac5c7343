"""Real tile: the real images member k is responsible for, nearest to its point mass first."""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_int,
    members_of,
    require_images,
    rounded,
    tile_items,
    title_for,
)


def real_tile(run, member: int | None = None, *, seed: int = 0, n: int | None = None) -> Visualisation:
    require_images(run, "real-tile")
    members = members_of(run, member)
    n = bounded_int("n", n if n is not None else (8 if member is None else 32), 1, 256)
    title = title_for(run, "real tile", member, seed, f"{n} nearest to the point mass")
    ncol = n if member is None else min(8, n)
    rows, labels, numbers = [], [], {"n": n, "members": {}}
    for j in members:
        items = tile_items(run, j)
        mass = run.point_masses[j].reshape(1, -1)
        dist = torch.cdist(items.reshape(items.shape[0], -1), mass)[:, 0] if items.shape[0] else torch.zeros(0)
        order = torch.argsort(dist)[:n]
        chosen = items[order]
        blank = torch.ones(n - chosen.shape[0], *run.item_shape)  # a tile smaller than n: white cells
        chosen = torch.cat([chosen, blank])
        share = run.tile_shares[j]
        numbers["members"][str(j)] = rounded({
            "tile_size": run.tile_sizes[j], "tile_share": share, "shown": int(order.numel()),
            "distances_to_point_mass": dist[order].tolist(),
            "mean_distance_in_tile": float(dist.mean()) if dist.numel() else None,
        })
        per_member = chosen.reshape(-1, ncol, *run.item_shape)
        rows.append(per_member)
        labels += [f"member {j} ({100 * share:.1f}%)"] + [""] * (per_member.shape[0] - 1)
    grid = torch.cat(rows)
    image = labelled_grid(grid, row_labels=labels, col_labels=[str(i) for i in range(ncol)], title=title)
    return Visualisation("real-tile", member, seed, title, image, numbers)
