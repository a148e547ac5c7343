"""/readyz checks the configured artifact store: the default folder, a bucket that takes objects,
and a bucket that is not there (503, saying what to do)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from kgan_service.settings import Settings


def _artifact_check(settings: Settings) -> tuple[int, str]:
    # No lifespan (no `with`): only the request is wanted, not the reconciler. The database is
    # not migrated and no broker runs, so those checks fail; this test reads the store's.
    answer = TestClient(create_app(settings)).get("/readyz")
    return answer.status_code, answer.json()["checks"]["artifact_store"]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_readyz_reports_a_working_store(backend, tmp_path, request):
    url = None
    if backend == "s3":
        request.getfixturevalue("s3_env")
        url = f"s3://{request.getfixturevalue('s3_bucket')}/readyz"
    _, check = _artifact_check(Settings(data_dir=tmp_path, artifact_url=url))
    assert check == "ok"


def test_readyz_reports_a_missing_bucket(tmp_path, s3_env, s3_bucket):
    status, check = _artifact_check(Settings(data_dir=tmp_path, artifact_url=f"s3://{s3_bucket}-gone/p"))
    assert status == 503
    assert check.startswith("failed: ") and f"bucket '{s3_bucket}-gone' does not exist" in check
    assert "create it or correct KGAN_ARTIFACT_URL" in check
