"""Medoid: the mean image of G_k's samples, the true medoid sample (the sample with the
smallest summed distance to all the others) and the point mass m_k the trainer holds."""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_int,
    members_of,
    require_images,
    rms,
    rounded,
    title_for,
)

COLUMNS = ("mean of samples", "medoid sample", "point mass")


def medoid(run, member: int | None = None, *, seed: int = 0, n: int = 256) -> Visualisation:
    require_images(run, "medoid")
    members = members_of(run, member)
    n = bounded_int("n", n, 2, 2048)
    title = title_for(run, "medoid", member, seed, f"{n} samples each · under each image: its RMS pixel "
                      "difference (model range -1..1) to the image named")
    all_samples = run.sample_members(n, seed=seed)
    shape = run.item_shape
    cells, captions, numbers = [], [], {"n": n, "members": {}}
    for j in members:
        s = all_samples[j]
        flat = s.reshape(n, -1)
        mean = s.mean(0)
        index = int(torch.cdist(flat, flat).sum(1).argmin())
        mass = run.point_masses[j].reshape(shape)
        cells.append(torch.stack([mean, s[index], mass]))
        distances = {"rms_mean_to_point_mass": float(rms(mean, mass)), "rms_medoid_to_mean": float(rms(s[index], mean)),
                     "rms_medoid_to_point_mass": float(rms(s[index], mass))}
        numbers["members"][str(j)] = rounded({"medoid_index": index, "tile_share": run.tile_shares[j]} | distances)
        # The mean and the point mass are both blurred averages and look alike; the numbers under
        # them say whether they are the same image or only similar.
        captions.append([f"to m {distances['rms_mean_to_point_mass']:.3f}",
                         f"to mean {distances['rms_medoid_to_mean']:.3f}",
                         f"to medoid {distances['rms_medoid_to_point_mass']:.3f}"])
    image = labelled_grid(torch.stack(cells), row_labels=[f"member {j}" for j in members], col_labels=list(COLUMNS),
                          captions=captions, title=title)
    return Visualisation("medoid", member, seed, title, image, numbers)
