"""A trained run, loaded for sampling and visualisation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from kgan_core import checkpoint as ckpt_io
from kgan_core.config import TrainConfig, dataset_for
from kgan_core.data import Dataset
from kgan_core.data.files import DEFAULT_MAX_PIXELS
from kgan_core.models import Critic, Generator, ModelSpec, build_critic, build_generator
from kgan_core.nn import take_member
from kgan_core.sampling import sample_ensemble


class MemberIndexError(IndexError, ValueError):
    """A member index outside 0..k-1."""


@dataclass
class Member:
    """Member j's own networks as k=1 stacks: inputs and outputs keep a leading axis of 1."""

    index: int
    generator: Generator
    critic: Critic
    point_mass: torch.Tensor  # (F,) flattened, model range
    tile_share: float


class Run:
    def __init__(self, run_dir: Path, saved: ckpt_io.Checkpoint, device: torch.device,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.run_dir, self.device, self.max_pixels = Path(run_dir), device, max_pixels
        self.config = TrainConfig.model_validate(saved.config)
        self.spec = ModelSpec.from_dict(saved.spec)
        self.step = saved.step
        self.k = self.config.k
        self.generator = build_generator(self.spec, self.k)
        self.critic = build_critic(self.spec, self.k)
        self.generator.load_state_dict(saved.generator)
        self.critic.load_state_dict(saved.critic)
        self.generator.to(device).eval().requires_grad_(False)
        self.critic.to(device).eval().requires_grad_(False)
        self.point_masses = saved.masses.to(device)
        self.assignment = saved.assignment
        self.metrics: dict[str, Any] = dict(saved.state.get("metrics", {}))
        self.history: list[dict[str, Any]] = list(saved.state.get("history", []))
        self.events: list[str] = list(saved.state.get("events", []))
        if self.config.assignment == "none":
            self.tile_sizes = [int(self.assignment.numel())] * self.k
        else:
            self.tile_sizes = torch.bincount(self.assignment, minlength=self.k).tolist()
        total = sum(self.tile_sizes)
        self.tile_shares = [s / total for s in self.tile_sizes]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.spec.item_shape

    @property
    def dataset_kind(self) -> str:
        return "points" if len(self.spec.item_shape) == 1 else "images"

    @cached_property
    def dataset(self) -> Dataset:
        """The training data, reloaded from the run's config (rows line up with the tiles)."""
        return dataset_for(self.config, max_pixels=self.max_pixels)

    def check_member(self, member: int) -> int:
        if not 0 <= member < self.k:
            raise MemberIndexError(f"member {member} does not exist: this run has k={self.k} members, "
                                   f"numbered 0 to {self.k - 1}")
        return member

    def member(self, j: int) -> Member:
        self.check_member(j)
        return Member(j, take_member(self.generator, j).eval(), take_member(self.critic, j).eval(),
                      self.point_masses[j], self.tile_shares[j])

    def latent(self, n: int, seed: int) -> torch.Tensor:
        """(n, latent) — the same z for a seed, whichever member it is fed to."""
        g = torch.Generator(self.device).manual_seed(seed)
        return torch.randn(n, self.spec.latent_dim, generator=g, device=self.device)

    @torch.no_grad()
    def sample_members(self, n: int, seed: int = 0) -> torch.Tensor:
        """(k, n, ...) samples: every member fed the same n latent vectors."""
        z = self.latent(n, seed)
        return self.generator(z.expand(self.k, -1, -1).contiguous())

    @torch.no_grad()
    def sample(self, n: int, *, member: int | None = None, seed: int = 0) -> torch.Tensor:
        """(n, ...) samples in the model's range, from one member or from the whole ensemble
        (member chosen with probability equal to its tile share)."""
        if member is not None:
            self.check_member(member)
            z = self.latent(n, seed)
            return take_member(self.generator, member).eval()(z[None])[0]
        return sample_ensemble(self.generator, self.tile_shares, self.spec.latent_dim, n, seed, self.device)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Run:
    """``max_pixels``: the pixel limit its training data was loaded with (a server's
    KGAN_MAX_IMAGE_PIXELS), so pictures that reload the data accept what training accepted."""
    saved = ckpt_io.load_checkpoint(Path(run_dir))
    return Run(Path(run_dir), saved, torch.device(device), max_pixels)
