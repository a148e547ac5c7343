"""Cross-member matrix: the mean score critic D_i gives to samples of generator G_j (k × k),
beside the same critics on the real images of each tile.

WGAN critics have arbitrary offsets, so raw scores only compare within a row; the
``relative`` matrix subtracts D_i's mean score on its own real tile, so a row reads "how
real does D_i find G_j's samples, compared with the data it was trained on".
"""

from __future__ import annotations

import io

import torch
from PIL import Image

from kgan_core.render import titled_figure
from kgan_core.visualise.base import Visualisation, bounded_int, rounded, tile_items, title_for


def _heatmap(ax, matrix: torch.Tensor, title: str, highlight: int | None) -> None:
    import numpy as np

    m = matrix.numpy()
    limit = float(np.abs(m).max()) or 1.0  # symmetric, shared scale: equal values, equal colours
    im = ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
    k = m.shape[0]
    for i in range(k):
        for j in range(k):
            if k <= 12:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
    if highlight is not None:
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, highlight - 0.5), k, 1, fill=False, lw=2))
        ax.add_patch(Rectangle((highlight - 0.5, -0.5), 1, k, fill=False, lw=2))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("samples of G_j / real tile j")
    ax.set_ylabel("critic D_i")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)


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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    size = 3.2 + 0.25 * k
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size), dpi=90)
    _heatmap(axes[0], fake_m, "mean D_i(G_j(z))", member)
    _heatmap(axes[1], real_m.nan_to_num(0.0), "mean D_i(real tile j)", member)
    _heatmap(axes[2], relative, "D_i(G_j) - D_i(own real tile)", member)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    title = title_for(run, "cross-member matrix", member, seed, f"{n} samples per generator")
    image = titled_figure(Image.open(buf).convert("RGB"), title)
    return Visualisation("cross-member", member, seed, title, image, numbers)
