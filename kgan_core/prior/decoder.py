"""The prior's decoder G_prior (code -> image) and the discriminator that sharpens it."""

from __future__ import annotations

import torch
from torch import nn


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
    """Tells real images from decoded ones; only used while the prior trains."""

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
