"""The activation-maximisation loop (Lucent's ``render_vis``): repeatedly render the
parameterised images, transform them, read the objective from the critic and step the
parameters uphill, with an optional total-variation penalty.

Works on a stack of k critics at once: image j of the (k, B, ...) batch is scored by critic
j only, and the members share nothing, so k members are maximised in one loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgan_core.visualise.objectives import Objective, total_variation
from kgan_core.visualise.param import ImageParam
from kgan_core.visualise.transforms import Transform


@dataclass
class Maximised:
    images: torch.Tensor  # (k, B, C, H, W), model range, detached
    values: torch.Tensor  # (k, B): the objective on the final, untransformed images
    start: torch.Tensor   # (k, B): the objective on the initial images
    trace: list[list[float]]  # per recorded step: the mean objective of each member


def maximise(critic, objective: Objective, param: ImageParam, *, steps: int, lr: float,
             generator: torch.Generator, transform: Transform | None = None, tv_weight: float = 0.0,
             record_every: int = 10, scale: torch.Tensor | float = 1.0) -> Maximised:
    """``scale`` (e.g. (k, 1): the objective's spread over real images, per member) divides the
    objective in the loss, so one ``tv_weight`` and one ``lr`` suit critics whose activations
    are 1e-3 and critics whose activations are 1e3."""

    def score(images: torch.Tensor) -> torch.Tensor:
        return objective(critic.features(images, upto=objective.layer))

    with torch.no_grad():
        start = score(param.image())
    optimizer = torch.optim.Adam(param.params, lr=lr)
    trace: list[list[float]] = []
    for step in range(steps):
        images = param.image()
        x = images
        if transform is not None:
            flat = images.reshape(-1, *images.shape[-3:])
            x = transform(flat, generator).reshape(images.shape)
        value = score(x)
        loss = -(value / scale).sum()
        if tv_weight:
            loss = loss + tv_weight * total_variation(images).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        param.after_step()
        if step % record_every == 0:
            trace.append(value.detach().mean(1).tolist())
    with torch.no_grad():
        final = param.image().detach()
        values = score(final)
    return Maximised(final, values, start, trace)
