"""What activation maximisation maximises (after Lucent's ``objectives``).

An objective reads one named critic layer, from ``critic.features(x, upto=layer)``, and
returns one number per image, (k, B):

- ``layer_mean``: the mean activation of the whole layer (the thesis' choice);
- ``channel``: the mean of one channel over all positions (conv layers) or one feature;
- ``unit``: one channel at one position (default: the centre) or one feature.

``resolve`` checks names and indices against a real critic and raises ``LayerNameError``
listing what exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgan_core.visualise.errors import LayerNameError


@dataclass(frozen=True)
class Objective:
    layer: str
    kind: str = "layer"  # "layer" | "channel" | "unit"
    channel: int | None = None
    position: tuple[int, int] | None = None

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        a = features[self.layer]  # (k, B, C, H, W) or (k, B, F)
        if self.kind == "layer":
            return a.flatten(2).mean(2)
        if a.dim() == 3:  # a linear layer: channel and unit are the same feature
            return a[:, :, self.channel]
        if self.kind == "channel":
            return a[:, :, self.channel].flatten(2).mean(2)
        y, x = self.position  # type: ignore[misc]
        return a[:, :, self.channel, y, x]

    @property
    def name(self) -> str:
        if self.kind == "layer":
            return f"{self.layer} mean"
        if self.kind == "channel":
            return f"{self.layer} channel {self.channel}"
        where = f" at {self.position}" if self.position is not None else ""
        return f"{self.layer} unit {self.channel}{where}"

    def to_dict(self) -> dict:
        return {"layer": self.layer, "kind": self.kind, "channel": self.channel,
                "position": list(self.position) if self.position is not None else None, "name": self.name}


def layer_mean(layer: str) -> Objective:
    return Objective(layer)


def channel(layer: str, index: int) -> Objective:
    return Objective(layer, "channel", index)


def unit(layer: str, index: int, position: tuple[int, int] | None = None) -> Objective:
    return Objective(layer, "unit", index, position)


def layer_shapes(critic, item_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Shape of one image's activation at every named layer of ``critic``."""
    probe = torch.zeros(critic.k, 1, *item_shape, device=next(critic.parameters()).device)
    with torch.no_grad():
        feats = critic.features(probe)
    return {name: tuple(v.shape[2:]) for name, v in feats.items()}


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image: (..., C, H, W) -> (...)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(-3).mean(-1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(-3).mean(-1)
    return dy + dx


def resolve(critic, item_shape: tuple[int, ...], layer: str | None = None, channel: int | None = None,
            unit: int | None = None, position: tuple[int, int] | None = None) -> Objective:
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
        return Objective(layer)
    if not 0 <= index < shape[0]:
        raise LayerNameError(f"layer {layer!r} has {shape[0]} {'channels' if len(shape) == 3 else 'features'}, "
                             f"numbered 0 to {shape[0] - 1}; got {index}")
    if unit is None:
        return Objective(layer, "channel", index)
    if len(shape) == 1:
        if position is not None:
            raise LayerNameError(f"layer {layer!r} is a linear layer: its units have no position")
        return Objective(layer, "unit", index)
    h, w = shape[1:]
    y, x = position if position is not None else (h // 2, w // 2)
    if not (0 <= y < h and 0 <= x < w):
        raise LayerNameError(f"layer {layer!r} is {h}×{w}: position must be within 0..{h - 1}, 0..{w - 1}; "
                             f"got ({y}, {x})")
    return Objective(layer, "unit", index, (int(y), int(x)))
