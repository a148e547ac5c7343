"""What activation maximisation maximises (after Lucent's ``objectives``).

An objective reads named critic layers (and ``"input"``, the images the critic sees) and
returns one number per image, (k, B). Objectives compose the way Lucent's do::

    channel("conv1", 3) - 0.05 * tv()            # a channel, smoothed
    sum(channel("conv2", c) for c in (0, 4))      # two channels at once
    layer_mean("score") * layer_mean("conv1")     # a product of two terms

The building blocks:

- ``layer_mean``: the mean activation of a whole layer (the thesis' choice);
- ``channel``: the mean of one channel over all positions (conv layers) or one feature;
- ``unit``: one channel at one position (default: the centre) or one feature;
- ``channel_per_image``: image b maximises channel b // repeats (a channel atlas in one batch);
- ``tv``: the total variation of the input (subtract it to smooth);
- ``diversity``: Lucid's diversity term — minus the mean cosine similarity of an image's
  Gram matrix at a layer to those of the other images in its group.

``resolve`` checks names and indices against a real critic and raises ``LayerNameError``
listing what exists; ``activations`` runs a critic just as deep as an objective needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kgan_core.visualise.errors import LayerNameError

INPUT = "input"  # the pseudo-layer holding the images the critic is given


class Objective:
    """Base: ``objective(acts)`` -> (k, B), where ``acts`` maps layer names (and ``"input"``) to
    member-first activations. ``layers`` names what it reads."""

    layers: tuple[str, ...] = ()
    name: str = ""

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name, "layers": list(self.layers)}

    # Composition, as in Lucent: objectives and numbers (or (k, 1) tensors: per-member weights).
    def __add__(self, other) -> Objective:
        if isinstance(other, int | float) and other == 0:
            return self
        return Combined(self, _as_objective(other), torch.add, "+")

    def __radd__(self, other) -> Objective:  # sum() starts from 0
        return self if isinstance(other, int | float) and other == 0 else _as_objective(other) + self

    def __sub__(self, other) -> Objective:
        return self + (-1.0) * _as_objective(other)

    def __neg__(self) -> Objective:
        return (-1.0) * self

    def __mul__(self, other) -> Objective:
        if isinstance(other, Objective):
            return Combined(self, other, torch.mul, "*")
        return Weighted(self, other)

    def __rmul__(self, other) -> Objective:
        return self * other

    def __truediv__(self, other) -> Objective:
        if isinstance(other, Objective):
            raise TypeError("an objective can be divided by a number or a tensor of weights, not by an objective")
        return Weighted(self, 1.0 / other)


class Constant(Objective):
    def __init__(self, value: float):
        self.value, self.name = float(value), f"{float(value):g}"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        ref = acts[INPUT]
        return torch.full(ref.shape[:2], self.value, device=ref.device, dtype=ref.dtype)


def _as_objective(x) -> Objective:
    if isinstance(x, Objective):
        return x
    if isinstance(x, int | float):
        return Constant(x)
    raise TypeError(f"objectives combine with objectives and numbers, not {type(x).__name__}")


class Combined(Objective):
    def __init__(self, a: Objective, b: Objective, op: Callable, symbol: str):
        self.a, self.b, self.op = a, b, op
        self.layers = tuple(dict.fromkeys(a.layers + b.layers))
        self.name = f"({a.name} {symbol} {b.name})"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.op(self.a(acts), self.b(acts))


class Weighted(Objective):
    """``weight · objective``; the weight is a number or a tensor broadcasting to (k, B)."""

    def __init__(self, objective: Objective, weight):
        self.objective, self.weight = objective, weight
        self.layers = objective.layers
        shown = f"{weight:g}" if isinstance(weight, int | float) else "w"
        self.name = f"{shown}·{objective.name}"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * self.objective(acts)


@dataclass(frozen=True, eq=False)
class Activation(Objective):
    """One layer's mean, one channel, or one unit of a critic layer."""

    layer: str
    kind: str = "layer"  # "layer" | "channel" | "unit"
    channel: int | None = None
    position: tuple[int, int] | None = None

    @property
    def layers(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.layer,)

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        a = acts[self.layer]  # (k, B, C, H, W) or (k, B, F)
        if self.kind == "layer":
            return a.flatten(2).mean(2)
        if a.dim() == 3:  # a linear layer: channel and unit are the same feature
            return a[:, :, self.channel]
        if self.kind == "channel":
            return a[:, :, self.channel].flatten(2).mean(2)
        y, x = self.position  # type: ignore[misc]
        return a[:, :, self.channel, y, x]

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.kind == "layer":
            return f"{self.layer} mean"
        if self.kind == "channel":
            return f"{self.layer} channel {self.channel}"
        where = f" at {self.position}" if self.position is not None else ""
        return f"{self.layer} unit {self.channel}{where}"

    def to_dict(self) -> dict:
        return {"layer": self.layer, "kind": self.kind, "channel": self.channel,
                "position": list(self.position) if self.position is not None else None, "name": self.name}


class ChannelPerImage(Objective):
    """Image b of every member's batch maximises channel b // repeats of ``layer``."""

    def __init__(self, layer: str, repeats: int = 1):
        self.layer, self.repeats = layer, int(repeats)
        self.layers = (layer,)
        self.name = f"{layer}: one channel per image"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        a = acts[self.layer]
        per_channel = a.flatten(3).mean(3) if a.dim() == 5 else a  # (k, B, C)
        index = torch.arange(a.shape[1], device=a.device) // self.repeats
        if int(index.max()) >= per_channel.shape[2]:
            raise LayerNameError(f"layer {self.layer!r} has {per_channel.shape[2]} channels; a batch of "
                                 f"{a.shape[1]} images at {self.repeats} per channel needs more")
        return per_channel.gather(2, index[None, :, None].expand(a.shape[0], -1, 1))[..., 0]


class TotalVariation(Objective):
    layers = (INPUT,)
    name = "total variation"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        return total_variation(acts[INPUT])


class Diversity(Objective):
    """Lucid's diversity: minus each image's mean cosine similarity, in Gram-matrix space at
    ``layer``, to the other images of its group (``group`` consecutive images of a batch)."""

    def __init__(self, layer: str, group: int):
        self.layer, self.group = layer, int(group)
        self.layers = (layer,)
        self.name = f"diversity at {layer}"

    def __call__(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        a = acts[self.layer]
        k, b = a.shape[:2]
        if self.group < 2 or b % self.group:
            return torch.zeros(k, b, device=a.device, dtype=a.dtype)
        flat = a.reshape(k, b, a.shape[2], -1)  # (k, B, C, positions)
        gram = torch.einsum("kbcp,kbdp->kbcd", flat, flat).flatten(2)
        gram = torch.nn.functional.normalize(gram, dim=2).reshape(k, b // self.group, self.group, -1)
        sim = torch.einsum("kgif,kgjf->kgij", gram, gram)  # (k, groups, group, group)
        off_diagonal = (sim.sum(3) - sim.diagonal(dim1=2, dim2=3)) / (self.group - 1)
        return -off_diagonal.reshape(k, b)


def layer_mean(layer: str) -> Activation:
    return Activation(layer)


def channel(layer: str, index: int) -> Activation:
    return Activation(layer, "channel", index)


def unit(layer: str, index: int, position: tuple[int, int] | None = None) -> Activation:
    return Activation(layer, "unit", index, position)


def channel_per_image(layer: str, repeats: int = 1) -> ChannelPerImage:
    return ChannelPerImage(layer, repeats)


def tv() -> TotalVariation:
    return TotalVariation()


def diversity(layer: str, group: int) -> Diversity:
    return Diversity(layer, group)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image: (..., C, H, W) -> (...)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(-3).mean(-1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(-3).mean(-1)
    return dy + dx


def activations(critic, images: torch.Tensor, objective: Objective) -> dict[str, torch.Tensor]:
    """The critic's activations as deep as ``objective`` reads (no deeper), plus the input."""
    names = list(critic.layer_names)
    unknown = [n for n in objective.layers if n != INPUT and n not in names]
    if unknown:
        raise LayerNameError(f"the critic has no layer {unknown[0]!r}; its layers are {', '.join(names)}")
    needed = [n for n in names if n in objective.layers]
    acts = critic.features(images, upto=needed[-1]) if needed else {}
    return {**acts, INPUT: images}


def evaluate(critic, images: torch.Tensor, objective: Objective) -> torch.Tensor:
    """``objective`` on (k, B, C, H, W) images through a stack of k critics: (k, B)."""
    return objective(activations(critic, images, objective))


def layer_shapes(critic, item_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Shape of one image's activation at every named layer of ``critic``."""
    probe = torch.zeros(critic.k, 1, *item_shape, device=next(critic.parameters()).device)
    with torch.no_grad():
        feats = critic.features(probe)
    return {name: tuple(v.shape[2:]) for name, v in feats.items()}


def resolve(critic, item_shape: tuple[int, ...], layer: str | None = None, channel: int | None = None,
            unit: int | None = None, position: tuple[int, int] | None = None) -> Activation:
    """The objective asked for, checked against the critic; default: the last layer's mean."""
    shapes = layer_shapes(critic, item_shape)
    names = list(critic.layer_names)
    layer = layer or names[-1]
    if layer not in shapes:
        raise LayerNameError(f"the critic has no layer {layer!r}; its layers are {', '.join(names)}")
    shape = shapes[layer]
    if channel is not None and unit is not None:
        raise LayerNameError("give either a channel or a unit, not both")
    index = unit if unit is not None else channel
    if index is None:
        if position is not None:
            raise LayerNameError("a position needs a unit index")
        return Activation(layer)
    if not 0 <= index < shape[0]:
        raise LayerNameError(f"layer {layer!r} has {shape[0]} {'channels' if len(shape) == 3 else 'features'}, "
                             f"numbered 0 to {shape[0] - 1}; got {index}")
    if unit is None:
        return Activation(layer, "channel", index)
    if len(shape) == 1:
        if position is not None:
            raise LayerNameError(f"layer {layer!r} is a linear layer: its units have no position")
        return Activation(layer, "unit", index)
    h, w = shape[1:]
    y, x = position if position is not None else (h // 2, w // 2)
    if not (0 <= y < h and 0 <= x < w):
        raise LayerNameError(f"layer {layer!r} is {h}×{w}: position must be within 0..{h - 1}, 0..{w - 1}; "
                             f"got ({y}, {x})")
    return Activation(layer, "unit", index, (int(y), int(x)))
