"""Every store test runs on both backends: ``local`` (a folder) and ``s3`` (a real S3-protocol
server on 127.0.0.1, see tests/_s3.py). Each test gets its own folder or its own key prefix."""

from __future__ import annotations

import uuid

import pytest

from kgan_service.store import ArtifactObjects, open_store
from tests._s3 import S3Server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch) -> dict[str, str]:
    """The server's endpoint and credentials in this process's environment, as a deployment sets them."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3.env


@pytest.fixture(params=["local", "s3"])
def objects(request, tmp_path) -> ArtifactObjects:
    if request.param == "local":
        return open_store((tmp_path / "artifacts").as_uri())
    env = request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/t-{uuid.uuid4().hex[:8]}", env)
