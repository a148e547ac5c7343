"""Latent grids of one member's generator.

- ``frozen_latent`` (the thesis experiment): rows hold latent dim d frozen at a value v, columns
  share the samples of every other dim. The thesis froze arbitrary dims and saw nothing:
  one dim of 64 barely moves the image when the other 63 are resampled. Here the default
  dims are the ones the generator is most sensitive to, and the numbers say how much the
  frozen dim changes the image compared with resampling the rest.
- ``traversal``: rows are dims, columns move one dim from −3σ to 3σ around a base z.
"""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_float,
    bounded_int,
    change_per_unit,
    generate,
    member_generator,
    require_images,
    require_member,
    rms,
    rounded,
    seeded,
    title_for,
)
from kgan_core.visualise.errors import OptionError


def dim_sensitivity(generator, latent_dim: int, seed: int, n_base: int = 8) -> torch.Tensor:
    """(latent,) mean RMS image change when one dim moves by one σ, over n_base random z."""
    z = torch.randn(n_base, latent_dim, generator=seeded(seed + 7919))
    base = generate(generator, z)
    moved = z[:, None, :] + torch.eye(latent_dim)[None]  # (n_base, latent, latent)
    return rms(generate(generator, moved), base[:, None]).mean(0)


def _dims(option, generator, latent_dim: int, count: int, seed: int) -> tuple[list[int], torch.Tensor]:
    sensitivity = dim_sensitivity(generator, latent_dim, seed)
    if option is None:
        return torch.argsort(sensitivity, descending=True)[:count].tolist(), sensitivity
    dims = [option] if isinstance(option, int) else list(option)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < latent_dim:
            raise OptionError(f"dims must be latent dimensions between 0 and {latent_dim - 1}, got {d!r}")
    if not dims or len(dims) > 32:
        raise OptionError(f"give between 1 and 32 dims, got {len(dims)}")
    return dims, sensitivity


def frozen_latent(run, member: int | None = None, *, seed: int = 0, dims=None, values=(-2.0, 0.0, 2.0),
                  n: int = 8) -> Visualisation:
    require_images(run, "frozen-latent")
    member = run.check_member(require_member(member, "frozen-latent", run.k))
    n = bounded_int("n", n, 2, 32)
    values = [bounded_float("values", v, -10.0, 10.0) for v in values]
    if not 2 <= len(values) <= 9:
        raise OptionError(f"give between 2 and 9 values, got {len(values)}")
    gen = member_generator(run, member)
    d_latent = run.spec.latent_dim
    dims, sensitivity = _dims(dims, gen, d_latent, 4, seed)
    z = run.latent(n, seed).cpu()  # the other dims: the same n draws in every row
    frozen = z[None, None].repeat(len(dims), len(values), 1, 1)  # (D, V, n, latent)
    for i, d in enumerate(dims):
        frozen[i, :, :, d] = torch.tensor(values)[:, None]
    images = generate(gen, frozen)  # (D, V, n, C, H, W)
    vals = torch.tensor(values)
    numbers: dict = {"values": values, "n": n, "dims": {}}
    pairs = torch.triu_indices(n, n, 1)
    for i, d in enumerate(dims):
        per_unit = float(change_per_unit(images[i].transpose(0, 1), vals).mean())  # along v, per column
        resample = float(rms(images[i][:, pairs[0]], images[i][:, pairs[1]]).mean())  # across columns
        span = float(rms(images[i][-1], images[i][0]).mean())
        numbers["dims"][str(d)] = rounded({
            "change_per_unit": per_unit, "change_over_values": span, "change_when_others_resampled": resample,
            "frozen_vs_resampled": span / max(resample, 1e-12), "sensitivity": float(sensitivity[d])})
    title = title_for(run, "frozen latent", member, seed, "rows: one dim frozen; columns: the other dims sampled")
    grid = images.reshape(len(dims) * len(values), n, *images.shape[3:])
    rows = [f"z[{d}] = {v:+.1f}" for d in dims for v in values]
    image = labelled_grid(grid, row_labels=rows, col_labels=[f"sample {i}" for i in range(n)], title=title)
    return Visualisation("frozen-latent", member, seed, title, image, numbers)


def traversal(run, member: int | None = None, *, seed: int = 0, dims=None, steps: int = 7,
              span: float = 3.0) -> Visualisation:
    require_images(run, "traversal")
    member = run.check_member(require_member(member, "traversal", run.k))
    steps = bounded_int("steps", steps, 3, 15)
    span = bounded_float("span", span, 0.1, 10.0)
    gen = member_generator(run, member)
    dims, sensitivity = _dims(dims, gen, run.spec.latent_dim, 6, seed)
    base = run.latent(1, seed).cpu()[0]
    offsets = torch.linspace(-span, span, steps)
    z = base.repeat(len(dims), steps, 1)
    for i, d in enumerate(dims):
        z[i, :, d] = base[d] + offsets
    images = generate(gen, z)  # (D, steps, C, H, W)
    per_unit = change_per_unit(images, offsets)
    numbers = {"offsets": rounded(offsets), "base_seed": seed, "dims": {
        str(d): rounded({"change_per_unit": float(per_unit[i]), "sensitivity": float(sensitivity[d])})
        for i, d in enumerate(dims)}}
    title = title_for(run, "traversal", member, seed, f"rows: dims; columns: -{span:g}..{span:g} sd around a base z")
    rows = [f"z[{d}]  change/sd {float(per_unit[i]):.3f}" for i, d in enumerate(dims)]
    image = labelled_grid(images, row_labels=rows,
                          col_labels=[f"{v:+.1f} sd" for v in offsets.tolist()], title=title)
    return Visualisation("traversal", member, seed, title, image, numbers)
