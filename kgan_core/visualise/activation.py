"""Activation maximisation of a critic layer, channel or unit (or every layer's mean, with
``layer="all"``), for one member or all of them.

Three ways of searching for the image, side by side:
- ``pixel``: gradient ascent on raw pixels (the thesis' baseline);
- ``regularised``: Fourier-parameterised image, jitter/scale transforms, total-variation
  penalty (Lucid's recipe);
- ``prior``: DGN-AM — ascent on the code of a learned image prior (``kgan_core.prior``),
  clipped to the range seen on real data and decayed every step.

Every image comes with the activation it reached and the same activation's mean and max
over the real images of that member's tile (the first column shows the real image that
reaches the max), so "did it work" is a number, not an impression.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise import objectives, param, transforms
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
from kgan_core.visualise.errors import OptionError
from kgan_core.visualise.optimise import maximise

METHODS: tuple[str, ...] = ("pixel", "regularised", "prior")
REALISM_REFERENCE = 1000  # real images E-features are compared against


def as_prior(prior, item_shape: tuple[int, ...], vgg_weights=None):
    """A loaded, size-checked prior from a Prior or a file path (None stays None)."""
    from kgan_core.prior import Prior, load_prior

    if prior is None:
        return None
    if isinstance(prior, str | Path):
        prior = load_prior(prior, vgg_weights=vgg_weights)
    if not isinstance(prior, Prior):
        raise OptionError(f"prior must be a prior file or a Prior, got {type(prior).__name__}")
    prior.check_compatible(item_shape)
    return prior


def _methods(methods, prior) -> list[str]:
    if methods is None:
        return ["pixel", "regularised"] + (["prior"] if prior is not None else [])
    chosen = [methods] if isinstance(methods, str) else list(methods)
    for m in chosen:
        if m not in METHODS:
            raise OptionError(f"unknown method {m!r}; methods are {', '.join(METHODS)}")
    if not chosen:
        raise OptionError(f"give at least one method of {', '.join(METHODS)}")
    if "prior" in chosen and prior is None:
        raise OptionError("the prior method needs a learned prior: pass prior=FILE (make one with kgan train-prior)")
    return chosen


def real_activation(run, member: int, objective) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective on every real image of member's tile, and those images."""
    critic = run.member(member).critic.requires_grad_(False)
    items = tile_items(run, member)
    with torch.no_grad():
        values = torch.cat([objective(critic.features(chunk[None], upto=objective.layer))[0]
                            for chunk in items.split(1024)]) if items.shape[0] else torch.zeros(0)
    return values, items


def activation_max(run, member: int | None = None, *, seed: int = 0, layer: str | None = None,
                   channel: int | None = None, unit: int | None = None, position=None, methods=None,
                   prior=None, vgg_weights=None, steps: int = 200, lr: float = 0.05, tv_weight: float = 0.05,
                   decay: float = 0.05) -> Visualisation:
    require_images(run, "activation-max")
    members = members_of(run, member)
    steps = bounded_int("steps", steps, 1, 10_000)
    lr = bounded_float("lr", lr, 1e-5, 10.0)
    tv_weight = bounded_float("tv_weight", tv_weight, 0.0, 100.0)
    decay = bounded_float("decay", decay, 0.0, 0.5)
    critic = (run.critic if member is None else run.member(member).critic).requires_grad_(False)
    if position is not None:
        position = tuple(position)
    if layer == "all":
        if channel is not None or unit is not None:
            raise OptionError("layer='all' maximises each layer's mean; give one layer for a channel or unit")
        targets = [objectives.resolve(critic, run.item_shape, name) for name in critic.layer_names]
    else:
        targets = [objectives.resolve(critic, run.item_shape, layer, channel, unit, position)]
    prior = as_prior(prior, run.item_shape, vgg_weights)
    chosen = _methods(methods, prior)
    reference = None
    if prior is not None:
        data = run.dataset
        pick = torch.randperm(data.n, generator=seeded(seed))[:REALISM_REFERENCE]
        from kgan_core.prior import FeatureRealism

        reference = FeatureRealism(prior, data.to_model(data.x[pick]))
    settings = dict(steps=steps, lr=lr, tv_weight=tv_weight, decay=decay)
    cells, captions, rows, seconds, per_layer = [], [], [], {}, {}
    for objective in targets:
        part = _maximise_objective(run, critic, members, objective, chosen, prior, reference, seed, settings)
        cells += part["cells"]
        captions += part["captions"]
        rows += [f"member {j}" + (f" {objective.layer}" if len(targets) > 1 else "") for j in members]
        for method, sec in part["seconds"].items():
            seconds[method] = seconds.get(method, 0.0) + sec
        per_layer[objective.layer] = {"objective": objective.to_dict(), "members": part["members"]}
    numbers: dict = {"methods": chosen, "steps": steps, "lr": lr}
    if len(targets) == 1:
        numbers |= per_layer[targets[0].layer]
    else:
        numbers["layers"] = per_layer
    what = targets[0].name if len(targets) == 1 else "every layer's mean"
    title = title_for(run, "activation max", member, seed, f"{what}, {steps} steps")
    image = labelled_grid(torch.stack(cells), row_labels=rows, col_labels=["best real"] + chosen,
                          captions=captions, title=title)
    return Visualisation("activation-max", member, seed, title, image, numbers,
                         {f"{m}_seconds": round(s, 3) for m, s in seconds.items()})


def _maximise_objective(run, critic, members: list[int], objective, chosen: list[str], prior, reference,
                        seed: int, settings: dict) -> dict:
    """Every method on one objective for every member: grid rows, captions and numbers."""
    lead = (len(members), 1)
    shape = (*lead, *run.item_shape)
    steps, lr = settings["steps"], settings["lr"]
    data = run.dataset
    sample = data.to_model(data.x[torch.randperm(data.n, generator=seeded(seed))[:256]]).to(run.device)
    with torch.no_grad():
        on_real = objective(critic.features(sample.expand(critic.k, *sample.shape).contiguous(),
                                            upto=objective.layer))
    scale = on_real.std(1, keepdim=True).clamp_min(1e-8)
    results, seconds = {}, {}
    for i, method in enumerate(chosen):
        g = seeded(seed * 1000 + i)
        started = time.perf_counter()
        if method == "pixel":
            p = param.pixel(shape, g)
            results[method] = maximise(critic, objective, p, steps=steps, lr=lr, generator=g, scale=scale)
        elif method == "regularised":
            p = param.fft(shape, g)
            results[method] = maximise(critic, objective, p, steps=steps, lr=lr, generator=g,
                                       transform=transforms.standard(run.item_shape[-1]),
                                       tv_weight=settings["tv_weight"], scale=scale)
        else:
            p = param.prior_code(prior, lead, g, decay=settings["decay"])
            results[method] = maximise(critic, objective, p, steps=steps, lr=lr, generator=g, scale=scale)
        seconds[method] = time.perf_counter() - started
    cells, captions, numbers = [], [], {}
    for row, j in enumerate(members):
        real_values, items = real_activation(run, j, objective)
        best = int(real_values.argmax()) if real_values.numel() else None
        real_max = float(real_values.max()) if best is not None else float("nan")
        entry: dict = {"real_mean": float(real_values.mean()) if best is not None else None,
                       "real_max": real_max if best is not None else None, "real_count": int(real_values.numel())}
        best_img = items[best] if best is not None else torch.ones(run.item_shape)
        row_cells, row_caps = [best_img], [f"{real_max:.3f}" if best is not None else "empty tile"]
        for method in chosen:
            res = results[method]
            reached = float(res.values[row, 0])
            method_numbers = {"start": float(res.start[row, 0]), "reached": reached,
                              "trace": [t[row] for t in res.trace]}
            if best is not None:
                method_numbers["reached_over_real_max"] = reached / real_max if real_max else None
                method_numbers["reaches_real_max"] = reached >= real_max
            if reference is not None:
                method_numbers["feature_nn_ratio"] = reference.ratio(res.images[row])[0]
            entry[method] = method_numbers
            row_cells.append(res.images[row, 0])
            row_caps.append(f"{reached:.3f}")
        numbers[str(j)] = rounded(entry)
        cells.append(torch.stack(row_cells))
        captions.append(row_caps)
    return {"cells": cells, "captions": captions, "members": numbers, "seconds": seconds}
