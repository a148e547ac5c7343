"""A trained prior and its file format.

A prior is one safetensors file: the decoder (and the encoder, unless it is VGG-16, whose
weights file is named instead), the code region read off the training data (mean, spread,
per-dimension bounds, length bound), and JSON metadata (encoder, image shape, config,
metrics, training history).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kgan_core.prior.decoder import Decoder
from kgan_core.prior.encoders import ENCODERS, CriticEncoder, SmallEncoder, load_vgg16_encoder
from kgan_core.prior.errors import PriorError, PriorMismatchError
from kgan_core.prior.region import CodeRegion

PRIOR_FORMAT = "kgan-prior/2"
# Format 1 was a plain autoencoder whose random codes decoded to scribbles and whose mean code
# decoded to a nearly black image; its files are refused with a message rather than misused.
OLD_FORMATS = {"kgan-prior/1"}


@dataclass
class Prior:
    """A trained encoder/decoder pair and the region of code space real images occupy."""

    encoder: nn.Module
    decoder: Decoder
    encoder_kind: str
    item_shape: tuple[int, ...]
    code_dim: int
    region: CodeRegion
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def code_lo(self) -> torch.Tensor:
        return self.region.lo

    @property
    def code_hi(self) -> torch.Tensor:
        return self.region.hi

    @property
    def code_mean(self) -> torch.Tensor:
        return self.region.mean

    def eval(self) -> Prior:
        self.encoder.eval().requires_grad_(False)
        self.decoder.eval().requires_grad_(False)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h)

    @torch.no_grad()
    def random_images(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, C, H, W) decodes of random codes in the prior's region."""
        return self.decode(self.region.sample(n, generator))

    @property
    def describe(self) -> str:
        c, h, w = self.item_shape
        return f"a {self.encoder_kind}-encoder prior for {c}x{h}x{w} images (code of {self.code_dim})"

    def check_compatible(self, item_shape: tuple[int, ...], encoder: str | None = None) -> None:
        if tuple(item_shape) != tuple(self.item_shape):
            want = "x".join(str(s) for s in item_shape)
            raise PriorMismatchError(
                f"this is {self.describe}, but the run makes {want} images; train a prior at that size "
                f"(kgan train-prior --image-size {item_shape[-1]} --channels {item_shape[0]} ...)")
        if encoder is not None and encoder != self.encoder_kind:
            raise PriorMismatchError(f"this is {self.describe}, but a {encoder} encoder was asked for; "
                                     f"train one with kgan train-prior --encoder {encoder}")

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save

        from kgan_core.checkpoint import atomic_write_bytes

        tensors = {f"decoder.{k}": v.detach().cpu().contiguous() for k, v in self.decoder.state_dict().items()}
        if self.encoder_kind != "vgg16":  # VGG-16 is reloaded from its weights file
            tensors |= {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
        tensors |= {k: v.detach().cpu().contiguous() for k, v in self.region.tensors().items()}
        meta = {"format": PRIOR_FORMAT, "encoder": self.encoder_kind, "item_shape": json.dumps(list(self.item_shape)),
                "code_dim": str(self.code_dim), "info": json.dumps(self.info)}
        atomic_write_bytes(Path(path), save(tensors, metadata=meta))


def load_prior(path: str | Path, *, vgg_weights: str | Path | None = None, device: str | torch.device = "cpu",
               expect_encoder: str | None = None) -> Prior:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise PriorError(f"no prior at {path}; train one with kgan train-prior --out {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except (SafetensorError, OSError) as exc:
        raise PriorError(f"{path} is not a readable prior file: {exc}") from exc
    if meta.get("format") in OLD_FORMATS:
        raise PriorError(f"{path} is a prior of an older kind (an autoencoder whose random codes do not decode to "
                         "images like the data); train a new one with kgan train-prior")
    if meta.get("format") != PRIOR_FORMAT:
        raise PriorError(f"{path} is not a kgan prior (format {meta.get('format')!r}, expected {PRIOR_FORMAT!r})")
    kind = meta["encoder"]
    item_shape = tuple(json.loads(meta["item_shape"]))
    code_dim = int(meta["code_dim"])
    info = json.loads(meta["info"])
    if expect_encoder is not None and expect_encoder != kind:
        raise PriorMismatchError(f"{path} was trained with the {kind} encoder, not {expect_encoder}")
    cfg = info.get("config", {})
    decoder = Decoder(code_dim, item_shape, int(cfg.get("width", 32)))
    encoder = build_encoder(kind, item_shape, cfg, info, vgg_weights)
    enc_state = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
    try:
        decoder.load_state_dict({k.removeprefix("decoder."): v for k, v in tensors.items()
                                 if k.startswith("decoder.")})
        if kind != "vgg16":
            encoder.load_state_dict(enc_state)
        region = CodeRegion.from_tensors(tensors)
    except (RuntimeError, KeyError) as exc:
        raise PriorMismatchError(f"{path} does not match the {kind} encoder/decoder it declares: {exc}") from exc
    prior = Prior(encoder, decoder, kind, item_shape, code_dim, region, info).eval()
    with torch.no_grad():
        got = prior.encode(torch.zeros(1, *item_shape)).shape[1]
    if got != code_dim:
        raise PriorMismatchError(f"{path}'s decoder reads codes of {code_dim} numbers but its {kind} encoder gives "
                                 f"{got}: the prior was trained with another encoder (or VGG input size)")
    prior.encoder.to(device)
    prior.decoder.to(device)
    prior.region = prior.region.to(device)
    return prior


def build_encoder(kind: str, item_shape: tuple[int, ...], cfg: dict, info: dict,
                  vgg_weights: str | Path | None) -> nn.Module:
    """The encoder a saved prior declares, before its weights are loaded."""
    if kind == "small":
        return SmallEncoder(item_shape, int(cfg["code_dim"]), int(cfg["width"]))
    if kind == "critic":
        from kgan_core.models import ModelSpec, build_critic

        spec = ModelSpec.from_dict(info["critic_spec"])
        return CriticEncoder(build_critic(spec, 1), info["critic_layer"])
    if kind == "vgg16":
        return load_vgg16_encoder(vgg_weights or cfg.get("vgg_weights"), int(cfg.get("vgg_input_size", 64)))
    raise PriorError(f"unknown encoder {kind!r}; encoders are {', '.join(ENCODERS)}")
