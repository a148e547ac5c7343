"""How much a change in the latent (or in a generator layer) changes what an image shows.

Measured in the independent judge's features (``kgan_core.judge``), not in pixels: a shift
of a stroke by one pixel changes many pixels and nothing a reader would call a change, and
a 3 turning into a 5 may change few. Effects are unitless — feature change divided by the
typical feature distance between two independent samples of the same generator — so 1.0
means "as different as two random samples", whatever the judge's scale.

When no judge is available (``judge=None`` uses a cached judge only) pixels stand in, and
every number and picture says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgan_core.visualise.base import generate, seeded

# What the number on a latent picture's row means, for its title; a bare "effect 0.21/sd"
# names no unit.
EFFECT_KEY = "effect: change per sd of the direction, in units of the distance between two random samples,"


@dataclass
class FeatureSpace:
    judge: object | None  # a kgan_core.judge.Judge, or None for pixels

    @property
    def name(self) -> str:
        return "judge features" if self.judge is not None else "pixels (no judge cached)"

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) -> (..., F)."""
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:]).detach().cpu()
        out = self.judge.features(flat) if self.judge is not None else flat.flatten(1)
        return out.reshape(*lead, -1).float()


def feature_space(run, judge: bool | None) -> FeatureSpace:
    """The judge of the run's data (trained if ``judge`` is True, cached only if None), or pixels."""
    if judge is False:
        return FeatureSpace(None)
    from kgan_core.judge import judge_for

    return FeatureSpace(judge_for(run.dataset, train=bool(judge)))


def sample_spread(space: FeatureSpace, generator, latent_dim: int, seed: int, n: int = 64) -> float:
    """Median feature distance between two independent samples of ``generator``."""
    z = torch.randn(n, latent_dim, generator=seeded(seed + 31337))
    f = space.embed(generate(generator, z))
    d = torch.cdist(f, f)
    return float(d[torch.triu_indices(n, n, 1).unbind()].median().clamp_min(1e-12))


def path_effect(space: FeatureSpace, images: torch.Tensor, offsets: torch.Tensor, spread: float) -> torch.Tensor:
    """(..., S, C, H, W) images along one direction at offsets (S,) -> (...) mean feature change
    between neighbouring images per unit offset, over ``spread``."""
    f = space.embed(images)
    steps = (offsets[1:] - offsets[:-1]).abs().clamp_min(1e-12)
    per_unit = (f[..., 1:, :] - f[..., :-1, :]).norm(dim=-1) / steps
    return per_unit.mean(-1) / spread


def percentile(value: float, reference: torch.Tensor) -> float:
    """Share (0-100) of ``reference`` values strictly below ``value``."""
    return 100.0 * float((reference < value).float().mean())
