"""Layers that hold k independent networks as one stacked network.

Every tensor that crosses a module boundary has the member axis first: ``(k, B, ...)``.
Linear layers are one batched matmul over stacked weights ``(k, in, out)``; convolutions
are one grouped convolution (``groups=k``) over the layout ``(B, k*C, H, W)``. Because the
members share no parameter, the gradient of the *sum* of the member losses with respect
to member j's parameters is exactly the gradient of member j's own loss, and Adam is
elementwise, so one optimiser over the stacked parameters updates every member exactly as
k separate optimisers would. ``take_member`` slices a stack into a k=1 copy, which is how
the sequential reference loop and the per-member visualisations get their networks.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def to_grouped(x: torch.Tensor) -> torch.Tensor:
    """(k, B, C, H, W) -> (B, k*C, H, W), the layout grouped convolutions expect."""
    k, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, k * c, h, w)


def from_grouped(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k*C, H, W) -> (k, B, C, H, W)."""
    b, kc, h, w = x.shape
    return x.reshape(b, k, kc // k, h, w).transpose(0, 1)


class EnsembleLinear(nn.Module):
    """k independent linear layers: (k, B, in) -> (k, B, out)."""

    def __init__(self, k: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(k, 1, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution as nn.Linear's default, drawn for each member.
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"k={self.k}, in={self.in_features}, out={self.out_features}"


class EnsembleConv2d(nn.Module):
    """k independent convolutions as one grouped convolution on (B, k*C, H, W).

    One grouped kernel beats a loop of k per-member kernels on CPU for every layer of the
    thesis and DCGAN nets (measured, BENCHMARKS.md), so there is one implementation path.
    """

    # Run transposed convolutions in channels-last on CPU (see forward). Regular convolutions
    # stay NCHW: the critic's first layer reads 1-3 channels, where channels-last is slower.
    channels_last_transposed = True

    def __init__(self, k: int, in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 padding: int = 0, transposed: bool = False, bias: bool = True):
        super().__init__()
        self.k, self.in_ch, self.out_ch = k, in_ch, out_ch
        self.kernel, self.stride, self.padding, self.transposed = kernel, stride, padding, transposed
        # Grouped conv weights: (k*out, in, kh, kw); grouped transposed: (k*in, out, kh, kw).
        shape = (k * in_ch, out_ch, kernel, kernel) if transposed else (k * out_ch, in_ch, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        # No bias where batch norm follows: it would cancel it, and Adam would turn the
        # gradient's rounding noise into steps of one learning rate.
        self.bias = nn.Parameter(torch.empty(k * out_ch)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # DCGAN initialisation: N(0, 0.02) weights, zero bias.
        nn.init.normal_(self.weight, 0.0, 0.02)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            weight = self.weight
            if self.channels_last_transposed and x.device.type == "cpu":
                # oneDNN's transposed convolution in NCHW reorders to its blocked layout and back
                # on every call; in channels-last it runs directly, 1.3-2x faster for grouped and
                # single convolutions alike (BENCHMARKS.md). Batch norm and ReLU keep the layout,
                # so the next transposed convolution gets its input without another copy.
                x = x.contiguous(memory_format=torch.channels_last)
                weight = weight.contiguous(memory_format=torch.channels_last)
            return F.conv_transpose2d(x, weight, self.bias, self.stride, self.padding, groups=self.k)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, groups=self.k)

    def extra_repr(self) -> str:
        kind = "transposed, " if self.transposed else ""
        return (f"{kind}k={self.k}, {self.in_ch}->{self.out_ch}, kernel={self.kernel}, "
                f"stride={self.stride}, padding={self.padding}")


class EnsembleBatchNorm(nn.Module):
    """Batch norm whose statistics are per member and per channel.

    Works on the grouped layout (B, k*C, H, W) and on (k, B, F) features; in both cases each
    member's channels are separate BatchNorm channels, so members never share statistics.
    """

    def __init__(self, k: int, channels: int):
        super().__init__()
        self.k = k
        self.norm = nn.BatchNorm2d(k * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return self.norm(x)
        k, b, f = x.shape
        y = self.norm(x.transpose(0, 1).reshape(b, k * f, 1, 1))
        return y.reshape(b, k, f).transpose(0, 1)


class EnsembleLayerNorm(nn.Module):
    """Per-sample, per-member normalisation over (C, H, W) on the grouped layout.

    GroupNorm with one group per member is exactly a LayerNorm of each member's feature
    map. WGAN-GP critics need a per-sample normaliser (batch norm breaks the penalty).
    """

    def __init__(self, k: int, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(k, k * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def take_member(module: nn.Module, index: int) -> nn.Module:
    """A k=1 copy of member ``index`` of an ensemble module (parameters and buffers copied)."""
    single = module.clone_empty(1)  # type: ignore[attr-defined]
    member_state = slice_state(module.state_dict(), module.k, index)  # type: ignore[attr-defined]
    single.load_state_dict(member_state)
    return single


def stack_members(modules: list[nn.Module]) -> nn.Module:
    """Inverse of take_member: one ensemble module holding the given k=1 modules."""
    k = len(modules)
    stacked = modules[0].clone_empty(k)  # type: ignore[attr-defined]
    states = [m.state_dict() for m in modules]
    merged = {}
    for name, ref in stacked.state_dict().items():
        parts = [s[name] for s in states]
        if ref.dim() == 0:  # e.g. BatchNorm's num_batches_tracked: shared counter
            merged[name] = parts[0]
        else:
            merged[name] = torch.cat(parts, dim=0)
    stacked.load_state_dict(merged)
    return stacked


def slice_state(state: dict[str, torch.Tensor], k: int, index: int) -> dict[str, torch.Tensor]:
    """Member ``index``'s slice of an ensemble state dict.

    Every stacked tensor keeps its members along dim 0, either as its own axis (k, ...) or
    folded into it (k*C, ...), so slicing dim 0 into k equal chunks is always correct.
    """
    out = {}
    for name, value in state.items():
        if value.dim() == 0:
            out[name] = value.clone()
        else:
            size = value.shape[0] // k
            out[name] = value[index * size:(index + 1) * size].clone()
    return out
