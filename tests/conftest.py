"""Shared fixtures: where the real data this machine ships lives."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    """The 10,000 real MNIST test digits (IDX) that ship beside the repository."""
    path = SHARED / "data" / "mnist"
    assert path.is_dir(), f"expected the shared MNIST digits in {path}"
    return path
