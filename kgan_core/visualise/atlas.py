"""Channel atlas: activation maximisation of every channel of one critic layer, one labelled
grid per member — what Lucent's channel atlases show for a classifier, for each critic of
the ensemble.

All channels of all members are searched in one batch (image b of a member maximises
channel b // n). With ``n`` ≥ 2 images per channel, Lucid's diversity term (``diversity``,
its weight) pushes a channel's images apart in Gram-matrix space, so a channel that
responds to several patterns shows several. Each caption is the channel's reached value in
units of its real tile (z = (value − tile mean) / tile spread, per member and channel); the
numbers add the tile's maximum for each channel.
"""

from __future__ import annotations

import math

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise import objectives
from kgan_core.visualise.activation import SearchContext, _methods, as_prior, search
from kgan_core.visualise.base import (
    Visualisation,
    bounded_float,
    bounded_int,
    members_of,
    require_images,
    rounded,
    seeded,
    tile_items,
    title_for,
)
from kgan_core.visualise.errors import LayerNameError, OptionError

REAL_SAMPLE = 1024


def channel_values(critic_j, layer: str, images: torch.Tensor) -> torch.Tensor:
    """(N, C): each channel's mean activation of a k=1 critic on images (N, C, H, W)."""
    with torch.no_grad():
        a = torch.cat([critic_j.features(chunk[None], upto=layer)[layer][0] for chunk in images.split(1024)])
    return a.flatten(2).mean(2) if a.dim() == 4 else a


def channel_atlas(run, member: int | None = None, *, seed: int = 0, layer: str | None = None,
                  method: str = "regularised", prior=None, vgg_weights=None, steps: int = 128, lr: float = 0.05,
                  tv_weight: float = 0.05, n: int = 1, diversity: float = 0.0) -> Visualisation:
    require_images(run, "channel-atlas")
    members = members_of(run, member)
    steps = bounded_int("steps", steps, 1, 10_000)
    lr = bounded_float("lr", lr, 1e-5, 10.0)
    tv_weight = bounded_float("tv_weight", tv_weight, 0.0, 100.0)
    n = bounded_int("n", n, 1, 8)
    diversity = bounded_float("diversity", diversity, 0.0, 100.0)
    if diversity and n < 2:
        raise OptionError("the diversity term compares a channel's images with each other: give n of 2 or more")
    critic = (run.critic if member is None else run.member(member).critic).requires_grad_(False)
    layer = layer or critic.layer_names[0]
    shapes = objectives.layer_shapes(critic, run.item_shape)
    if layer not in shapes:
        raise LayerNameError(f"the critic has no layer {layer!r}; its layers are {', '.join(critic.layer_names)}")
    count = shapes[layer][0]
    prior = as_prior(prior, run.item_shape, vgg_weights)
    method = _methods([method], prior)[0]
    real = []  # per member: (tile samples, C) channel values
    for j in members:
        items = tile_items(run, j)
        items = items[torch.randperm(items.shape[0], generator=seeded(seed + j))[:REAL_SAMPLE]]
        single = run.member(j).critic if member is None else critic
        real.append(channel_values(single, layer, items) if items.shape[0] else torch.zeros(0, count))
    mean = torch.stack([r.mean(0) if r.shape[0] else torch.zeros(count) for r in real])  # (m, C)
    spread = torch.stack([r.std(0) if r.shape[0] > 1 else torch.ones(count) for r in real]).clamp_min(1e-8)
    tile_max = torch.stack([r.max(0).values if r.shape[0] else torch.full((count,), float("nan")) for r in real])
    objective = objectives.channel_per_image(layer, n)
    scale = spread.repeat_interleave(n, dim=1).to(run.device)  # (m, C·n): each image in its channel's units
    extra = diversity * objectives.diversity(layer, n) if diversity else None
    context = SearchContext(prior, run.item_shape[-1])
    result = search(critic, objective, method, (len(members), count * n, *run.item_shape), seed, context,
                    steps=steps, lr=lr, tv_weight=tv_weight, scale=scale, extra=extra)
    reached = result.values.cpu().reshape(len(members), count, n)
    z = (reached - mean[..., None]) / spread[..., None]
    images = result.images.reshape(len(members), count, n, *run.item_shape)
    numbers: dict = {"layer": layer, "method": method, "steps": steps, "n_per_channel": n, "diversity": diversity,
                     "channels": count, "units": "z: (value - tile mean) / tile spread, per member and channel",
                     "members": {}}
    for row, j in enumerate(members):
        numbers["members"][str(j)] = rounded({
            "reached": reached[row].tolist(), "z": z[row].tolist(), "tile_mean": mean[row].tolist(),
            "tile_max": tile_max[row].tolist(),
            "channels_beyond_tile_max": int((reached[row].max(1).values > tile_max[row]).sum())})
    detail = f"{layer}, every channel, {method}, {steps} steps" + (f", diversity {diversity:g}" if extra else "")
    title = title_for(run, "channel atlas", member, seed, detail + "; captions: z over the real tile")
    if member is None:  # one row per member (and image), one column per channel
        grid = images.permute(0, 2, 1, *range(3, images.dim())).reshape(len(members) * n, count, *run.item_shape)
        rows = [f"member {j}" + (f" #{i}" if n > 1 else "") for j in members for i in range(n)]
        captions = [[f"{float(z[r // n, c, r % n]):+.1f}" for c in range(count)] for r in range(len(members) * n)]
        cols = [f"ch {c}" for c in range(count)]
    else:  # one member: its channels in rows of 8
        flat = images[0].reshape(count * n, *run.item_shape)
        ncol = min(8, count * n)
        nrow = math.ceil(count * n / ncol)
        pad = torch.ones(nrow * ncol - count * n, *run.item_shape, device=flat.device)
        grid = torch.cat([flat, pad]).reshape(nrow, ncol, *run.item_shape)
        labels = [f"ch {b // n} {float(z[0, b // n, b % n]):+.1f}" for b in range(count * n)]
        labels += [""] * (nrow * ncol - count * n)
        captions = [labels[r * ncol:(r + 1) * ncol] for r in range(nrow)]
        rows = [f"images {r * ncol}-{min(count * n, (r + 1) * ncol) - 1}" for r in range(nrow)]
        cols = [str(c) for c in range(ncol)]
    image = labelled_grid(grid, row_labels=rows, col_labels=cols, captions=captions, title=title)
    return Visualisation("channel-atlas", member, seed, title, image, numbers, images=grid)
