"""The prior's encoders E: image -> code.

- ``small``: a small convolutional encoder trained with the decoder on the data itself (the
  default; works offline). It is variational: besides the code it gives a per-dimension
  spread, and the decoder is trained on codes drawn from it, so the codes between and around
  the real ones decode to images too;
- ``critic``: a trained member's own critic, read at one of its layers;
- ``vgg16``: VGG-16 up to conv5_3 with ImageNet weights, read from a local file or
  torchvision's cache (never downloaded; a clear error says where to put the file).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from kgan_core.prior.errors import EncoderWeightsMissing, PriorError

ENCODERS: tuple[str, ...] = ("small", "critic", "vgg16")
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SmallEncoder(nn.Module):
    """Three strided convolutions and a linear layer giving a code's mean and log-variance."""

    def __init__(self, item_shape: tuple[int, ...], code_dim: int, width: int):
        super().__init__()
        c, side = item_shape[0], item_shape[-1]
        self.code_dim = code_dim
        self.convs = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1), nn.LeakyReLU(0.2),
        )
        self.code = nn.Linear(4 * width * (side // 4) ** 2, 2 * code_dim)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of the code of each image."""
        mean, log_var = self.code(self.convs(x).flatten(1)).chunk(2, dim=1)
        return mean, log_var.clamp(-12.0, 6.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(x)[0]


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
