"""A train job's estimated peak memory is checked against what the live workers report: a GPU
worker its card's memory, a CPU worker its KGAN_WORKER_MEMORY_BYTES; with no worker registered,
against this server's KGAN_WORKER_MEMORY_BYTES. The CUDA calls are replaced by a card of a known
size, so the GPU path runs on any machine."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
from sqlalchemy import delete, select

from kgan_service.db import Database, utcnow
from kgan_service.models import Worker
from kgan_service.settings import Settings
from tests._procs import wait_for
from tests.service.conftest import TINY_TRAIN, assert_problem
from worker.memory import device_memory_bytes
from worker.registry import Registration

GiB = 1024**3
# About 4.3 GiB to train (kgan_core.models.training_footprint): more than the card below, less
# than any machine the tests run on reports as KGAN_WORKER_MEMORY_BYTES's default.
NEEDS_4_GIB = {"dataset": "ring8", "k": 4, "width": 4096, "batch_size": 256}


@pytest.fixture
def gpu_of(monkeypatch):
    """Make torch see one GPU with ``total`` bytes of memory."""

    def install(total: int, name: str = "Test GPU 3 GB") -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda index: SimpleNamespace(total_memory=total, name=name, index=index))

    return install


def test_a_gpu_worker_reports_its_cards_memory_capped_only_by_an_explicit_setting(gpu_of, tmp_path):
    gpu_of(80 * GiB)
    default = Settings(data_dir=tmp_path)
    assert device_memory_bytes("cuda:0", default) == 80 * GiB  # not the host's memory, which is the default
    assert device_memory_bytes("cuda", Settings(data_dir=tmp_path, worker_memory_bytes=16 * GiB)) == 16 * GiB
    assert device_memory_bytes("cpu", default) == default.worker_memory_bytes


def submit(client, user, params) -> object:
    return client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=user.headers)


def test_submissions_are_checked_against_the_live_workers_device_memory(client, alice, settings, gpu_of):
    gpu_of(3 * GiB)
    assert settings.worker_memory_bytes > 5 * GiB, "the fallback must admit what the card cannot hold"
    # The first train submission of a process loads the estimate's code inside its write
    # transaction, which the registration's heartbeat would wait behind: done before it starts.
    assert_problem(submit(client, alice, {"dataset": "ring8", "k": 16, "n_points": 10}), 422)
    db = Database(settings)
    registration = Registration(settings.model_copy(update={"worker_device": "auto"}), db).start()
    try:
        row = wait_for(lambda: _row(db, registration.me), 30, what="the worker's registration")
        assert (row.device, row.device_name, row.memory_bytes) == ("cuda:0", "Test GPU 3 GB", 3 * GiB)
        problem = assert_problem(submit(client, alice, NEEDS_4_GIB), 422)
        assert problem["limit_bytes"] == 3 * GiB < problem["estimated_bytes"]
        assert "cuda:0 (Test GPU 3 GB)" in problem["detail"] and "3.0 GiB" in problem["detail"]
        assert submit(client, alice, TINY_TRAIN).status_code == 202
    finally:
        registration.stop()
    # Gone from the registry when it stops: the fallback setting is the limit again.
    assert _row(db, registration.me) is None
    assert submit(client, alice, NEEDS_4_GIB).status_code == 202
    db.dispose()


def test_a_worker_unseen_for_a_lease_no_longer_counts(client, alice, settings):
    db = Database(settings)
    seen = utcnow() - timedelta(seconds=settings.lease_s + 1)
    with db.session() as s:
        s.add(Worker(id="elsewhere:1", device="cuda:0", memory_bytes=1 * GiB, started_at=seen, seen_at=seen))
    try:
        assert submit(client, alice, NEEDS_4_GIB).status_code == 202
        with db.session() as s:
            s.get(Worker, "elsewhere:1").seen_at = utcnow()
        problem = assert_problem(submit(client, alice, NEEDS_4_GIB), 422)
        assert problem["limit_bytes"] == 1 * GiB
    finally:
        with db.session() as s:
            s.execute(delete(Worker).where(Worker.id == "elsewhere:1"))
        db.dispose()


def _row(db: Database, worker_id: str) -> Worker | None:
    with db.session() as s:
        row = s.scalar(select(Worker).where(Worker.id == worker_id))
        if row is not None:
            s.expunge(row)
        return row
