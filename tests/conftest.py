"""Fixtures every test package can use: where the real data the repository carries lives, and
a real S3-protocol server (tests/_s3.py) for the tests that run on the S3 store."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from kgan_core.data.builtin import BUNDLED_MNIST
from tests._s3 import S3Server, s3_server

# The compose-spec JSON schema, kept in the repository so the container tests need nothing beside it.
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The 10,000 real MNIST test digits (IDX) that ship inside kgan_core."""
    images = BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz"
    assert images.is_file(), f"expected the bundled MNIST digits in {BUNDLED_MNIST}"
    return BUNDLED_MNIST


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_bucket(s3: S3Server) -> str:
    return s3.create_bucket()


@pytest.fixture(scope="session")
def s3_store(s3, s3_bucket) -> Iterator[str]:
    """The S3 store of the ``postgres`` backend. Its endpoint and credentials go into this
    process's environment, where open_store and every process the tests start read them."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3.env.items():
            env.setenv(name, value)
        yield f"s3://{s3_bucket}"
