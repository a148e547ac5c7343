"""Training a prior: E (when it is the small encoder) and G_prior on the data.

Losses: pixels, features (||E(G_prior(h)) − h||), a variational term for the small encoder
(its codes spread like a unit normal, so random codes are codes the decoder knows) or code
noise for a fixed encoder (VGG-16, a critic), and an adversarial loss on both the
reconstructions and the decodes of random codes — the decoder is trained to turn any code
in the region into an image like the data, not only the codes of real images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from kgan_core.prior.decoder import Decoder, ImageDiscriminator
from kgan_core.prior.encoders import CriticEncoder, SmallEncoder, load_vgg16_encoder
from kgan_core.prior.errors import PriorError, PriorMismatchError
from kgan_core.prior.metrics import ssim_psnr
from kgan_core.prior.model import Prior
from kgan_core.prior.region import QUANTILE, CodeRegion

# The region's per-dimension bounds, in spreads, for normal codes: the QUANTILE and 1 − QUANTILE points.
BOUND_SD = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1.0 - QUANTILE)))


class PriorConfig(BaseModel):
    """Everything that defines a prior's training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field("mnist", description="built-in name or path (as for kgan train)")
    data_root: str | None = None
    image_size: int | None = Field(32, ge=8, le=256)
    channels: Literal[1, 3] | None = None
    limit: int | None = Field(None, ge=2, le=10_000_000)
    holdout: int = Field(500, ge=1, le=100_000,
                         description="N images, drawn at random (by seed), kept out of training for PSNR/SSIM")
    encoder: Literal["small", "critic", "vgg16"] = "small"
    run: str | None = Field(None, description="run folder whose critic is the encoder (encoder='critic')")
    member: int = Field(0, ge=0, le=127)
    layer: str | None = Field(None, description="critic layer read as the code; default: the last convolution")
    vgg_weights: str | None = Field(None, description="VGG-16 ImageNet weights file (default: torchvision's cache)")
    vgg_input_size: int = Field(64, ge=32, le=256)
    code_dim: int = Field(128, ge=2, le=4096, description="code size of the small encoder")
    width: int = Field(32, ge=4, le=512)
    steps: int = Field(2500, ge=1, le=1_000_000)
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(1e-3, gt=0, le=1)
    pixel_weight: float = Field(1.0, ge=0)
    feature_weight: float = Field(0.1, ge=0)
    adversarial_weight: float = Field(0.01, ge=0, description="adversarial loss on reconstructions")
    # Random codes decode to data-like images only when the real codes fill the region they are
    # drawn from and the decoder has learnt the whole region, edges included (activation
    # maximisation goes to the edges). At a KL weight of 0.02 the codes kept ~360 nats in all and
    # random codes decoded to scribbles on 28 px digits; at 1.0 (~16 nats, a standard VAE's), a
    # stronger adversary on random codes and random codes out to the region's bounds they decode to
    # readable digits (BENCHMARKS.md §Visualisation), at the cost of reconstruction (not the criterion).
    random_code_weight: float = Field(0.3, ge=0, description="adversarial loss on decodes of random codes")
    kl_weight: float = Field(1.0, ge=0, description="small encoder: pull of each code dimension towards a "
                                                   "unit normal (per dimension, averaged)")
    random_code_spread: float = Field(2.0, ge=1, le=10, description="random codes in training are drawn with a "
                                      "spread from 1 to this many times the codes' own, then clipped to the "
                                      "region's per-dimension bounds, so that codes at the region's edge decode "
                                      "to images like the data too")
    code_noise: float = Field(0.5, ge=0, le=10, description="fixed encoders: noise added to codes in training, "
                                                          "in units of each dimension's spread")
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


@dataclass
class PriorResult:
    prior: Prior
    path: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]


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


def holdout_split(n: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows): a random split, so the hold-out is like the rest of the data
    (the last rows of a folder can all be one kind of image)."""
    if n < holdout + 2:
        raise PriorError(f"the dataset has {n} images: too few to hold out {holdout} and train on the rest; "
                         f"lower the hold-out to at most {max(n - 2, 1)} (kgan train-prior ... --set holdout=N, "
                         "or holdout in a train_prior job's params)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[holdout:], order[:holdout]


class _RunningSpread:
    """Per-dimension mean and spread of codes, averaged over recent batches."""

    def __init__(self, momentum: float = 0.05):
        self.momentum = momentum
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def update(self, codes: torch.Tensor) -> None:
        mean, std = codes.mean(0), codes.std(0)
        if self.mean is None:
            self.mean, self.std = mean, std
        else:
            self.mean = (1 - self.momentum) * self.mean + self.momentum * mean
            self.std = (1 - self.momentum) * self.std + self.momentum * std


class _CodeSampler:
    """Codes as the decoder is trained on them: the small encoder's variational draws, or a fixed
    encoder's code plus noise; and random codes spread like those."""

    def __init__(self, encoder: nn.Module, variational: bool, code_noise: float, random_spread: float):
        self.encoder, self.variational, self.code_noise = encoder, variational, code_noise
        self.random_spread = random_spread
        self.real, self.drawn = _RunningSpread(), _RunningSpread()

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(code of each image, the code drawn around it, KL per dimension averaged) for a batch."""
        if self.variational:
            mean, log_var = self.encoder.distribution(x)
            drawn = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
            kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).mean()
        else:
            with torch.no_grad():
                mean = self.encoder(x)
            self.real.update(mean)
            drawn = mean + self.code_noise * self.real.std * torch.randn_like(mean)
            kl = torch.zeros((), device=x.device)
        self.drawn.update(drawn.detach())
        return mean, drawn, kl

    def random(self, n: int) -> torch.Tensor:
        """n codes around the drawn codes' recent mean: each code normal with a spread between 1 and
        ``random_spread`` times theirs, per dimension, clipped to the bounds the code region allows."""
        mean, std = self.drawn.mean, self.drawn.std
        spread = 1.0 + (self.random_spread - 1.0) * torch.rand(n, 1, device=mean.device)
        u = (spread * torch.randn(n, mean.shape[0], device=mean.device)).clamp(-BOUND_SD, BOUND_SD)
        return mean + std * u


def train_prior(config: PriorConfig, out: str | Path, *, dataset=None,
                callback: Callable[[PriorProgress], bool | None] | None = None) -> PriorResult:
    """Train E (if it is the small encoder) and G_prior on the data, evaluate PSNR/SSIM on the
    held-out images, and save the prior to ``out``. Inputs are checked before training starts."""
    from kgan_core.config import resolve_device
    from kgan_core.data import load_dataset

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
    train_rows, held_rows = holdout_split(data.n, config.holdout, config.seed)
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
    train_x, held_x = x_all[train_rows.to(device)], x_all[held_rows.to(device)]
    sampler = _CodeSampler(encoder, learn_encoder, config.code_noise, config.random_code_spread)
    params = list(decoder.parameters()) + (list(encoder.parameters()) if learn_encoder else [])
    opt = torch.optim.Adam(params, lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
    adversarial_on = config.adversarial_weight > 0 or config.random_code_weight > 0

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
    started, cpu_started = time.perf_counter(), time.process_time()
    for step in range(1, config.steps + 1):
        factor = 1.0 - (step - 1) / config.steps  # linear decay: reconstructions settle at the end
        for o in (opt, opt_d):
            for group in o.param_groups:
                group["lr"] = config.lr * factor
        rows = torch.randint(train_x.shape[0], (config.batch_size,), generator=g).to(device)
        x = train_x[rows]
        mean, drawn, kl = sampler.codes(x)
        # One decoder call for both kinds of code, so batch norm sees them together.
        decoded = decoder(torch.cat([drawn, sampler.random(x.shape[0])]))
        rec, from_random = decoded[: x.shape[0]], decoded[x.shape[0]:]
        if adversarial_on:
            d_loss = (F.softplus(-disc(x)).mean() + 0.5 * F.softplus(disc(rec.detach())).mean()
                      + 0.5 * F.softplus(disc(from_random.detach())).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            adversarial = F.softplus(-disc(rec)).mean()
            random_adversarial = F.softplus(-disc(from_random)).mean()
        else:
            d_loss = adversarial = random_adversarial = torch.zeros((), device=device)
        pixel = F.mse_loss(rec, x)
        # Relative to the batch's own code size, so feature_weight means the same for a 64-number
        # code and an 8192-number VGG map, and stays the same while a trained encoder's codes grow.
        target = mean.detach()
        feature = F.mse_loss(frozen_encoder(rec), target) / target.pow(2).mean().clamp_min(1e-8)
        loss = (config.pixel_weight * pixel + config.feature_weight * feature + config.kl_weight * kl
                + config.adversarial_weight * adversarial + config.random_code_weight * random_adversarial)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % config.log_every == 0 or step == config.steps:
            losses = {"pixel": pixel.item(), "feature": feature.item(), "kl": kl.item(),
                      "adversarial": adversarial.item(), "random_adversarial": random_adversarial.item(),
                      "d_loss": d_loss.item()}
            entry = {"step": step, **losses, "heldout_mse": heldout_mse()}
            history.append(entry)
            if callback is not None and callback(PriorProgress(step, config.steps, losses, entry["heldout_mse"],
                                                               time.perf_counter() - started)) is False:
                break
    encoder.eval().requires_grad_(False)
    decoder.eval().requires_grad_(False)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        codes = torch.cat([sampler.codes(chunk)[1] for chunk in train_x.split(512)])
        held_rec = torch.cat([decoder(encoder(chunk)) for chunk in held_x.split(512)])
    ssim, psnr = ssim_psnr(held_rec.cpu(), held_x.cpu())
    metrics = {"heldout_ssim": ssim, "heldout_psnr": psnr, "heldout_mse": float(F.mse_loss(held_rec, held_x)),
               "heldout_images": int(held_x.shape[0]), "train_seconds": time.perf_counter() - started,
               "train_cpu_seconds": time.process_time() - cpu_started}
    info = {"config": config.model_dump() | {"code_dim": code_dim}, "metrics": metrics, "history": history,
            "dataset": data.name, "heldout_rows": held_rows.tolist(), **extra}
    prior = Prior(encoder.cpu(), decoder.cpu(), config.encoder, item_shape, code_dim,
                  CodeRegion.of(codes.cpu()), info).eval()
    prior.save(out)
    return PriorResult(prior, out, metrics, history)
