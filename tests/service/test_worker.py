"""The job runner with real training: cancellation, lost leases, fencing of stale attempts,
resume from the last checkpoint, the reconciler."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from datetime import timedelta

import redis
from sqlalchemy import update

from kgan_service.db import Database, utcnow
from kgan_service.jobs import reconcile_once
from kgan_service.models import Job, Model
from tests.service.conftest import TINY_TRAIN
from worker.runner import JobRunner

SMALL = {**TINY_TRAIN, "width": 32, "batch_size": 32}


def submit(client, user, **params) -> str:
    r = client.post("/v1/jobs", json={"kind": "train", "params": {**SMALL, **params}}, headers=user.headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", fn(*args)), daemon=True)
    thread.start()
    return thread, out


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def set_row(settings, job_id: str, **values) -> None:
    db = Database(settings)
    try:
        with db.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**values))
    finally:
        db.dispose()


def test_cancel_a_running_job_keeps_its_checkpoint(client, alice, settings, objects):
    job_id = submit(client, alice, steps=100_000, log_every=2, checkpoint_every=1000)
    thread, out = in_thread(JobRunner(settings).run, job_id)
    get = lambda: client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()  # noqa: E731
    running = wait_for(lambda: (j := get())["progress"]["step"] > 0 and j)
    assert running["status"] == "running" and running["attempt"] == 1
    assert running["progress"]["wasserstein"] and len(running["progress"]["tile_sizes"]) == 2
    assert running["progress"]["eta_s"] > 0 and 0 < running["progress"]["fraction"] < 1
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)
    assert r.status_code == 202 and r.json()["cancel_requested"]
    thread.join(timeout=60)
    assert out["result"] == "cancelled"
    final = get()
    assert final["status"] == "cancelled" and final["finished_at"] and final["model_id"] is None
    # Stopping writes one, and puts it into the store, so the work is not lost.
    assert objects.exists(f"runs/{job_id}/attempt-0001/checkpoint.safetensors")


def test_lost_worker_is_requeued_and_the_next_attempt_resumes(client, alice, settings, caplog):
    caplog.set_level(logging.INFO, logger="kgan.worker")
    job_id = submit(client, alice, steps=40, log_every=2, checkpoint_every=4)
    first = JobRunner(settings)
    # The first attempt stands still once it has reported step 8, as a killed worker would,
    # until the reconciler has acted: free to run, it could finish its 40 steps first.
    reconciled = threading.Event()
    write = first.fenced

    def write_then_stand_still(claim, **values) -> bool:
        written = write(claim, **values)
        if values.get("step", 0) >= 8:
            reconciled.wait(timeout=300)
        return written

    first.fenced = write_then_stand_still
    thread, out = in_thread(first.run, job_id)
    try:
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()["progress"]["step"] >= 8)
        # The lease holder is now a process that no longer exists on this host: a killed worker.
        set_row(settings, job_id, worker=f"{first.me.rsplit(':', 1)[0]}:{dead_pid()}")
        sent: list[str] = []
        counts = reconcile_once(first.db, settings, sent.append)
    finally:
        reconciled.set()
    assert counts["requeued"] == 1 and sent == [job_id]
    thread.join(timeout=60)
    assert out["result"] == "superseded"  # the old attempt noticed and stopped writing
    assert JobRunner(settings).run(job_id) == "succeeded"
    assert any("resumes from attempt-0001" in r.getMessage() for r in caplog.records)
    job = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()
    assert (job["status"], job["attempt"], job["progress"]["step"]) == ("succeeded", 2, 40)
    db = Database(settings)
    try:
        with db.session() as s:
            model = s.get(Model, job["model_id"])
            assert model.attempt == 2 and model.run_path.endswith("attempt-0002")
    finally:
        db.dispose()


def test_a_stale_attempt_cannot_overwrite_a_newer_one(client, alice, settings):
    job_id = submit(client, alice)
    runner = JobRunner(settings)
    old = runner.claim(job_id)
    assert old.attempt == 1
    assert runner.claim(job_id) is None  # a duplicate message while the lease is live
    set_row(settings, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))
    new = runner.claim(job_id)
    assert new.attempt == 2
    assert not runner.fenced(old, status="failed", error_title="stale")
    assert not runner.fenced(old, step=999)
    assert runner.fenced(new, step=3)
    job = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()
    assert (job["status"], job["attempt"], job["progress"]["step"], job["error"]) == ("running", 2, 3, None)


def test_reconciler_redispatches_lost_messages_and_gives_up_after_max_attempts(client, alice, settings):
    broker = redis.Redis.from_url(settings.broker_url)
    queued = submit(client, alice)
    set_row(settings, queued, enqueued_at=None)  # as if the broker had been down at POST time
    broker.delete(settings.queue)
    tired = submit(client, alice)
    set_row(settings, tired, status="running", attempt=settings.max_attempts, worker="elsewhere:1",
            lease_expires_at=utcnow() - timedelta(seconds=5))
    db = Database(settings)
    try:
        sent: list[str] = []

        def send(job_id: str) -> None:
            sent.append(job_id)
            client.app.state.send_job(job_id)

        counts = reconcile_once(db, settings, send)
    finally:
        db.dispose()
    assert queued in sent and tired not in sent and counts["failed"] == 1
    assert any(queued.encode() in m for m in broker.lrange(settings.queue, 0, -1))
    job = client.get(f"/v1/jobs/{tired}", headers=alice.headers).json()
    assert job["status"] == "failed" and "checkpoint" in job["error"]["detail"]


def test_shutdown_checkpoints_and_requeues_instead_of_failing(client, alice, settings, objects):
    import json

    from worker.runner import SHUTDOWN

    broker = redis.Redis.from_url(settings.broker_url)
    job_id = submit(client, alice, steps=100_000, log_every=2, checkpoint_every=1000)
    broker.delete(settings.queue)
    thread, out = in_thread(JobRunner(settings).run, job_id)
    get = lambda: client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json()  # noqa: E731
    wait_for(lambda: get()["progress"]["step"] >= 4)
    try:
        assert SHUTDOWN.request()  # what the worker's SIGTERM handler does
        thread.join(timeout=60)
    finally:
        SHUTDOWN.requested = False
    assert out["result"] == "requeued"
    job = get()
    assert (job["status"], job["attempt"], job["error"]) == ("queued", 1, None)
    summary = objects.get_bytes(f"runs/{job_id}/attempt-0001/run.json")
    assert json.loads(summary)["step"] == job["progress"]["step"] >= 4  # checkpointed where it stopped
    assert any(job_id.encode() in m for m in broker.lrange(settings.queue, 0, -1))  # and sent again
    assert row(settings, job_id).handed_back == 1  # a shutdown, not a lost worker
    client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)


def row(settings, job_id: str) -> Job:
    db = Database(settings)
    try:
        with db.session() as s:
            return s.get(Job, job_id)
    finally:
        db.dispose()


def test_attempts_handed_back_at_a_shutdown_do_not_count_toward_max_attempts(client, alice, settings):
    # Deploys restart workers gracefully as often as they like: a long job must survive them.
    most = settings.max_attempts
    redeployed = submit(client, alice)
    set_row(settings, redeployed, attempt=most + 5, handed_back=7)  # lost most - 2 times in most + 5 starts
    claim = JobRunner(settings).claim(redeployed)
    assert claim is not None and claim.attempt == most + 6
    set_row(settings, redeployed, lease_expires_at=utcnow() - timedelta(seconds=5))  # lost: most - 1
    db = Database(settings)
    try:
        assert reconcile_once(db, settings, lambda _id: None)["requeued"] == 1
        assert row(settings, redeployed).status == "queued"
        # Losses alone use the attempts up: one more (as if a shutdown had not been one) and it fails.
        set_row(settings, redeployed, handed_back=6)
        assert JobRunner(settings).claim(redeployed) is None
    finally:
        db.dispose()
    job = client.get(f"/v1/jobs/{redeployed}", headers=alice.headers).json()
    assert job["status"] == "failed" and f"lost {most} times" in job["error"]["detail"]
