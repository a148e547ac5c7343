"""Samples: n images per member from the same latent vectors, so members compare column by column;
for points, every member on the same axes (the whole data range) over the real data, in its own colour."""

from __future__ import annotations

import io

import torch
from PIL import Image

from kgan_core.render import labelled_grid, points_bounds, points_png
from kgan_core.train import sample_ensemble
from kgan_core.visualise.base import Visualisation, bounded_int, members_of, rms, rounded, tile_items, title_for

# Enough real points to show the data's shape behind the samples without hiding them.
REFERENCE_POINTS = 3000


def ensemble_points(run, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n draws as ``run.sample(n, seed=seed)`` (member j with probability its tile share),
    with the member that drew each: ((n, 2) points, (n,) member indices)."""
    def generate_with_member(z: torch.Tensor) -> torch.Tensor:
        # A last column carrying the member index rides through sample_ensemble's own selection.
        out = run.generator(z)
        index = torch.arange(run.k, device=out.device, dtype=out.dtype)[:, None, None].expand(*out.shape[:2], 1)
        return torch.cat([out, index], -1)

    with torch.no_grad():
        both = sample_ensemble(generate_with_member, run.tile_shares, run.spec.latent_dim, n, seed, run.device)
    return both[:, :-1], both[:, -1].round().long()


def points_plot(run, member: int | None, n: int, seed: int, title: str = "") -> bytes:
    """PNG: member's n samples over the real data, its tile tinted and its point mass marked; for
    member None, n draws of the ensemble coloured by the member that drew them. Every plot of a
    run has the same axes (the whole data range), aspect and size."""
    data = run.dataset.x.float()
    reference = data[:: max(1, len(data) // REFERENCE_POINTS)]
    bounds = points_bounds(data)
    if member is None:
        points, drawn_by = ensemble_points(run, n, seed)
        samples = {j: points[drawn_by == j].cpu() for j in range(run.k)}
        masses = {j: run.point_masses[j].cpu() for j in range(run.k)}
        return points_png(samples, reference=reference, bounds=bounds, point_masses=masses, title=title)
    points = run.sample(n, member=member, seed=seed).cpu()
    tile = tile_items(run, member).cpu()
    return points_png({member: points}, reference=reference, bounds=bounds, tile=tile,
                      point_masses={member: run.point_masses[member].cpu()}, title=title)


def samples(run, member: int | None = None, *, seed: int = 0, n: int | None = None) -> Visualisation:
    members = members_of(run, member)
    n = bounded_int("n", n if n is not None else (8 if member is None else 16), 1, 256 if member is not None else 64)
    detail = f"{n} per member, same z for every member" if member is None else f"{n} samples, z_i as for every member"
    title = title_for(run, "samples", member, seed, detail)
    all_samples = run.sample_members(n, seed=seed)  # (k, n, ...)
    chosen = all_samples[members]
    with torch.no_grad():
        scores = run.critic(all_samples)[members]  # own critic: row j of the stack scores G_j's samples
    numbers: dict = {"n": n, "members": {}}
    for row, j in enumerate(members):
        s = chosen[row]
        pairs = torch.triu_indices(n, n, 1)
        diversity = float(rms(s[pairs[0]], s[pairs[1]]).mean()) if n > 1 and s.dim() == 4 else None
        numbers["members"][str(j)] = rounded({"own_critic_mean": float(scores[row].mean()),
                                              "mean_pairwise_rms": diversity, "tile_share": run.tile_shares[j]})
    if run.dataset_kind == "points":
        if member is None:  # every member's n samples (the same z), each in its own colour
            bounds = points_bounds(run.dataset.x.float())
            data = run.dataset.x.float()
            png = points_png({j: chosen[row].cpu() for row, j in enumerate(members)},
                             reference=data[:: max(1, len(data) // REFERENCE_POINTS)], bounds=bounds,
                             point_masses={j: run.point_masses[j].cpu() for j in members}, title=title)
        else:
            png = points_plot(run, member, n, seed, title=title)
        image = Image.open(io.BytesIO(png)).convert("RGB")
        image.info["kgan_labels"] = {"title": title, "rows": [], "cols": []}
        return Visualisation("samples", member, seed, title, image, numbers)
    if member is None:
        grid = chosen
        rows = [f"member {j}" for j in members]
        cols = [f"z{i}" for i in range(n)]
    else:
        ncol = min(8, n)
        nrow = -(-n // ncol)
        pad = torch.full((nrow * ncol - n, *chosen.shape[2:]), 1.0)  # blank (white) cells
        grid = torch.cat([chosen[0], pad]).reshape(nrow, ncol, *chosen.shape[2:])
        rows = [f"z{r * ncol}-{min(n, (r + 1) * ncol) - 1}" for r in range(nrow)]
        cols = [str(i) for i in range(ncol)]
    # One member's grid is eight columns wide: smaller cells keep it (and its labels) at the
    # width of a page column.
    image = labelled_grid(grid, row_labels=rows, col_labels=cols, title=title, min_cell=64 if member is None else 32)
    return Visualisation("samples", member, seed, title, image, numbers)
