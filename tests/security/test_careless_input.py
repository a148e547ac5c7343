"""Careless input and leftovers: booleans are no numbers, a bad Range header is a problem
document, a re-claimed job's progress is its current attempt's, and an upload's .part file
left by a killed API process is swept."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.service.conftest import TINY_TRAIN, assert_problem

PROBLEM_JSON = "application/problem+json"


@pytest.mark.parametrize("params", [
    {**TINY_TRAIN, "k": True}, {**TINY_TRAIN, "steps": False}, {**TINY_TRAIN, "lr_g": True},
])
def test_booleans_are_not_numbers_in_a_train_job(client, alice, params):
    problem = assert_problem(client.post("/v1/jobs", json={"kind": "train", "params": params},
                                         headers=alice.headers), 422)
    assert "not true/false" in problem["detail"]


def test_booleans_are_not_numbers_in_a_visualise_job(client, trained):
    for params in ({"member": True}, {"seed": True}):
        body = {"kind": "visualise", "params": {"model_id": trained.model_id, "what": "samples", **params}}
        assert_problem(client.post("/v1/jobs", json=body, headers=trained.user.headers), 422)


def test_a_bad_or_unsatisfiable_range_is_a_problem_document(client, trained):
    url = f"/v1/artifacts/{trained.artifact_ids[0]}"
    size = len(client.get(url, headers=trained.user.headers).content)
    for header, status in (("bytes=abc", 400), ("chars=0-1", 400), (f"bytes={size + 10}-", 416)):
        r = client.get(url, headers={**trained.user.headers, "Range": header})
        assert r.status_code == status and r.headers["content-type"] == PROBLEM_JSON, (header, r.text)
        if status == 416:
            assert r.headers["content-range"] == f"bytes */{size}"
    r = client.get(url, headers={**trained.user.headers, "Range": "bytes=0-9"})
    assert r.status_code == 206 and len(r.content) == min(10, size)


def test_a_reclaimed_job_shows_no_progress_of_the_dead_attempt(client, alice, settings):
    from kgan_service.db import Database, utcnow
    from kgan_service.models import Job
    from worker.runner import JobRunner

    job = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers).json()
    runner = JobRunner(settings)
    first = runner.claim(job["id"])
    assert runner.fenced(first, step=7, eta_s=30.0, progress={"d_loss": [0.5, 0.4], "attempt": 1, "reported": True})
    db = Database(settings)
    try:
        with db.session() as s:  # the first attempt's worker died: its lease ran out
            s.execute(update(Job).where(Job.id == job["id"]).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    finally:
        db.dispose()
    second = runner.claim(job["id"])
    assert second is not None and second.attempt == 2
    body = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert body["attempt"] == 2
    assert body["progress"]["reported"] is False and body["progress"]["attempt"] is None
    assert body["progress"]["d_loss"] is None and body["progress"]["eta_s"] is None
    runner.fail(second, "Stopped by the test", "done")


def test_stale_upload_parts_are_swept_at_start_and_while_running(tmp_path, request, backend):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.migrate import upgrade
    from tests._procs import wait_for
    from tests.service.conftest import make_settings

    settings = make_settings(tmp_path, backend, request, stale_upload_s=2.0, reconcile_interval_s=0.2)
    if backend == "postgres":  # the shared session database already has its schema
        settings = settings.model_copy(update={"database_url": None})
    upgrade(settings.db_url)
    uploads = settings.artifacts / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    dead = uploads / "killed-mid-upload.part"
    dead.write_bytes(b"half an archive")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    fresh = uploads / "in-progress.part"
    fresh.write_bytes(b"being written")
    with TestClient(create_app(settings)):
        assert not dead.exists()  # swept at start
        assert fresh.exists()  # an upload in progress is left alone
        wait_for(lambda: not fresh.exists(), timeout=60)  # once unwritten past stale_upload_s
