"""Image parameterisations for activation maximisation (after Lucid / Lucent ``param``).

A parameterisation owns the tensors the optimiser changes and turns them into images in the
model range [-1, 1], shaped (k, B, C, H, W): one batch of B images per critic member.

- ``pixel``: the pixels themselves, clamped to the model range after every step (the
  thesis' baseline).
- ``fft``: the image's Fourier spectrum, scaled by 1/frequency, so that gradient steps
  favour low frequencies; RGB images are also colour-decorrelated. Pixel-space gradient
  ascent is dominated by high-frequency patterns a critic responds to, which is why the
  thesis' pixel images looked like noise; this parameterisation removes that bias.
- ``prior_code`` (see ``kgan_core.prior``): the input code of a learned image decoder.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

# Lucid's colour correlation (ImageNet), square-rooted: decorrelated channels -> RGB.
_COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_MAX_NORM = float(torch.linalg.norm(_COLOR_CORRELATION_SVD_SQRT, dim=0).max())


class ImageParam(ABC):
    """Base: ``params`` are optimised, ``image()`` renders them, ``after_step()`` projects."""

    params: list[torch.Tensor]

    @abstractmethod
    def image(self) -> torch.Tensor:
        """The current image, (1, C, H, W) in the model's range."""

    def after_step(self) -> None:  # noqa: B027 - optional hook; most parameterisations need none
        """Called after every optimiser step (e.g. to keep pixels in range)."""


class PixelParam(ImageParam):
    def __init__(self, shape: tuple[int, ...], generator: torch.Generator, sd: float = 0.1,
                 device: torch.device | str = "cpu"):
        self.pixels = (sd * torch.randn(shape, generator=generator)).to(device).requires_grad_(True)
        self.params = [self.pixels]

    def image(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def after_step(self) -> None:
        self.pixels.clamp_(-1.0, 1.0)


def _spectrum_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power


class FFTParam(ImageParam):
    def __init__(self, shape: tuple[int, ...], generator: torch.Generator, sd: float = 0.01,
                 decay_power: float = 1.0, device: torch.device | str = "cpu"):
        *lead, c, h, w = shape
        self.shape, self.channels = tuple(shape), c
        spectrum = sd * torch.randn(*lead, c, h, w // 2 + 1, 2, generator=generator)
        self.spectrum = spectrum.to(device).requires_grad_(True)
        self.scale = _spectrum_scale(h, w, decay_power).to(device)[..., None]
        self.params = [self.spectrum]

    def image(self) -> torch.Tensor:
        h, w = self.shape[-2:]
        scaled = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        x = torch.fft.irfft2(scaled, s=(h, w), norm="ortho") / 4.0
        if self.channels == 3:
            matrix = (_COLOR_CORRELATION_SVD_SQRT / _MAX_NORM).to(x.device)
            x = torch.einsum("...chw,dc->...dhw", x, matrix)
        # Lucid maps to [0, 1] with a sigmoid; 2·sigmoid − 1 is the same map onto [-1, 1].
        return 2.0 * torch.sigmoid(x * 4.0) - 1.0


def pixel(shape: tuple[int, ...], generator: torch.Generator, **kwargs) -> PixelParam:
    return PixelParam(shape, generator, **kwargs)


def fft(shape: tuple[int, ...], generator: torch.Generator, **kwargs) -> FFTParam:
    return FFTParam(shape, generator, **kwargs)


def image_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-3])


class PriorCodeParam(ImageParam):
    """DGN-AM: optimise the input code of a learned prior's decoder instead of pixels.

    The code is kept standardised, code = mean + std · u (``kgan_core.prior.region``), so one
    learning rate suits every code dimension, and after every step u is moved back into the
    prior's region: per-dimension bounds read off the real codes and a bound on the code's
    length. The search starts at a random code of the region (``sd``: its spread in units of
    the real codes' spread), and nothing pulls it towards the mean code: with the earlier
    decay towards the mean, activation maximisation ended at the mean code, which decoded
    to a nearly black image.
    """

    def __init__(self, prior, lead: tuple[int, ...], generator: torch.Generator, sd: float = 1.0):
        self.prior, self.lead, self.region = prior, tuple(lead), prior.region
        self.u = self.region.sample_standardised(self.lead, generator, sd).requires_grad_(True)
        self.params = [self.u]

    def code(self) -> torch.Tensor:
        return self.region.code(self.u)

    def image(self) -> torch.Tensor:
        flat = self.code().reshape(-1, self.prior.code_dim)
        out = self.prior.decode(flat)
        return out.reshape(*self.lead, *out.shape[1:])

    @torch.no_grad()
    def after_step(self) -> None:
        self.u.copy_(self.region.project_standardised(self.u))


def prior_code(prior, lead: tuple[int, ...], generator: torch.Generator, **kwargs) -> PriorCodeParam:
    return PriorCodeParam(prior, lead, generator, **kwargs)
