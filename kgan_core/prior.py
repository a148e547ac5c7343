"""The learned image prior for activation maximisation (DESIGN §4, thesis §2.1.3, §3.1.2).

An encoder E maps an image to a code h; a DCGAN-style decoder G_prior is trained so that
G_prior(E(x)) ≈ x with three losses: pixels, features (||E(G_prior(E(x))) − E(x)||) and an
adversarial loss from a small image discriminator. Activation maximisation then optimises
h instead of pixels (DGN-AM, Nguyen et al. 2016): every image it can reach is a decoded
code, so it looks like the data.

Encoders:
- ``vgg16``: VGG-16 up to conv5_3 with ImageNet weights, read from a local file or
  torchvision's cache (never downloaded here; a clear error says where to put the file);
- ``critic``: a trained member's own critic, read at one of its layers;
- ``small``: a small convolutional encoder trained with the decoder, on the data itself —
  the default, which works offline.

A prior is one safetensors file: the decoder (and the encoder, unless it is VGG-16, whose
weights file is named instead), the code range seen on the training data, and JSON
metadata (encoder, image shape, config, fidelity metrics, training history).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

PRIOR_FORMAT = "kgan-prior/1"
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
ENCODERS: tuple[str, ...] = ("small", "critic", "vgg16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PriorError(ValueError):
    """A prior cannot be trained, loaded or used as asked; the message says what to change."""


class PriorMismatchError(PriorError):
    """The prior was trained for another image size or another encoder."""


class EncoderWeightsMissing(PriorError, FileNotFoundError):
    """The VGG-16 ImageNet weights were asked for and are not on this machine."""


# --- encoders ---------------------------------------------------------------------------------


class SmallEncoder(nn.Module):
    """Three strided convolutions and a linear code, trained with the decoder on the data."""

    def __init__(self, item_shape: tuple[int, ...], code_dim: int, width: int):
        super().__init__()
        c, side = item_shape[0], item_shape[-1]
        self.convs = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1), nn.LeakyReLU(0.2),
        )
        self.code = nn.Linear(4 * width * (side // 4) ** 2, code_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(self.convs(x).flatten(1))


class CriticEncoder(nn.Module):
    """One member's critic (a k=1 stack), read at ``layer`` and flattened."""

    def __init__(self, critic: nn.Module, layer: str):
        super().__init__()
        self.critic, self.layer = critic, layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic.features(x[None], upto=self.layer)[self.layer][0].flatten(1)


class VGGEncoder(nn.Module):
    """VGG-16's convolutions up to conv5_3 (and its ReLU) on ImageNet-normalised RGB input.

    Inputs are resized to ``input_size`` first: at 128 px conv5_3 is 512×8×8, at 64 px 512×4×4.
    """

    def __init__(self, features: nn.Module, input_size: int):
        super().__init__()
        self.features, self.input_size = features, input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.features(x).flatten(1)


def vgg16_weight_candidates(weights: str | Path | None = None) -> list[Path]:
    if weights is not None:
        return [Path(weights)]
    return [Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE]


def load_vgg16_encoder(weights: str | Path | None = None, input_size: int = 64) -> VGGEncoder:
    """VGG-16 to conv5_3 with ImageNet weights from ``weights`` or torchvision's cache; never downloads."""
    from torchvision.models.vgg import cfgs, make_layers

    candidates = vgg16_weight_candidates(weights)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise EncoderWeightsMissing(
            f"the vgg16 encoder needs VGG-16's ImageNet weights, and {candidates[0]} does not exist. "
            f"Download {VGG16_URL} on a machine with internet access and put it at "
            f"{vgg16_weight_candidates()[0]} (torchvision's cache), or pass its path as vgg_weights / "
            "--vgg-weights; or use encoder='small' (trained on your data, works offline)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download or another format: say which file
        raise PriorError(f"cannot read VGG-16 weights from {path}: {exc}") from exc
    feats = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    # Only the convolutions: building all of vgg16() would initialise 120M classifier weights for nothing.
    net = make_layers(cfgs["D"])[:30]  # conv5_3 is layer 28, its ReLU 29
    try:
        net.load_state_dict({k: v for k, v in feats.items() if int(k.split(".")[0]) < 30})
    except (RuntimeError, ValueError) as exc:
        raise PriorError(f"{path} does not hold VGG-16 weights torchvision can load: {exc}") from exc
    return VGGEncoder(net, input_size).eval()


# --- decoder and its discriminator --------------------------------------------------------------


def _levels(side: int) -> int:
    """How many ×2 upsamplings reach ``side`` from a base of at least 4 pixels."""
    levels = 0
    while side % 2 ** (levels + 1) == 0 and side // 2 ** (levels + 1) >= 4:
        levels += 1
    return levels


class Decoder(nn.Module):
    """G_prior: code -> linear -> feature map -> ×2 transposed convolutions -> tanh image."""

    def __init__(self, code_dim: int, item_shape: tuple[int, ...], width: int):
        super().__init__()
        c, side = item_shape[0], item_shape[-1]
        levels = _levels(side)
        self.base, self.c0 = side // 2 ** levels, width * 2 ** levels
        self.project = nn.Sequential(nn.Linear(code_dim, self.c0 * self.base ** 2),
                                     nn.BatchNorm1d(self.c0 * self.base ** 2), nn.ReLU())
        layers: list[nn.Module] = []
        ch = self.c0
        for _ in range(levels):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.Conv2d(ch, c, 3, 1, 1), nn.Tanh()]
        self.up = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.project(h).view(h.shape[0], self.c0, self.base, self.base)
        return self.up(x)


class ImageDiscriminator(nn.Module):
    def __init__(self, item_shape: tuple[int, ...], width: int):
        super().__init__()
        c, side = item_shape[0], item_shape[-1]
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * (side // 4) ** 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


# --- the prior ---------------------------------------------------------------------------------


@dataclass
class Prior:
    """A trained encoder/decoder pair and the code range seen on real data."""

    encoder: nn.Module
    decoder: Decoder
    encoder_kind: str
    item_shape: tuple[int, ...]
    code_dim: int
    code_lo: torch.Tensor    # (code_dim,) per-dimension minimum over the training data
    code_hi: torch.Tensor    # (code_dim,) maximum
    code_mean: torch.Tensor  # (code_dim,) mean
    info: dict[str, Any] = field(default_factory=dict)

    def eval(self) -> Prior:
        self.encoder.eval().requires_grad_(False)
        self.decoder.eval().requires_grad_(False)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h)

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
        tensors |= {"code_lo": self.code_lo.cpu(), "code_hi": self.code_hi.cpu(), "code_mean": self.code_mean.cpu()}
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
    encoder = _build_encoder(kind, item_shape, cfg, info, vgg_weights)
    enc_state = {k.removeprefix("encoder."): v for k, v in tensors.items() if k.startswith("encoder.")}
    try:
        decoder.load_state_dict({k.removeprefix("decoder."): v for k, v in tensors.items()
                                 if k.startswith("decoder.")})
        if kind != "vgg16":
            encoder.load_state_dict(enc_state)
    except RuntimeError as exc:
        raise PriorMismatchError(f"{path} does not match the {kind} encoder/decoder it declares: {exc}") from exc
    prior = Prior(encoder, decoder, kind, item_shape, code_dim, tensors["code_lo"], tensors["code_hi"],
                  tensors["code_mean"], info).eval()
    with torch.no_grad():
        got = prior.encode(torch.zeros(1, *item_shape)).shape[1]
    if got != code_dim:
        raise PriorMismatchError(f"{path}'s decoder reads codes of {code_dim} numbers but its {kind} encoder gives "
                                 f"{got}: the prior was trained with another encoder (or VGG input size)")
    prior.encoder.to(device)
    prior.decoder.to(device)
    prior.code_lo, prior.code_hi, prior.code_mean = (t.to(device) for t in
                                                     (prior.code_lo, prior.code_hi, prior.code_mean))
    return prior


def _build_encoder(kind: str, item_shape: tuple[int, ...], cfg: dict, info: dict,
                   vgg_weights: str | Path | None) -> nn.Module:
    if kind == "small":
        return SmallEncoder(item_shape, int(cfg["code_dim"]), int(cfg["width"]))
    if kind == "critic":
        from kgan_core.models import ModelSpec, build_critic

        spec = ModelSpec.from_dict(info["critic_spec"])
        return CriticEncoder(build_critic(spec, 1), info["critic_layer"])
    if kind == "vgg16":
        return load_vgg16_encoder(vgg_weights or cfg.get("vgg_weights"), int(cfg.get("vgg_input_size", 64)))
    raise PriorError(f"unknown encoder {kind!r}; encoders are {', '.join(ENCODERS)}")


# --- training ----------------------------------------------------------------------------------


class PriorConfig(BaseModel):
    """Everything that defines a prior's training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field("mnist", description="built-in name or path (as for kgan train)")
    data_root: str | None = None
    image_size: int | None = Field(32, ge=8, le=256)
    channels: Literal[1, 3] | None = None
    limit: int | None = Field(None, ge=2, le=10_000_000)
    holdout: int = Field(500, ge=1, le=100_000, description="last N images kept out of training, for PSNR/SSIM")
    encoder: Literal["small", "critic", "vgg16"] = "small"
    run: str | None = Field(None, description="run folder whose critic is the encoder (encoder='critic')")
    member: int = Field(0, ge=0, le=127)
    layer: str | None = Field(None, description="critic layer read as the code; default: the last convolution")
    vgg_weights: str | None = Field(None, description="VGG-16 ImageNet weights file (default: torchvision's cache)")
    vgg_input_size: int = Field(64, ge=32, le=256)
    code_dim: int = Field(128, ge=2, le=4096, description="code size of the small encoder")
    width: int = Field(32, ge=4, le=512)
    steps: int = Field(2000, ge=1, le=1_000_000)
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(1e-3, gt=0, le=1)
    pixel_weight: float = Field(1.0, ge=0)
    feature_weight: float = Field(0.1, ge=0)
    adversarial_weight: float = Field(0.001, ge=0)
    log_every: int = Field(100, ge=1)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: str = Field("cpu", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")


@dataclass
class PriorProgress:
    step: int
    total: int
    losses: dict[str, float]
    heldout_mse: float
    elapsed_s: float


def _fixed_encoder(config: PriorConfig, item_shape: tuple[int, ...]) -> tuple[nn.Module | None, dict]:
    """The encoder that is not trained (VGG-16 or a critic) and what to record about it; None for 'small'."""
    if config.encoder == "small":
        return None, {}
    if config.encoder == "vgg16":
        return load_vgg16_encoder(config.vgg_weights, config.vgg_input_size), {}
    if config.run is None:
        raise PriorError("encoder='critic' needs the run whose critic to use (run / --run)")
    from kgan_core.run import load_run

    run = load_run(config.run)
    member = run.member(config.member)
    if tuple(run.item_shape) != tuple(item_shape):
        raise PriorMismatchError(f"the run's critic reads {run.item_shape} images but the prior's data is "
                                 f"{item_shape}; set image_size / channels to match the run")
    names = list(member.critic.layer_names)
    layer = config.layer or (names[-2] if len(names) > 1 else names[-1])
    if layer not in names:
        from kgan_core.visualise.errors import LayerNameError

        raise LayerNameError(f"the critic has no layer {layer!r}; its layers are {', '.join(names)}")
    return CriticEncoder(member.critic, layer), {"critic_spec": run.spec.to_dict(), "critic_layer": layer,
                                                 "run": str(run.run_dir), "member": config.member}


def _ssim_psnr(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean SSIM and PSNR of uint8 renderings of model-range images (N, C, H, W)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from kgan_core.render import to_uint8

    a, b = to_uint8(x).numpy(), to_uint8(y).numpy()
    ssim = [structural_similarity(p, q, channel_axis=0, data_range=255) for p, q in zip(a, b, strict=True)]
    mse = float(((a.astype("float64") - b.astype("float64")) ** 2).mean())
    psnr = float("inf") if mse == 0 else float(peak_signal_noise_ratio(a, b, data_range=255))
    return float(sum(ssim) / len(ssim)), psnr


@dataclass
class PriorResult:
    prior: Prior
    path: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]


def train_prior(config: PriorConfig, out: str | Path, *, dataset=None,
                callback: Callable[[PriorProgress], bool | None] | None = None) -> PriorResult:
    """Train E (if it is the small encoder) and G_prior on the data, evaluate PSNR/SSIM on the
    held-out images, and save the prior to ``out``. Inputs are checked before training starts."""
    from kgan_core.data import load_dataset
    from kgan_core.train import resolve_device

    out = Path(out)
    if out.suffix != ".safetensors":
        raise PriorError(f"a prior is saved as a .safetensors file; got {out.name!r}")
    if config.encoder == "critic" and config.run is None:
        raise PriorError("encoder='critic' needs the run whose critic to use (run / --run)")
    device = resolve_device(config.device)
    data = dataset if dataset is not None else load_dataset(config.dataset, root=config.data_root,
                                                            image_size=config.image_size,
                                                            channels=config.channels, limit=config.limit)
    if data.kind != "images":
        raise PriorError("a prior models images; this dataset holds points")
    item_shape = tuple(data.item_shape)
    if item_shape[-1] % 4:
        raise PriorError(f"prior images need a side divisible by 4, got {item_shape[-1]}; set image_size")
    if data.n < config.holdout + 2:
        raise PriorError(f"the dataset has {data.n} images: too few to hold out {config.holdout}; lower holdout")
    encoder, extra = _fixed_encoder(config, item_shape)
    g = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if encoder is None:
            encoder = SmallEncoder(item_shape, config.code_dim, config.width)
        with torch.no_grad():
            code_dim = encoder.eval()(torch.zeros(1, *item_shape)).shape[1]
        decoder = Decoder(code_dim, item_shape, config.width)
        disc = ImageDiscriminator(item_shape, config.width)
    encoder, decoder, disc = encoder.to(device), decoder.to(device), disc.to(device)
    learn_encoder = config.encoder == "small"
    encoder.train(learn_encoder).requires_grad_(learn_encoder)
    x_all = data.to_model(data.x).to(device)
    train_x, held_x = x_all[:-config.holdout], x_all[-config.holdout:]
    params = list(decoder.parameters()) + (list(encoder.parameters()) if learn_encoder else [])
    opt = torch.optim.Adam(params, lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
    def frozen_encoder(x: torch.Tensor) -> torch.Tensor:
        # The feature loss must move the decoder, not E (else E could shrink to make it vanish).
        frozen = {n: p.detach() for n, p in encoder.named_parameters()}
        return torch.func.functional_call(encoder, frozen, (x,))

    def heldout_mse() -> float:
        decoder.eval(), encoder.eval()
        with torch.no_grad():
            mse = float(F.mse_loss(decoder(encoder(held_x)), held_x))
        decoder.train(), encoder.train(learn_encoder)
        return mse

    history: list[dict[str, float]] = [{"step": 0, "heldout_mse": heldout_mse()}]
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        factor = 1.0 - (step - 1) / config.steps  # linear decay: reconstructions settle at the end
        for o in (opt, opt_d):
            for group in o.param_groups:
                group["lr"] = config.lr * factor
        rows = torch.randint(train_x.shape[0], (config.batch_size,), generator=g).to(device)
        x = train_x[rows]
        h = encoder(x)
        rec = decoder(h)
        if config.adversarial_weight > 0:
            d_loss = F.softplus(-disc(x)).mean() + F.softplus(disc(rec.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        else:
            d_loss = torch.zeros(())
        pixel = F.mse_loss(rec, x)
        # Relative to the batch's own code size, so feature_weight means the same for a 64-number
        # code and an 8192-number VGG map, and stays the same while a trained encoder's codes grow.
        # (Normalising once, by the untrained encoder's scale, let the feature term swamp the pixel
        # term as the codes grew: held-out SSIM 0.51 instead of 0.82 on MNIST.)
        feature = F.mse_loss(frozen_encoder(rec), h.detach()) / h.detach().pow(2).mean().clamp_min(1e-8)
        adversarial = F.softplus(-disc(rec)).mean() if config.adversarial_weight > 0 else torch.zeros(())
        loss = config.pixel_weight * pixel + config.feature_weight * feature + config.adversarial_weight * adversarial
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.log_every == 0 or step == config.steps:
            losses = {"pixel": pixel.item(), "feature": feature.item(), "adversarial": adversarial.item(),
                      "d_loss": d_loss.item()}
            entry = {"step": step, **losses, "heldout_mse": heldout_mse()}
            history.append(entry)
            if callback is not None and callback(PriorProgress(step, config.steps, losses, entry["heldout_mse"],
                                                               time.perf_counter() - started)) is False:
                break
    encoder.eval().requires_grad_(False)
    decoder.eval().requires_grad_(False)
    with torch.no_grad():
        codes = torch.cat([encoder(chunk) for chunk in train_x.split(512)])
        held_rec = torch.cat([decoder(encoder(chunk)) for chunk in held_x.split(512)])
    ssim, psnr = _ssim_psnr(held_rec.cpu(), held_x.cpu())
    metrics = {"heldout_ssim": ssim, "heldout_psnr": psnr, "heldout_mse": float(F.mse_loss(held_rec, held_x)),
               "heldout_images": int(held_x.shape[0]), "train_seconds": time.perf_counter() - started}
    info = {"config": config.model_dump() | {"code_dim": code_dim}, "metrics": metrics, "history": history,
            "dataset": data.name, **extra}
    prior = Prior(encoder.cpu(), decoder.cpu(), config.encoder, item_shape, code_dim, codes.min(0).values.cpu(),
                  codes.max(0).values.cpu(), codes.mean(0).cpu(), info).eval()
    prior.save(out)
    return PriorResult(prior, out, metrics, history)


def code_psnr_ssim(prior: Prior, images: torch.Tensor) -> tuple[float, float]:
    """(PSNR, SSIM) of G_prior(E(x)) against x for model-range images (N, C, H, W)."""
    with torch.no_grad():
        rec = prior.decode(prior.encode(images))
    ssim, psnr = _ssim_psnr(rec, images)
    return psnr, ssim


class FeatureRealism:
    """Distance of an image to its nearest real image in E's feature space, divided by the
    median nearest-neighbour distance among the real images themselves (1 ≈ as close to the
    data as real images are to each other). Real features are computed once."""

    def __init__(self, prior: Prior, real: torch.Tensor):
        self.prior = prior
        with torch.no_grad():
            self.real = torch.cat([prior.encode(chunk).flatten(1) for chunk in real.split(512)])
        rr = torch.cdist(self.real, self.real)
        rr.fill_diagonal_(math.inf)
        self.scale = rr.min(1).values.median().clamp_min(1e-12)

    def ratio(self, images: torch.Tensor) -> list[float]:
        with torch.no_grad():
            feats = self.prior.encode(images).flatten(1)
        return (torch.cdist(feats, self.real).min(1).values / self.scale).tolist()


def feature_nn_ratio(prior: Prior, images: torch.Tensor, real: torch.Tensor) -> list[float]:
    """``FeatureRealism(prior, real).ratio(images)`` for a one-off comparison."""
    return FeatureRealism(prior, real).ratio(images)
