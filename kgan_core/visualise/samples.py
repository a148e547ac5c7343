"""Samples: n images per member from the same latent vectors, so members compare column by column."""

from __future__ import annotations

import io

import torch
from PIL import Image

from kgan_core.render import labelled_grid, scatter_png, titled_figure
from kgan_core.visualise.base import Visualisation, bounded_int, members_of, rms, rounded, title_for


def samples(run, member: int | None = None, *, seed: int = 0, n: int | None = None) -> Visualisation:
    members = members_of(run, member)
    n = bounded_int("n", n if n is not None else (8 if member is None else 16), 1, 256 if member is not None else 64)
    title = title_for(run, "samples", member, seed, f"{n} per member, same z for every member")
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
        png = scatter_png(chosen.reshape(-1, chosen.shape[-1]).cpu(), reference=run.dataset.x[:2000], title="")
        image = titled_figure(Image.open(io.BytesIO(png)).convert("RGB"), title)
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
    image = labelled_grid(grid, row_labels=rows, col_labels=cols, title=title)
    return Visualisation("samples", member, seed, title, image, numbers)
