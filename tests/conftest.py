"""Fixtures every test package can use: where the real data the repository carries lives."""

from pathlib import Path

import pytest

from kgan_core.data.builtin import BUNDLED_MNIST

# The compose-spec JSON schema, kept in the repository so the container tests need nothing beside it.
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The 10,000 real MNIST test digits (IDX) that ship inside kgan_core."""
    images = BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz"
    assert images.is_file(), f"expected the bundled MNIST digits in {BUNDLED_MNIST}"
    return BUNDLED_MNIST
