"""What each member of a k-GAN has learnt, as labelled pictures with the numbers behind them.

``visualise(run, what, member=None, seed=0, **options)`` renders one of ``VISUALISATIONS``
and returns a ``Visualisation`` (PIL image, numbers, title). Every visualisation is
deterministic for a seed, maps values to pixels the same way for every member, and raises
a ``ValueError`` subclass with an actionable message on bad input, before anything is
written.

Building blocks in the style of Lucent's optvis: ``param`` (image parameterisations),
``transforms``, ``objectives`` and ``optimise`` (the maximisation loop).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

from kgan_core.visualise.activation import METHODS, activation_max
from kgan_core.visualise.atlas import channel_atlas
from kgan_core.visualise.base import Visualisation
from kgan_core.visualise.cross_member import cross_member
from kgan_core.visualise.curves import training_curves
from kgan_core.visualise.directions import principal_directions
from kgan_core.visualise.errors import (
    LayerNameError,
    OptionError,
    UnknownVisualisationError,
    VisualisationError,
)
from kgan_core.visualise.latent import frozen_latent, traversal
from kgan_core.visualise.medoid import medoid
from kgan_core.visualise.real_tile import real_tile
from kgan_core.visualise.samples import samples

__all__ = ["METHODS", "VISUALISATIONS", "LayerNameError", "OptionError", "UnknownVisualisationError", "Visualisation",
           "VisualisationError", "options_of", "visualise"]


@dataclass(frozen=True)
class Entry:
    render: Callable[..., Visualisation]
    description: str
    per_member_only: bool = False


VISUALISATIONS: dict[str, Entry] = {
    "samples": Entry(samples, "n samples per member from the same z"),
    "medoid": Entry(medoid, "mean of G_k's samples, the medoid sample and the point mass m_k"),
    "real-tile": Entry(real_tile, "a random sample of tile k beside its images nearest to m_k, with its label mix"),
    "frozen-latent": Entry(frozen_latent, "rows: the latent dims with the largest effect frozen at a value; "
                                          "columns: the rest sampled", True),
    "traversal": Entry(traversal, "rows: the latent dims with the largest effect; columns: -3σ..3σ around a base z",
                       True),
    "principal-directions": Entry(principal_directions,
                                  "GANSpace principal directions (in z or at a layer), ranked among random ones", True),
    "cross-member": Entry(cross_member, "k×k: critic D_i on samples of G_j, per row against D_i's own real tile"),
    "activation-max": Entry(activation_max,
                            "critic layer/channel/unit maximised (pixels, regularised, learned prior) beside "
                            "controls, a re-initialised critic and, for all members, selectivity"),
    "channel-atlas": Entry(channel_atlas, "every channel of a critic layer maximised, one labelled grid per member"),
    "training-curves": Entry(training_curves, "losses, Wasserstein estimates and tile sizes over training"),
}


def options_of(what: str) -> list[str]:
    """The keyword options a visualisation takes (besides run, member and seed)."""
    params = inspect.signature(_entry(what).render).parameters
    return [name for name, p in params.items() if p.kind is p.KEYWORD_ONLY and name != "seed"]


def _entry(what: str) -> Entry:
    if what not in VISUALISATIONS:
        raise UnknownVisualisationError(f"no visualisation called {what!r}; choose one of "
                                        f"{', '.join(VISUALISATIONS)}")
    return VISUALISATIONS[what]


def visualise(run, what: str, member: int | None = None, *, seed: int = 0, **options) -> Visualisation:
    """Render visualisation ``what`` of ``member`` (or of every member side by side)."""
    entry = _entry(what)
    if member is not None:
        if isinstance(member, bool) or not isinstance(member, int):
            raise OptionError(f"member must be a whole number, got {member!r}")
        run.check_member(member)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise OptionError(f"seed must be a whole number between 0 and {2**31 - 1}, got {seed!r}")
    allowed = options_of(what)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise OptionError(f"{what} does not take {', '.join(unknown)}; its options are "
                          f"{', '.join(allowed) or 'none'}")
    started = time.perf_counter()
    vis = entry.render(run, member, seed=seed, **options)
    vis.timings["total_seconds"] = round(time.perf_counter() - started, 3)
    return vis
