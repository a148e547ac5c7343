"""The judge's two small networks: a CNN classifier (labelled data) and a convolutional
autoencoder (unlabelled data). Both share one convolutional trunk and expose the same
``features`` (a FEATURE_DIM vector per image), so every metric works on either.

Inputs are JUDGE_SIZE x JUDGE_SIZE images in the model range [-1, 1]: 32 px keeps a
classifier small enough to train in a CPU-minute and is enough to tell a digit, a garment
or a face from a blur; larger images are shrunk (antialiased) before they reach the trunk.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

JUDGE_SIZE = 32
# Features are what Fréchet distance and k-NN precision/recall compare; 64 dimensions keep
# the covariance estimable from a tile's few hundred images (FD needs N well above D).
FEATURE_DIM = 64


def fit_input(images: torch.Tensor, channels: int, size: int = JUDGE_SIZE) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, channels, size, size): grey<->RGB and antialiased resize."""
    if images.ndim != 4:
        raise ValueError(f"the judge takes images of shape (N, C, H, W), got {tuple(images.shape)}")
    x = images.float()
    if x.shape[1] != channels:
        if x.shape[1] == 3 and channels == 1:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        elif x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        else:
            raise ValueError(f"the judge was trained on {channels}-channel images; cannot judge "
                             f"{x.shape[1]}-channel ones")
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return x


class Trunk(nn.Module):
    """Three conv + pool stages, 32 -> 4 px, then a linear layer to the feature vector."""

    def __init__(self, channels: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.to_features = nn.Linear(64 * (JUDGE_SIZE // 8) ** 2, FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_features(self.convs(x).flatten(1))


class Classifier(nn.Module):
    """Trunk -> features (the penultimate layer, before its ReLU) -> class logits.

    Features are taken before the ReLU: after it, noise images map to a near-zero corner
    that the k-NN balls of real outliers reach, and k-NN precision rates noise as real.
    """

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.trunk = Trunk(channels)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(F.relu(self.features(x))))


class Autoencoder(nn.Module):
    """Trunk -> FEATURE_DIM code (the features) -> transposed convolutions back to the image."""

    def __init__(self, channels: int):
        super().__init__()
        self.trunk = Trunk(channels)
        side = JUDGE_SIZE // 8
        self.from_code = nn.Linear(FEATURE_DIM, 64 * side * side)
        self.side = side
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1), nn.Tanh(),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.features(x)
        return self.decoder(self.from_code(code).view(-1, 64, self.side, self.side))
