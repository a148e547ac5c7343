"""Activation maximisation of a critic layer, channel or unit (or every layer's mean, with
``layer="all"``), for one member or all of them — every result beside its controls.

The searches (``SEARCHES``, a table: name -> parameterisation, transforms, smoothing):
- ``pixel``: gradient ascent on raw pixels (the thesis' baseline);
- ``regularised``: Fourier-parameterised image, jitter/scale transforms, total-variation
  penalty (Lucid's recipe);
- ``prior``: DGN-AM — ascent on the code of a learned image prior (``kgan_core.prior``).

Reaching a level proves nothing: an untrained critic's pixel search "reaches" its tile's
maximum too, and the tile's mean image, binarised, beats it with no search at all. So every
value is put in units of the member's real tile (z = (value − tile mean) / tile spread, per
critic) and set beside controls through the same critic — the best real tile image, the
tile's mean image and its binarised version, a black and a white blank, uniform noise — and
beside the same search on a re-initialised critic of the same architecture. The headline is
the margin: how far the search's z lies above the best control's.

With all members, **selectivity**: the k×k matrix of critic i's objective on member j's
search result (rows: critics, in critic i's tile units). A critic whose search found
something of its own puts its diagonal above the rest of its row. A re-initialised critic
does the same — each search climbs its own critic — so the bar is relative: a row counts
as selective when its diagonal leads by more than ``SELECTIVITY_FACTOR`` times the median
lead of the re-initialised critics' rows, and the layer passes when ``SELECTIVE_SHARE`` of
rows do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kgan_core.models import build_critic
from kgan_core.nn import take_member
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
from kgan_core.visualise.optimise import Maximised, maximise

CONTROLS: tuple[str, ...] = ("best_real", "tile_mean", "tile_mean_binarised", "blank_black", "blank_white", "noise")
CONTROL_LABELS = {"best_real": "best real", "tile_mean": "tile mean", "tile_mean_binarised": "mean, bin.",
                  "blank_black": "black", "blank_white": "white", "noise": "noise"}
MARGIN = 1.0              # z units (the tile's spread) a search must clear the best control by
SELECTIVITY_FACTOR = 2.0  # a selective row leads by this many times the re-initialised rows' median lead
SELECTIVE_SHARE = 0.8     # share of selective rows for a layer to pass
TRIVIAL = ("blank_black", "blank_white", "noise")  # controls that are nothing like any data
REAL_SAMPLE = 2048        # real tile images the objective's mean and spread are measured on
REINIT_SEED = 7_777_777   # the re-initialised critic's weights, fixed so the control is reproducible


@dataclass(frozen=True)
class SearchContext:
    prior: object | None
    item_side: int


@dataclass(frozen=True)
class Search:
    """One way of searching for the image that maximises an objective."""

    description: str
    parameterisation: Callable[[tuple[int, ...], torch.Generator, SearchContext], param.ImageParam]
    transformed: bool = False  # Lucid's jitter and scale before every critic evaluation
    smoothed: bool = False     # total-variation penalty
    needs_prior: bool = False


SEARCHES: dict[str, Search] = {
    "pixel": Search("gradient ascent on raw pixels", lambda shape, g, ctx: param.pixel(shape, g)),
    "regularised": Search("Fourier-parameterised image, jittered and rescaled, total-variation penalty",
                          lambda shape, g, ctx: param.fft(shape, g), transformed=True, smoothed=True),
    "prior": Search("ascent on a learned prior's code (DGN-AM)",
                    lambda shape, g, ctx: param.prior_code(ctx.prior, shape[:-3], g),
                    needs_prior=True),
}
METHODS: tuple[str, ...] = tuple(SEARCHES)


def search(critic, objective, method: str, shape: tuple[int, ...], seed: int, context: SearchContext, *,
           steps: int, lr: float, tv_weight: float, scale: torch.Tensor | float = 1.0,
           extra: objectives.Objective | None = None) -> Maximised:
    """Run search ``method`` for (k, B, C, H, W) images against a stack of k critics."""
    entry = SEARCHES[method]
    g = seeded(seed)
    p = entry.parameterisation(shape, g, context)
    return maximise(critic, objective, p, steps=steps, lr=lr, generator=g,
                    transform=transforms.standard(context.item_side) if entry.transformed else None,
                    tv_weight=tv_weight if entry.smoothed else 0.0, scale=scale, extra=extra)


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
        if m not in SEARCHES:
            raise OptionError(f"unknown method {m!r}; methods are {', '.join(METHODS)}")
    if not chosen:
        raise OptionError(f"give at least one method of {', '.join(METHODS)}")
    if any(SEARCHES[m].needs_prior for m in chosen) and prior is None:
        raise OptionError("the prior method needs a learned prior: pass prior=FILE (make one with kgan train-prior)")
    return chosen


def reinitialised_critic(critic, seed: int = REINIT_SEED):
    """A critic of the same architecture and size with fresh weights (the global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_critic(critic.spec, critic.k)
    return fresh.to(next(critic.parameters()).device).eval().requires_grad_(False)


def binarised(mean_image: torch.Tensor, tile: torch.Tensor) -> torch.Tensor:
    """The tile's mean image thresholded to ±1 so that it has as many bright pixels as a real
    tile image has on average (bright: above the middle of the range)."""
    bright_share = float((tile > 0).float().mean()) if tile.shape[0] else 0.5
    flat = mean_image.flatten()
    n_bright = int(round(bright_share * flat.numel()))
    out = torch.full_like(flat, -1.0)
    if n_bright:
        out[torch.argsort(flat, descending=True)[:n_bright]] = 1.0
    return out.reshape(mean_image.shape)


@dataclass
class TileReference:
    """Critic j's objective on its real tile: what z units are measured in, and the controls."""

    mean: float
    spread: float
    best_value: float
    controls: dict[str, torch.Tensor]  # control name -> one image (C, H, W)
    count: int

    def z(self, value: float) -> float:
        return (value - self.mean) / self.spread


def tile_reference(critic_j, objective, tile: torch.Tensor, item_shape: tuple[int, ...], seed: int) -> TileReference:
    """Critic j (a k=1 stack) on tile j: mean, spread, best image, and the control images."""
    from kgan_core.judge import control_images

    if tile.shape[0]:
        with torch.no_grad():
            values = torch.cat([objectives.evaluate(critic_j, chunk[None], objective)[0]
                                for chunk in tile.split(1024)])
        best = int(values.argmax())
        sample = values[torch.randperm(values.numel(), generator=seeded(seed))[:REAL_SAMPLE]]
        mean, spread = float(sample.mean()), float(sample.std()) if sample.numel() > 1 else 0.0
        best_image, best_value = tile[best], float(values[best])
        reference = tile
    else:
        mean, spread, best_value = 0.0, 0.0, float("nan")
        best_image = torch.full(item_shape, -1.0, device=tile.device)
        reference = best_image[None]
    bad = control_images(reference.cpu(), 1, seed)
    mean_image = bad["tile_mean"][0]
    controls = {"best_real": best_image.cpu(), "tile_mean": mean_image,
                "tile_mean_binarised": binarised(mean_image, reference.cpu()),
                "blank_black": bad["blank_black"][0], "blank_white": bad["blank_white"][0], "noise": bad["noise"][0]}
    return TileReference(mean, max(spread, 1e-8), best_value, controls, int(tile.shape[0]))


def activation_max(run, member: int | None = None, *, seed: int = 0, layer: str | None = None,
                   channel: int | None = None, unit: int | None = None, position=None, methods=None,
                   prior=None, vgg_weights=None, steps: int = 200, lr: float = 0.05, tv_weight: float = 0.05,
                   controls: bool = True, judge: bool | None = None) -> Visualisation:
    """``controls=False`` skips the re-initialised critic's searches (half the time);
    ``judge``: True trains the independent judge if it is not cached, None uses a cached one
    only, False skips the judge's realism numbers."""
    require_images(run, "activation-max")
    members = members_of(run, member)
    steps = bounded_int("steps", steps, 1, 10_000)
    lr = bounded_float("lr", lr, 1e-5, 10.0)
    tv_weight = bounded_float("tv_weight", tv_weight, 0.0, 100.0)
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
    realism = _judge_realism(run, seed, judge)
    settings = dict(steps=steps, lr=lr, tv_weight=tv_weight)
    context = SearchContext(prior, run.item_shape[-1])
    fresh = reinitialised_critic(critic) if controls else None
    cells, captions, rows, seconds, per_layer = [], [], [], {}, {}
    for objective in targets:
        part = _controlled_search(run, critic, fresh, members, objective, chosen, context, realism, seed, settings)
        cells += part["cells"]
        captions += part["captions"]
        rows += [f"member {j}" + (f" {objective.layer}" if len(targets) > 1 else "") for j in members]
        for method, sec in part["seconds"].items():
            seconds[method] = seconds.get(method, 0.0) + sec
        per_layer[objective.layer] = {k: v for k, v in part.items() if k in ("objective", "members", "selectivity",
                                                                           "headline", "warnings")}
    numbers: dict = {"methods": chosen, "steps": steps, "lr": lr, "controls": list(CONTROLS),
                     "units": "z: (value - tile mean) / tile spread, per critic", "margin": MARGIN,
                     "judge": realism.judge.describe() if realism is not None else None}
    if len(targets) == 1:
        numbers |= per_layer[targets[0].layer]
    else:
        numbers["layers"] = per_layer
        numbers["warnings"] = [w for entry in per_layer.values() for w in entry["warnings"]]
    what = targets[0].name if len(targets) == 1 else "every layer's mean"
    warn = (f" · WARNING: {len(numbers['warnings'])} row(s) rate a blank or noise image above every real one "
            "(see the JSON)" if numbers["warnings"] else "")
    title = title_for(run, "activation max", member, seed,
                      f"{what}, {steps} steps; captions: z over the real tile (re-init: a re-initialised critic){warn}")
    columns = [CONTROL_LABELS[c] for c in CONTROLS] + chosen
    columns += [f"{m[:5]} re-init" for m in chosen] if fresh is not None else []
    grid = torch.stack(cells)
    image = labelled_grid(grid, row_labels=rows, col_labels=columns, captions=captions, title=title)
    return Visualisation("activation-max", member, seed, title, image, numbers,
                         {f"{m}_seconds": round(s, 3) for m, s in seconds.items()}, images=grid)


def _judge_realism(run, seed: int, judge: bool | None):
    if judge is False:
        return None
    from kgan_core.judge import judge_for
    from kgan_core.prior import JudgeRealism

    found = judge_for(run.dataset, train=bool(judge))
    if found is None:
        return None
    data = run.dataset
    pick = torch.randperm(data.n, generator=seeded(seed))[:1000]
    return JudgeRealism(found, data.to_model(data.x[pick]))


def _controlled_search(run, critic, fresh, members: list[int], objective, chosen: list[str], context,
                       realism, seed: int, settings: dict) -> dict:
    """Every search on one objective for every member, against the trained and the
    re-initialised critic, with the controls: grid rows, captions and numbers."""
    m = len(members)
    shape = (m, 1, *run.item_shape)
    tiles = {j: tile_items(run, j) for j in members}
    critics = {"trained": critic} | ({"reinit": fresh} if fresh is not None else {})
    refs = {name: [tile_reference(take_member(c, row) if c.k > 1 else c, objective, tiles[j], run.item_shape, seed)
                   for row, j in enumerate(members)] for name, c in critics.items()}
    results, seconds = {name: {} for name in critics}, {}
    for i, method in enumerate(chosen):
        started = time.perf_counter()
        for name, c in critics.items():
            scale = torch.tensor([r.spread for r in refs[name]], device=run.device)[:, None]
            results[name][method] = search(c, objective, method, shape, seed * 1000 + i, context, scale=scale,
                                           **settings)
        seconds[method] = time.perf_counter() - started
    cells, captions, numbers, warnings = [], [], {}, []
    for row, j in enumerate(members):
        entry: dict = {"tile_count": refs["trained"][row].count}
        row_cells, row_caps = [], []
        for name, c in critics.items():
            ref = refs[name][row]
            single = take_member(c, row) if c.k > 1 else c
            control_images = torch.stack([ref.controls[n] for n in CONTROLS]).to(run.device)
            with torch.no_grad():
                control_values = objectives.evaluate(single, control_images[None], objective)[0].tolist()
            control_z = {n: ref.z(v) for n, v in zip(CONTROLS, control_values, strict=True)}
            best_control = max(control_z, key=control_z.get)
            block = {"tile_mean_value": ref.mean, "tile_spread": ref.spread, "tile_max": ref.best_value,
                     "controls_z": control_z, "best_control": best_control}
            for method in chosen:
                res = results[name][method]
                reached = float(res.values[row, 0])
                z = ref.z(reached)
                block[method] = {"start": float(res.start[row, 0]), "reached": reached, "z": z,
                                 "margin_over_best_control": z - control_z[best_control],
                                 "beats_controls": z - control_z[best_control] >= MARGIN,
                                 "trace": [t[row] for t in res.trace]}
                if name == "trained" and realism is not None:
                    block[method]["judge"] = _realism_of(realism, res.images[row, :1])
            if name == "trained":
                warnings += trivial_control_warnings(j, objective.name, control_z)
                row_cells += [ref.controls[n].to(run.device) for n in CONTROLS]
                row_caps += [f"{control_z[n]:+.1f}" for n in CONTROLS]
                if realism is not None:
                    block["controls_judge"] = {n: _realism_of(realism, ref.controls[n][None]) for n in CONTROLS}
            row_cells += [results[name][method].images[row, 0] for method in chosen]
            row_caps += [f"{block[method]['z']:+.1f}" for method in chosen]
            entry[name] = block
        numbers[str(j)] = rounded(entry)
        cells.append(torch.stack(row_cells))
        captions.append(row_caps)
    out = {"objective": objective.to_dict(), "members": numbers, "cells": cells, "captions": captions,
           "seconds": seconds, "warnings": warnings}
    if m == run.k and m > 1:
        out["selectivity"] = {method: _selectivity(critics, refs, results, method, objective) for method in chosen}
    out["headline"] = _headline(numbers, chosen, out.get("selectivity"))
    return out


def trivial_control_warnings(member: int, objective: str, control_z: dict[str, float]) -> list[str]:
    """A warning for each blank or noise control that the objective rates above the member's best
    real tile image: then the objective's maximum need not look like data, and a blank or noisy
    search result is the critic's answer, not a failure of the search."""
    return [f"member {member}: {objective} rates the {CONTROL_LABELS[c]} image above its best real tile image "
            f"(z {control_z[c]:+.1f} against {control_z['best_real']:+.1f}); its maximum need not look like data"
            for c in TRIVIAL if control_z[c] > control_z["best_real"]]


def _realism_of(realism, images: torch.Tensor) -> dict:
    images = images.detach().cpu()
    out = {"nn_ratio": float(realism.nn_ratio(images)[0]), "data_like": bool(realism.data_like(images)[0])}
    if realism.judge.labelled:
        proba = realism.judge.predict_proba(images)[0]
        out |= {"class": int(proba.argmax()), "confidence": float(proba.max())}
    return out


def am_matrix(critic, refs: list[TileReference], objective, images: torch.Tensor) -> torch.Tensor:
    """(k, k): row i, column j = critic i's objective on member j's image, in critic i's tile z.
    ``images``: (k, 1, C, H, W), one per member."""
    k = images.shape[0]
    with torch.no_grad():
        raw = torch.stack([objectives.evaluate(critic, images[j:j + 1].expand(k, *images.shape[1:]).contiguous(),
                                               objective)[:, 0] for j in range(k)], dim=1).cpu()
    mean = torch.tensor([r.mean for r in refs])[:, None]
    spread = torch.tensor([r.spread for r in refs])[:, None]
    return (raw - mean) / spread


def row_leads(matrix: torch.Tensor) -> torch.Tensor:
    """(k,) how far each row's diagonal lies above the largest other entry of its row."""
    k = matrix.shape[0]
    off = matrix.masked_fill(torch.eye(k, dtype=torch.bool), float("-inf"))
    return torch.diagonal(matrix) - off.max(1).values


def _selectivity(critics: dict, refs: dict, results: dict, method: str, objective) -> dict:
    out: dict = {}
    for name, c in critics.items():
        matrix = am_matrix(c, refs[name], objective, results[name][method].images)
        leads = row_leads(matrix)
        out[name] = {"matrix_z": rounded(matrix), "row_lead_z": rounded(leads),
                     "dominant_rows": int((leads > 0).sum()), "rows": int(matrix.shape[0])}
    if "reinit" in out:
        out |= selectivity_verdict(out["trained"]["row_lead_z"], out["reinit"]["row_lead_z"])
    return out


def selectivity_verdict(leads: list[float], reinit_leads: list[float]) -> dict:
    """Rows whose diagonal lead beats ``SELECTIVITY_FACTOR`` times the re-initialised critics'
    median lead, and whether enough rows do."""
    bar = SELECTIVITY_FACTOR * max(statistics.median(reinit_leads), 0.0)
    selective = [lead > 0 and lead > bar for lead in leads]
    return {"bar_z": rounded(bar), "selective_rows": sum(selective),
            "passes": sum(selective) >= SELECTIVE_SHARE * len(leads)}


def _headline(numbers: dict, chosen: list[str], selectivity: dict | None) -> dict:
    """Per search: members whose result beats every control by the margin, for the trained and
    the re-initialised critic, and whether the selectivity bar is met."""
    out = {}
    for method in chosen:
        line = {name: sum(bool(e[name][method]["beats_controls"]) for e in numbers.values())
                for name in ("trained", "reinit") if name in next(iter(numbers.values()))}
        line["members"] = len(numbers)
        if selectivity is not None and "passes" in selectivity[method]:
            line["selective_rows"] = selectivity[method]["selective_rows"]
            line["passes_selectivity"] = selectivity[method]["passes"]
        out[method] = line
    return out
