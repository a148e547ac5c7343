"""A job's device preference travels from its params to the queue: every dispatch (at
submission, by the reconciler, a worker re-queueing it) hands it to the sender, which picks the
queue by it (kgan_service.queue). A client's request cannot name a device today (the device is
the deployment's: tests/service/test_api.py), so only a stored row can carry one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from kgan_service.db import Database
from kgan_service.jobs import reconcile_once
from kgan_service.models import Job
from tests.service.conftest import TINY_TRAIN


class Recorder:
    def __init__(self):
        self.sent: list[tuple[str, str | None]] = []

    def __call__(self, job_id: str, device: str | None = None) -> None:
        self.sent.append((job_id, device))


@pytest.fixture
def recorder(client) -> Iterator[Recorder]:
    sent, send_job = Recorder(), client.app.state.send_job
    client.app.state.send_job = sent
    try:
        yield sent
    finally:
        client.app.state.send_job = send_job


def submit(client, user) -> str:
    r = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=user.headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_device_preference_in_a_jobs_params_goes_with_every_dispatch(client, alice, settings, recorder):
    on_cpu, anywhere = submit(client, alice), submit(client, alice)
    assert recorder.sent == [(on_cpu, None), (anywhere, None)]  # a client's request names no device
    db = Database(settings)
    try:
        with db.session() as s:  # a job that prefers a CPU worker, and both messages lost
            params = s.get(Job, on_cpu).params
            s.execute(update(Job).where(Job.id == on_cpu).values(params={**params, "device": "cpu"}))
            s.execute(update(Job).where(Job.id.in_([on_cpu, anywhere])).values(enqueued_at=None))
        again = Recorder()
        reconcile_once(db, settings, again)
    finally:
        db.dispose()
    assert {(on_cpu, "cpu"), (anywhere, None)} <= set(again.sent)
    for job_id in (on_cpu, anywhere):
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers).status_code == 202
