"""A job's device preference travels from its params to the queue: the submission checks it,
and every dispatch (at submission, by the reconciler) hands it to the sender, which picks the
queue by it (kgan_service.queue)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from kgan_service.db import Database
from kgan_service.jobs import reconcile_once
from kgan_service.models import Job
from tests.service.conftest import TINY_TRAIN, assert_problem


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


def submit(client, user, **params) -> str:
    r = client.post("/v1/jobs", json={"kind": "train", "params": {**TINY_TRAIN, **params}}, headers=user.headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_a_device_preference_goes_with_every_dispatch(client, alice, settings, recorder):
    on_cpu, anywhere = submit(client, alice, device="cpu"), submit(client, alice)
    assert recorder.sent == [(on_cpu, "cpu"), (anywhere, None)]
    db = Database(settings)
    try:
        with db.session() as s:  # as if the broker had lost both messages
            s.execute(update(Job).where(Job.id.in_([on_cpu, anywhere])).values(enqueued_at=None))
        again = Recorder()
        reconcile_once(db, settings, again)
    finally:
        db.dispose()
    assert {(on_cpu, "cpu"), (anywhere, None)} <= set(again.sent)
    for job_id in (on_cpu, anywhere):
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers).status_code == 202


def test_an_unknown_device_preference_is_refused_at_submission(client, alice, recorder):
    r = client.post("/v1/jobs", json={"kind": "train", "params": {**TINY_TRAIN, "device": "gpu"}},
                    headers=alice.headers)
    problem = assert_problem(r, 422)
    assert problem["errors"][0]["field"] == "body.params.device" and recorder.sent == []
