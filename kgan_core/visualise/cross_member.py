"""Cross-member matrix: the mean score critic D_i gives to samples of generator G_j (k × k),
beside the same critics on the real images of each tile.

WGAN critics have arbitrary offsets, so raw scores only compare within a row; the
``relative`` matrix (the picture: blue below 0, red above, one scale for every cell)
subtracts D_i's mean score on its own real tile, so a row reads "how real does D_i find
G_j's samples, compared with the data it was trained on". Drawn without matplotlib so it
renders in well under a second.
"""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import Visualisation, bounded_int, rounded, tile_items, title_for


def diverging_colours(matrix: torch.Tensor) -> torch.Tensor:
    """(R, C) values -> (R, C, 3, 1, 1) model-range RGB cells: blue (negative) to white (0) to red
    (positive), on one symmetric scale for the whole matrix, so equal values get equal colours."""
    limit = float(matrix.abs().max()) or 1.0
    t = (matrix / limit).clamp(-1, 1)[..., None]  # (R, C, 1)
    white, red, blue = torch.ones(3), torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.1, 0.25, 0.8])
    rgb = torch.where(t >= 0, white + t * (red - white), white - t * (blue - white))  # 0..1
    return (rgb * 2 - 1)[..., None, None]


def cross_member(run, member: int | None = None, *, seed: int = 0, n: int = 64) -> Visualisation:
    if member is not None:
        run.check_member(member)
    n = bounded_int("n", n, 1, 1024)
    k = run.k
    fakes = run.sample_members(n, seed=seed)  # (k, n, ...)
    g = torch.Generator().manual_seed(seed)
    fake_m, real_m = torch.zeros(k, k), torch.full((k, k), float("nan"))
    with torch.no_grad():
        for j in range(k):
            fake_m[:, j] = run.critic(fakes[j].expand(k, *fakes[j].shape).contiguous()).mean(1).cpu()
            items = tile_items(run, j)
            if items.shape[0]:
                pick = torch.randperm(items.shape[0], generator=g)[:n]
                real_m[:, j] = run.critic(items[pick].expand(k, *items[pick].shape).contiguous()).mean(1).cpu()
    own_real = torch.diagonal(real_m).nan_to_num(0.0)
    relative = fake_m - own_real[:, None]
    diag_best = [int(torch.argmax(relative[:, j])) == j for j in range(k)]
    numbers = {"n": n, "fake_scores": rounded(fake_m), "real_scores": rounded(real_m.nan_to_num(0.0)),
               "relative_to_own_real_tile": rounded(relative),
               "own_critic_ranks_own_generator_highest": diag_best,
               "share_own_highest": round(sum(diag_best) / k, 4)}
    if member is not None:
        numbers["member_row"] = rounded(relative[member])
        numbers["member_column"] = rounded(relative[:, member])
    title = title_for(run, "cross-member matrix", member, seed,
                      f"D_i(G_j) minus D_i(own real tile); {n} samples per generator")
    cells = diverging_colours(relative).expand(k, k, 3, 8, 8)
    captions = [[f"{float(v):+.2f}" for v in row] for row in relative]
    image = labelled_grid(cells, row_labels=[f"D_{i}" + (" <" if i == member else "") for i in range(k)],
                          col_labels=[f"G_{j}" + ("*" if j == member else "") for j in range(k)],
                          captions=captions, title=title, min_cell=48)
    return Visualisation("cross-member", member, seed, title, image, numbers)
