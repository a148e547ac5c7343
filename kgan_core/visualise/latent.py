"""Latent grids of one member's generator, showing the dims that change something.

- ``frozen_latent`` (the thesis experiment): rows hold latent dim d frozen at a value v,
  columns share the samples of every other dim. The thesis froze arbitrary dims and saw
  nothing: one dim of 64 barely moves the image when the other 63 are resampled.
- ``traversal``: rows are dims, columns move one dim from −span to +span σ around a base z.

By default both show the dims with the largest effect in the independent judge's features
(``effects``), and print each dim's effect on the picture: its feature change per σ, in
units of the distance between two independent samples, and for frozen-latent how far the
frozen value moves the images compared with resampling the other dims.
"""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_float,
    bounded_int,
    generate,
    member_generator,
    require_images,
    require_member,
    rounded,
    seeded,
    title_for,
)
from kgan_core.visualise.effects import EFFECT_KEY, FeatureSpace, feature_space, path_effect, sample_spread
from kgan_core.visualise.errors import OptionError


def dim_effects(space: FeatureSpace, generator, latent_dim: int, seed: int, spread: float,
                n_base: int = 8, step: float = 2.0) -> torch.Tensor:
    """(latent,) feature change per σ when one dim moves from −step to +step σ, averaged over
    n_base random z, over the sample-to-sample spread."""
    z = torch.randn(n_base, latent_dim, generator=seeded(seed + 7919))
    moves = torch.stack([-step * torch.eye(latent_dim), step * torch.eye(latent_dim)], dim=1)  # (latent, 2, latent)
    images = generate(generator, z[:, None, None, :] + moves[None])  # (n_base, latent, 2, C, H, W)
    return path_effect(space, images, torch.tensor([-step, step]), spread).mean(0)


def _dims(option, effects: torch.Tensor, count: int) -> list[int]:
    latent_dim = effects.numel()
    if option is None:
        return torch.argsort(effects, descending=True)[:count].tolist()
    dims = [option] if isinstance(option, int) else list(option)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < latent_dim:
            raise OptionError(f"dims must be latent dimensions between 0 and {latent_dim - 1}, got {d!r}")
    if not dims or len(dims) > 32:
        raise OptionError(f"give between 1 and 32 dims, got {len(dims)}")
    return dims


def frozen_latent(run, member: int | None = None, *, seed: int = 0, dims=None, values=(-2.0, 0.0, 2.0),
                  n: int = 8, judge: bool | None = None) -> Visualisation:
    require_images(run, "frozen-latent")
    member = run.check_member(require_member(member, "frozen-latent", run.k))
    n = bounded_int("n", n, 2, 32)
    values = [bounded_float("values", v, -10.0, 10.0) for v in values]
    if not 2 <= len(values) <= 9:
        raise OptionError(f"give between 2 and 9 values, got {len(values)}")
    gen = member_generator(run, member)
    d_latent = run.spec.latent_dim
    space = feature_space(run, judge)
    spread = sample_spread(space, gen, d_latent, seed)
    effects = dim_effects(space, gen, d_latent, seed, spread)
    dims = _dims(dims, effects, 4)
    z = run.latent(n, seed).cpu()  # the other dims: the same n draws in every row
    frozen = z[None, None].repeat(len(dims), len(values), 1, 1)  # (D, V, n, latent)
    for i, d in enumerate(dims):
        frozen[i, :, :, d] = torch.tensor(values)[:, None]
    images = generate(gen, frozen)  # (D, V, n, C, H, W)
    features = space.embed(images)  # (D, V, n, F)
    numbers: dict = {"values": values, "n": n, "space": space.name, "sample_spread": rounded(spread), "dims": {},
                     "effect_rank": torch.argsort(effects, descending=True).tolist()}
    pairs = torch.triu_indices(n, n, 1)
    labels = []
    for i, d in enumerate(dims):
        along = float((features[i, -1] - features[i, 0]).norm(dim=-1).mean()) / spread  # same others, v changes
        across = float((features[i][:, pairs[0]] - features[i][:, pairs[1]]).norm(dim=-1).mean()) / spread
        ratio = along / max(across, 1e-12)
        numbers["dims"][str(d)] = rounded({"effect_per_sd": float(effects[d]), "change_over_values": along,
                                           "change_when_others_resampled": across, "frozen_vs_resampled": ratio})
        labels += [f"z[{d}] = {v:+.1f}" + (f"  effect {float(effects[d]):.2f}/sd, frozen/resampled {ratio:.2f}"
                                           if k == 0 else "") for k, v in enumerate(values)]
    title = title_for(run, "frozen latent", member, seed,
                      f"rows: one dim frozen; columns: the other dims sampled; {EFFECT_KEY} in {space.name}; "
                      "frozen/resampled: how far the frozen values move the images over how far resampling the "
                      "other dims does")
    grid = images.reshape(len(dims) * len(values), n, *images.shape[3:])
    image = labelled_grid(grid, row_labels=labels, col_labels=[f"sample {i}" for i in range(n)], title=title)
    return Visualisation("frozen-latent", member, seed, title, image, numbers, images=grid)


def traversal(run, member: int | None = None, *, seed: int = 0, dims=None, steps: int = 7,
              span: float = 3.0, judge: bool | None = None) -> Visualisation:
    require_images(run, "traversal")
    member = run.check_member(require_member(member, "traversal", run.k))
    steps = bounded_int("steps", steps, 3, 15)
    span = bounded_float("span", span, 0.1, 10.0)
    gen = member_generator(run, member)
    space = feature_space(run, judge)
    spread = sample_spread(space, gen, run.spec.latent_dim, seed)
    effects = dim_effects(space, gen, run.spec.latent_dim, seed, spread)
    dims = _dims(dims, effects, 6)
    base = run.latent(1, seed).cpu()[0]
    offsets = torch.linspace(-span, span, steps)
    z = base.repeat(len(dims), steps, 1)
    for i, d in enumerate(dims):
        z[i, :, d] = base[d] + offsets
    images = generate(gen, z)  # (D, steps, C, H, W)
    shown = path_effect(space, images, offsets, spread)  # this base z's change, per row
    numbers = {"offsets": rounded(offsets), "base_seed": seed, "space": space.name, "sample_spread": rounded(spread),
               "dims": {str(d): rounded({"effect_per_sd": float(effects[d]), "effect_in_this_row": float(shown[i])})
                        for i, d in enumerate(dims)}}
    title = title_for(run, "traversal", member, seed,
                      f"rows: dims; columns: -{span:g}..{span:g} sd around a base z; {EFFECT_KEY} in {space.name} "
                      "(this row: along this row's base z only)")
    rows = [f"z[{d}]  effect {float(effects[d]):.2f}/sd (this row {float(shown[i]):.2f})" for i, d in enumerate(dims)]
    image = labelled_grid(images, row_labels=rows,
                          col_labels=[f"{v:+.1f} sd" for v in offsets.tolist()], title=title)
    return Visualisation("traversal", member, seed, title, image, numbers, images=images)
