"""Generators and critics, each built as a stack of k members (see ``kgan_core.nn``).

Three families:

- ``mlp``: a generator/critic pair of MLPs for 2-D (or D-dimensional) point data.
- ``thesis``: the thesis' nets. Generator = linear layer + 3 transposed convolutions;
  critic = 2 convolutions + linear. Image side must be a multiple of 4 (28, 32, 64, ...).
- ``dcgan``: DCGAN-style nets at 64 or 128 px (``dcgan64`` / ``dcgan128``).
- ``resize``: the thesis critic, and a generator that upsamples by nearest-neighbour
  resizing and a 3×3 convolution instead of transposed convolutions (Odena et al. 2016):
  two stacked stride-2 transposed convolutions drew a lattice of dots every 2-4 pixels on
  MNIST, which the members did not unlearn in a CPU budget. The default for images of any
  side divisible by 4 other than 64 and 128.

Every module takes and returns member-first tensors: a generator maps z of shape
(k, B, latent) to (k, B, *item_shape); a critic maps (k, B, *item_shape) to scores (k, B).
Critics also expose ``layer_names`` and ``features(x)`` so visualisations can read any
layer's activations as (k, B, ...) tensors.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from kgan_core.nn import (
    EnsembleBatchNorm,
    EnsembleConv2d,
    EnsembleLayerNorm,
    EnsembleLinear,
    from_grouped,
    to_grouped,
)

Arch = Literal["mlp", "thesis", "resize", "dcgan64", "dcgan128"]
ARCHITECTURES: tuple[str, ...] = ("mlp", "thesis", "resize", "dcgan64", "dcgan128")


class ArchitectureError(ValueError):
    """The requested architecture cannot model data of this shape."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a member's networks (stored in every checkpoint)."""

    arch: str
    item_shape: tuple[int, ...]
    latent_dim: int
    width: int

    def to_dict(self) -> dict:
        return asdict(self) | {"item_shape": list(self.item_shape)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(d["arch"], tuple(d["item_shape"]), int(d["latent_dim"]), int(d["width"]))


def default_spec(item_shape: tuple[int, ...], arch: str = "auto", latent_dim: int | None = None,
                 width: int | None = None) -> ModelSpec:
    """Pick the architecture and sizes a user would expect for data of this shape."""
    if arch == "auto":
        if len(item_shape) == 1:
            arch = "mlp"
        elif item_shape[-1] == 64:
            arch = "dcgan64"
        elif item_shape[-1] == 128:
            arch = "dcgan128"
        else:
            arch = "resize"
    defaults = {"mlp": (8, 128), "thesis": (64, 16), "resize": (64, 16), "dcgan64": (100, 32),
                "dcgan128": (100, 32)}
    if arch not in defaults:
        raise ArchitectureError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    spec = ModelSpec(arch, tuple(item_shape), latent_dim or defaults[arch][0], width or defaults[arch][1])
    check_spec(spec)
    return spec


def check_spec(spec: ModelSpec) -> None:
    shape = spec.item_shape
    if spec.arch == "mlp":
        if len(shape) != 1:
            raise ArchitectureError(f"the mlp pair models points (N, D); this data has items of shape {shape}")
        return
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ArchitectureError(f"{spec.arch} models square images (C, S, S); this data has items of shape {shape}")
    side = shape[-1]
    if spec.arch in ("thesis", "resize") and side % 4:
        raise ArchitectureError(f"the {spec.arch} nets need an image side divisible by 4, got {side}; set image_size")
    if spec.arch in ("dcgan64", "dcgan128") and side != int(spec.arch[5:]):
        raise ArchitectureError(f"{spec.arch} needs {spec.arch[5:]} px images, got {side}; set image_size")


# --- generators ---------------------------------------------------------------------------


class Generator(nn.Module):
    """Base: k stacked generators. Subclasses build ``self`` for (spec, k)."""

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__()
        self.spec, self.k = spec, k

    def clone_empty(self, k: int) -> Generator:
        return build_generator(self.spec, k)

    def latent(self, k: int, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        return torch.randn(k, n, self.spec.latent_dim, generator=generator,
                           device=device or self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class MLPGenerator(Generator):
    """MLP generator whose output lives in its tile's frame: anchor + spread · net(z).

    The trainer sets ``anchor`` (the tile's mean) and ``spread`` (its standard deviation)
    at every re-tiling. A member whose tile is one mode of σ=0.02 then learns a unit-scale
    problem instead of having to hit a point 2 units away to within a few hundredths; for
    k=1 this is ordinary data standardisation.
    """

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__(spec, k)
        w, d = spec.width, spec.item_shape[0]
        self.layers = nn.ModuleList([
            EnsembleLinear(k, spec.latent_dim, w), EnsembleLinear(k, w, w),
            EnsembleLinear(k, w, w), EnsembleLinear(k, w, d),
        ])
        self.register_buffer("anchor", torch.zeros(k, 1, d))
        self.register_buffer("spread", torch.ones(k, 1, 1))

    def set_frame(self, anchor: torch.Tensor, spread: torch.Tensor) -> None:
        self.anchor.copy_(anchor.reshape(self.anchor.shape))
        self.spread.copy_(spread.reshape(self.spread.shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return self.anchor + self.spread * self.layers[-1](h)


class ConvGenerator(Generator):
    """Linear projection to a small feature map, then transposed convolutions up to the image.

    ``thesis``: 3 transposed convolutions (two ×2 upsamplings and a stride-1 output layer),
    so any side divisible by 4 works. ``dcgan``: ×2 upsamplings from 4×4 to the image side.

    The output is tanh(anchor + net(z)), where the trainer sets ``anchor`` to the logit of
    the tile's mean image at every re-tiling. From zero, the output layer's bias moves by
    about one learning rate per Adam step, so reaching MNIST's black background (-1, a
    pre-activation near -2) took thousands of steps and short runs drew grey silhouettes.
    From the tile's mean, a member starts where its tile's pixels are and learns the strokes.
    """

    # Largest |mean pixel| the anchor takes: tanh's slope stays ≥ 0.1 there, so the network
    # can still draw a stroke where the tile's mean image is nearly black.
    anchor_limit = 0.95

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__(spec, k)
        channels, side = spec.item_shape[0], spec.item_shape[-1]
        w = spec.width
        if spec.arch in ("thesis", "resize"):
            self.base = side // 4
            widths = [4 * w, 2 * w, w]
        else:
            self.base = 4
            levels = int(math.log2(side // 4))  # 64 px: 4, 128 px: 5
            widths = [w * 2 ** (levels - 1 - i) for i in range(levels)]
        self.widths = widths
        self.project = EnsembleLinear(k, spec.latent_dim, widths[0] * self.base ** 2)
        self.project_norm = EnsembleBatchNorm(k, widths[0])
        ups, norms = [], []
        self.resize = spec.arch == "resize"
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            if self.resize:
                ups.append(EnsembleConv2d(k, c_in, c_out, 3, 1, 1, bias=False))
            else:
                ups.append(EnsembleConv2d(k, c_in, c_out, 4, 2, 1, transposed=True, bias=False))
            norms.append(EnsembleBatchNorm(k, c_out))
        self.ups, self.norms = nn.ModuleList(ups), nn.ModuleList(norms)
        if self.resize:
            self.out = EnsembleConv2d(k, widths[-1], channels, 3, 1, 1)
        elif spec.arch == "thesis":
            self.out = EnsembleConv2d(k, widths[-1], channels, 3, 1, 1, transposed=True)
        else:
            self.out = EnsembleConv2d(k, widths[-1], channels, 4, 2, 1, transposed=True)
        fan_in_init(self.out, gain=1.0)
        self.register_buffer("anchor", torch.zeros(k, 1, *spec.item_shape))
        self.register_load_state_dict_pre_hook(_upgrade_old_state)

    def set_frame(self, anchor: torch.Tensor, spread: torch.Tensor) -> None:
        """Anchor the output at the tile's mean image (model range); images have no spread to set."""
        mean = anchor.reshape(self.anchor.shape).clamp(-self.anchor_limit, self.anchor_limit)
        self.anchor.copy_(torch.atanh(mean))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k, b, _ = z.shape
        h = self.project(z)  # (k, B, C0*base*base)
        h = h.transpose(0, 1).reshape(b, k * self.widths[0], self.base, self.base)
        h = F.relu(self.project_norm(h))
        for up, norm in zip(self.ups, self.norms, strict=True):
            if self.resize:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = F.relu(norm(up(h)))
        return torch.tanh(self.anchor + from_grouped(self.out(h), k))


def fan_in_init(conv: EnsembleConv2d, gain: float) -> None:
    """He initialisation, N(0, gain² / fan-in), for a convolution that no batch norm follows.

    DCGAN's N(0, 0.02) suits layers whose output batch norm rescales. Without it, a critic
    so initialised is nearly linear (its first layer's outputs have std ≈ 0.08) and sees
    little but mean brightness, and a generator's output layer draws grey; Adam grows a
    weight by about one learning rate per step, so either took thousands of steps to leave.
    """
    kernel_area = conv.kernel ** 2
    # A transposed convolution of stride s sums over in_ch · kernel² / s² inputs per output.
    fan_in = conv.in_ch * kernel_area // (conv.stride ** 2 if conv.transposed else 1)
    with torch.no_grad():
        conv.weight.normal_(0.0, gain / math.sqrt(fan_in))


def _upgrade_old_state(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load a generator saved before the anchor and before its upsamplings lost their bias, exactly.

    A zero anchor draws tanh(net(z)), as those generators did. A bias before batch norm is
    folded into the norm's running mean: BN(conv(x) + b) with mean μ is BN(conv(x)) with μ - b.
    """
    state_dict.setdefault(prefix + "anchor", torch.zeros_like(module.anchor))
    for i in range(len(module.ups)):
        bias = state_dict.pop(f"{prefix}ups.{i}.bias", None)
        if bias is not None:
            mean = f"{prefix}norms.{i}.norm.running_mean"
            state_dict[mean] = state_dict[mean] - bias


# --- critics ------------------------------------------------------------------------------


class Critic(nn.Module, ABC):
    """Base: k stacked critics with named layers whose activations can be read."""

    layer_names: tuple[str, ...] = ()

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__()
        self.spec, self.k = spec, k

    def clone_empty(self, k: int) -> Critic:
        return build_critic(self.spec, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x, upto=self.layer_names[-1])[self.layer_names[-1]].squeeze(-1)

    def input_spread(self) -> torch.Tensor | float:
        """Scale of the frame the critic reads its input in ((k, 1), or 1 for data space)."""
        return 1.0

    @abstractmethod
    def features(self, x: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        """Activations of every named layer up to ``upto``, each member-first (k, B, ...)."""


class MLPCritic(Critic):
    """MLP critic that reads points in its tile's frame, (x - anchor) / spread.

    Without this a critic at unit scale cannot tell apart points a few hundredths apart,
    and its member settles several σ off its mode. ``input_spread`` lets the trainer apply
    the gradient penalty in the same frame, so each member is a standard WGAN-GP on its
    whitened tile.
    """

    layer_names = ("fc1", "fc2", "fc3", "score")

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__(spec, k)
        w, d = spec.width, spec.item_shape[0]
        self.layers = nn.ModuleList([
            EnsembleLinear(k, d, w), EnsembleLinear(k, w, w),
            EnsembleLinear(k, w, w), EnsembleLinear(k, w, 1),
        ])
        self.register_buffer("anchor", torch.zeros(k, 1, d))
        self.register_buffer("spread", torch.ones(k, 1, 1))

    def set_frame(self, anchor: torch.Tensor, spread: torch.Tensor) -> None:
        self.anchor.copy_(anchor.reshape(self.anchor.shape))
        self.spread.copy_(spread.reshape(self.spread.shape))

    def input_spread(self) -> torch.Tensor:
        return self.spread.reshape(self.k, 1)

    def features(self, x: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        out, h = {}, (x - self.anchor) / self.spread
        for name, layer in zip(self.layer_names, self.layers, strict=True):
            h = layer(h)
            if name != "score":
                h = F.leaky_relu(h, 0.2)
            out[name] = h
            if name == upto:
                break
        return out


class ConvCritic(Critic):
    """Strided convolutions then a linear score.

    ``thesis``: 2 convolutions (×1/2 each) + linear, no normalisation, as in the thesis.
    ``dcgan``: ×1/2 convolutions down to 4×4 with per-member layer norm (batch norm would
    break the gradient penalty), then a linear score.
    """

    def set_frame(self, anchor: torch.Tensor, spread: torch.Tensor) -> None:
        """Image critics read pixels as they are (the gradient penalty is in pixel units)."""

    def __init__(self, spec: ModelSpec, k: int):
        super().__init__(spec, k)
        channels, side = spec.item_shape[0], spec.item_shape[-1]
        w = spec.width
        levels = 2 if spec.arch in ("thesis", "resize") else int(math.log2(side // 4))
        widths = [channels] + [w * 2 ** i for i in range(levels)]
        self.convs = nn.ModuleList(
            EnsembleConv2d(k, c_in, c_out, 4, 2, 1) for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        for conv in self.convs:
            fan_in_init(conv, gain=math.sqrt(2.0))  # leaky ReLU follows
        normed = spec.arch not in ("thesis", "resize")
        self.norms = nn.ModuleList(
            EnsembleLayerNorm(k, c) if normed and i > 0 else nn.Identity() for i, c in enumerate(widths[1:])
        )
        final_side = side // 2 ** levels
        self.score = EnsembleLinear(k, widths[-1] * final_side ** 2, 1)
        self.layer_names = tuple(f"conv{i + 1}" for i in range(levels)) + ("score",)

    def features(self, x: torch.Tensor, upto: str | None = None) -> dict[str, torch.Tensor]:
        k = x.shape[0]
        out = {}
        h = to_grouped(x)
        for name, conv, norm in zip(self.layer_names, self.convs, self.norms, strict=False):
            h = F.leaky_relu(norm(conv(h)), 0.2)
            out[name] = from_grouped(h, k)
            if name == upto:
                return out
        b = h.shape[0]
        flat = h.reshape(b, k, -1).transpose(0, 1)
        out["score"] = self.score(flat)
        return out


def build_generator(spec: ModelSpec, k: int) -> Generator:
    check_spec(spec)
    return MLPGenerator(spec, k) if spec.arch == "mlp" else ConvGenerator(spec, k)


def build_critic(spec: ModelSpec, k: int) -> Critic:
    check_spec(spec)
    return MLPCritic(spec, k) if spec.arch == "mlp" else ConvCritic(spec, k)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def width_for_budget(spec: ModelSpec, k: int) -> int:
    """Width of a single (k=1) member whose parameter count matches k members of ``spec``.

    Used to build the single-GAN baseline "with about the same total parameters".
    """
    target = k * (parameter_count(build_generator(spec, 1)) + parameter_count(build_critic(spec, 1)))
    lo, hi = 1, spec.width * k * 4
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = ModelSpec(spec.arch, spec.item_shape, spec.latent_dim, mid)
        size = parameter_count(build_generator(trial, 1)) + parameter_count(build_critic(trial, 1))
        lo, hi = (mid, hi) if size <= target else (lo, mid - 1)
    return lo


@dataclass(frozen=True)
class TrainingFootprint:
    parameters: int  # generator and critic of all k members
    activations: int  # values one generator and one critic forward pass keep for the backward pass
    peak_bytes: int


def training_footprint(spec: ModelSpec, k: int, batch_size: int) -> TrainingFootprint:
    """Parameters and an estimate of the peak memory of training k members of ``spec``, counted
    on the meta device (nothing is allocated). Peak: float32 weights, gradients and Adam's two
    moments (4 per parameter) plus the activations of one generator pass and of the critic on
    real, fake and interpolated batches, twice over for the gradient penalty's double backward."""
    with torch.device("meta"):
        generator, critic = build_generator(spec, k), build_critic(spec, k)
        generator_values, critic_values = [], []

        def keep(into: list[int]):
            return lambda module, args, out: into.append(out.numel() if torch.is_tensor(out) else 0)

        for net, into in ((generator, generator_values), (critic, critic_values)):
            for module in net.modules():
                if next(module.children(), None) is None:  # leaves only: a container's output is its last leaf's
                    module.register_forward_hook(keep(into))
        critic(generator(torch.empty(k, batch_size, spec.latent_dim)))
    parameters = parameter_count(generator) + parameter_count(critic)
    activations = sum(generator_values) + sum(critic_values)
    peak_values = 4 * parameters + sum(generator_values) + 2 * 3 * sum(critic_values)
    return TrainingFootprint(parameters, activations, 4 * peak_values)
