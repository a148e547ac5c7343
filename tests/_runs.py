"""Tiny trained runs and priors shared by the visualisation tests, built once per session.

Kept in a plain module (imported by the tests that need it, not by every test) and cached in
one temporary folder that is removed when the test session ends.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from functools import cache
from pathlib import Path

import torch

_root = Path(tempfile.mkdtemp(prefix="kgan-vis-tests-"))
atexit.register(shutil.rmtree, _root, ignore_errors=True)

TINY_RUN = dict(dataset="mnist", image_size=16, limit=300, k=3, width=4, latent_dim=8,
                batch_size=16, n_critic=1, steps=20, rounds=1, log_every=5, checkpoint_every=100, seed=0, device="cpu")
TINY_PRIOR = dict(dataset="mnist", image_size=16, limit=300, holdout=50, code_dim=16,
                  width=8, steps=60, batch_size=32, log_every=20, seed=0)


@contextlib.contextmanager
def one_thread():
    """Tiny tensors on a shared, busy machine: one thread avoids OpenMP threads spinning against
    each other (measured: 15 s -> 1 s for one activation-maximisation test). Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@cache
def tiny_run_dir() -> Path:
    from kgan_core.train import TrainConfig, train

    run_dir = _root / "run"
    with one_thread():
        train(TrainConfig(**TINY_RUN), run_dir)
    return run_dir


@cache
def tiny_prior_path() -> Path:
    from kgan_core.prior import PriorConfig, train_prior

    path = _root / "prior.safetensors"
    with one_thread():
        train_prior(PriorConfig(**TINY_PRIOR), path)
    return path


@cache
def tiny_points_run_dir() -> Path:
    from kgan_core.train import TrainConfig, train

    run_dir = _root / "points"
    with one_thread():
        train(TrainConfig(dataset="ring8", n_points=400, k=3, width=16, batch_size=32, n_critic=1, steps=10,
                          rounds=1, log_every=5, seed=0, device="cpu"), run_dir)
    return run_dir
