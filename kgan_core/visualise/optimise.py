"""The activation-maximisation loop (Lucent's ``render_vis``): repeatedly render the
parameterised images, transform them, read the objective from the critic and step the
parameters uphill. What is climbed is one composed objective (see ``objectives``): the
target divided by its spread, minus the total-variation weight times ``tv()``, plus any
other term (e.g. ``diversity``); what is reported is the target alone.

Works on a stack of k critics at once: image j of the (k, B, ...) batch is scored by critic
j only, and the members share nothing, so k members are maximised in one loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgan_core.visualise.objectives import Objective, activations, evaluate, tv
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
             record_every: int = 10, scale: torch.Tensor | float = 1.0, extra: Objective | None = None) -> Maximised:
    """``scale`` (e.g. (k, 1): the objective's spread over real images, per member) divides the
    objective in the loss, so one ``tv_weight`` and one ``lr`` suit critics whose activations
    are 1e-3 and critics whose activations are 1e3. ``extra`` is added to the climbed objective
    as it is (e.g. ``0.5 * diversity(layer, group)``)."""
    climbed = objective / scale
    if tv_weight:
        climbed = climbed - tv_weight * tv()
    if extra is not None:
        climbed = climbed + extra
    with torch.no_grad():
        start = evaluate(critic, param.image(), objective)
    optimizer = torch.optim.Adam(param.params, lr=lr)
    trace: list[list[float]] = []
    for step in range(steps):
        images = param.image()
        x = images
        if transform is not None:
            flat = images.reshape(-1, *images.shape[-3:])
            x = transform(flat, generator).reshape(images.shape)
        acts = evaluate_all(critic, x, climbed, objective)
        loss = -acts[0].sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        param.after_step()
        if step % record_every == 0:
            trace.append(acts[1].detach().mean(1).tolist())
    with torch.no_grad():
        final = param.image().detach()
        values = evaluate(critic, final, objective)
    return Maximised(final, values, start, trace)


def evaluate_all(critic, images: torch.Tensor, climbed: Objective, target: Objective):
    """The climbed objective and the target, from one pass through the critic."""
    acts = activations(critic, images, climbed)
    return climbed(acts), target(acts)
