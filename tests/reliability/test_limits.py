"""Per-owner caps and the job time limit: a request over a cap is a 4xx problem that says what
is in use, what the cap is and what to do; a job over its time limit fails, keeping its
checkpoint. The API runs in-process (TestClient) against a real database and broker; the time
limit is enforced by the real job runner."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from api.keys import new_key
from kgan_service.jobs import reconcile_once
from kgan_service.settings import Settings
from tests.reliability.conftest import FAST, Stack
from tests.service.conftest import User, assert_problem
from worker.runner import JobRunner


@pytest.fixture
def make_client(backend, tmp_path, database_url, artifact_url) -> Iterator:
    """An in-process API with the given settings over this test's own database and broker."""
    from api.main import create_app

    opened: list[tuple[Stack, TestClient]] = []

    def make(**overrides) -> tuple[Stack, TestClient]:
        stack = Stack(backend, tmp_path / f"s{len(opened)}", database_url, reconcile_interval_s=0,
                      **{"artifact_url": artifact_url, **overrides})
        stack.start_broker()
        client = TestClient(create_app(stack.settings))
        client.__enter__()
        opened.append((stack, client))
        return stack, client

    yield make
    for stack, client in opened:
        client.__exit__(None, None, None)
        stack.close()


def user(settings: Settings) -> User:
    import uuid

    name = f"u-{uuid.uuid4().hex[:8]}"
    return User(name, new_key(settings, name).token)


def post_job(client, who: User, key: str | None = None, **params):
    headers = {**who.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/jobs", json={"kind": "train", "params": {**FAST, "steps": 20, **params}}, headers=headers)


def test_queued_jobs_cap_is_a_429_with_retry_after(make_client):
    stack, client = make_client(max_queued_jobs_per_owner=2)
    ada, bob = user(stack.settings), user(stack.settings)
    first = post_job(client, ada, key="first")
    assert first.status_code == 202, first.text
    assert post_job(client, ada).status_code == 202
    over = post_job(client, ada)
    body = assert_problem(over, 429)
    assert body["type"].endswith("job-quota-exceeded") and body["limit"] == 2 and body["in_use"] == 2
    assert "2 queued or running" in body["detail"] and "cancel" in body["detail"]
    assert int(over.headers["Retry-After"]) >= 1
    # A retry of an accepted POST still gets its job back; other owners are not affected.
    again = post_job(client, ada, key="first")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert post_job(client, bob).status_code == 202
    # Only unfinished jobs count: cancelling one frees a slot.
    assert client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=ada.headers).status_code == 202
    assert post_job(client, ada).status_code == 202
    assert_problem(post_job(client, ada), 429)
    listed = client.get("/v1/jobs", params={"status": "queued"}, headers=ada.headers).json()
    assert listed["total"] == 2


def images_zip(n: int = 6, side: int = 16) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for i in range(n):
            png = io.BytesIO()
            Image.effect_noise((side, side), 40 + i).save(png, format="PNG")
            z.writestr(f"img{i}.png", png.getvalue())
    return buf.getvalue()


def upload(client, who: User, data: bytes):
    return client.post("/v1/datasets", files={"file": ("faces.zip", data, "application/zip")}, headers=who.headers)


def test_stored_bytes_cap_refuses_uploads_and_new_jobs(make_client):
    archive = images_zip()
    stack, client = make_client(max_stored_bytes_per_owner=len(archive) + len(archive) // 2)
    ada, bob = user(stack.settings), user(stack.settings)
    assert upload(client, ada, archive).status_code == 201
    before = stack.objects.list("datasets")
    body = assert_problem(upload(client, ada, archive), 413)
    assert body["type"].endswith("storage-quota-exceeded") and body["in_use"] == len(archive)
    assert f"{len(archive)} bytes" in body["detail"] and "KGAN_MAX_STORED_BYTES_PER_OWNER" in body["detail"]
    # The refused upload left nothing behind: no dataset folder, no staged file.
    assert stack.objects.list("datasets") == before
    assert not list((stack.settings.artifacts / "uploads").iterdir())
    assert client.get("/v1/datasets", headers=ada.headers).json()["total"] == 1
    # Still under the cap: jobs are accepted. Built-in datasets store no data, so they do not count.
    assert client.post("/v1/datasets", json={"builtin": "ring8"}, headers=ada.headers).status_code == 201
    assert post_job(client, ada).status_code == 202
    assert upload(client, bob, archive).status_code == 201  # another owner has their own quota


def test_two_uploads_that_each_fit_alone_are_not_both_stored(make_client):
    """The cap is checked again in the transaction that adds the dataset: an upload that passed the
    route's checks while another one was being received is refused once that one is stored."""
    from api import datasets as service
    from api.errors import problem_for
    from kgan_service.db import Database
    from kgan_service.errors import UploadOverStorageQuota
    from kgan_service.models import Owner

    archive = images_zip()
    stack, client = make_client(max_stored_bytes_per_owner=len(archive) + len(archive) // 2)
    ada = user(stack.settings)
    store = stack.objects
    staged = stack.settings.artifacts / "uploads" / "slow.part"  # received, and under the cap when it arrived
    staged.write_bytes(archive)
    assert upload(client, ada, archive).status_code == 201  # the faster one is stored meanwhile
    before = store.list("datasets")
    db = Database(stack.settings)
    try:
        with db.sessions() as session:
            owner = session.scalars(select(Owner).where(Owner.name == ada.name)).one()
            with pytest.raises(UploadOverStorageQuota) as refused:
                service.create_upload(session, owner, store, stack.settings, staged, "slow.zip", None, len(archive))
    finally:
        db.dispose()
    assert problem_for(refused.value).status == 413 and f"{len(archive)}-byte upload" in refused.value.detail
    assert store.list("datasets") == before and not staged.exists()
    assert client.get("/v1/datasets", headers=ada.headers).json()["total"] == 1


def test_full_storage_refuses_uploads_before_reading_them_and_refuses_jobs(make_client):
    archive = images_zip()
    stack, client = make_client(max_stored_bytes_per_owner=len(archive))
    ada = user(stack.settings)
    assert upload(client, ada, archive).status_code == 201  # exactly the cap
    assert_problem(upload(client, ada, b"x" * 100), 413)  # refused whatever its content
    body = assert_problem(post_job(client, ada), 409)
    assert body["type"].endswith("storage-quota-exceeded") and "new job" in body["detail"]


def test_a_job_over_its_time_limit_fails_and_keeps_its_checkpoint(make_client):
    stack, client = make_client(job_time_limit_s=2)
    ada = user(stack.settings)
    # Progress is reported rarely, so the limit must be noticed between reports (by the heartbeat).
    job_id = post_job(client, ada, steps=1_000_000, log_every=100_000, checkpoint_every=100_000).json()["id"]
    runner = JobRunner(stack.settings)
    assert runner.run(job_id) == "failed"
    job = client.get(f"/v1/jobs/{job_id}", headers=ada.headers).json()
    assert job["status"] == "failed" and job["error"]["title"] == "Time limit reached"
    assert "2 s" in job["error"]["detail"] and "checkpoint is kept" in job["error"]["detail"]
    summary = json.loads(stack.objects.get_bytes(f"runs/{job_id}/attempt-0001/run.json"))
    assert summary["step"] > 0  # stopping wrote a checkpoint of the work done

    # A job whose worker was lost after its limit passed fails at its next claim instead of running again.
    late = post_job(client, ada, steps=1_000_000, log_every=100_000, checkpoint_every=100_000).json()["id"]
    from datetime import timedelta

    from sqlalchemy import update

    from kgan_service.db import utcnow
    from kgan_service.models import Job

    with stack.db.session() as s:
        s.execute(update(Job).where(Job.id == late).values(status="running", attempt=1, worker="gone:1",
                                                           started_at=utcnow() - timedelta(seconds=5),
                                                           lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert reconcile_once(stack.db, stack.settings, lambda _id: None)["requeued"] == 1
    assert runner.run(late) == "skipped"
    job = client.get(f"/v1/jobs/{late}", headers=ada.headers).json()
    assert (job["status"], job["attempt"], job["error"]["title"]) == ("failed", 1, "Time limit reached")
