"""The broker and the API restarted under running and queued jobs. Real processes: a broker
server (killed and started again on the same port, without persistence, so its messages are
gone), the API under uvicorn and a Celery worker, driven over HTTP."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from kgan_service.models import Model
from tests._procs import wait_for

FINISHED = ("succeeded", "failed", "cancelled")

pytestmark = pytest.mark.slow  # real processes; still part of the default run


def models_per_job(stack, job_ids: list[str]) -> dict[str, int]:
    with stack.db.session() as s:
        rows = s.execute(select(Model.job_id, func.count()).where(Model.job_id.in_(job_ids))
                         .group_by(Model.job_id)).all()
    return {job_id: n for job_id, n in rows}


def job_ids(messages: list[bytes]) -> list[str]:
    """The job id each Celery message in the queue carries (its body is base64 JSON: [args, kwargs, ...])."""
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in messages]


def test_broker_restart_loses_no_job_and_runs_none_twice(stack_factory):
    # A long lease: a heartbeat held up by a loaded machine must not re-queue the running job,
    # which would be a lost worker, not what this test is about.
    stack = stack_factory(lease_s=120)
    broker = stack.start_broker()
    stack.start_api()
    stack.start_worker()
    user = stack.user()
    with stack.client(user) as api:
        running = stack.submit(api, steps=200)
        stack.wait_job(running, lambda j: j.status == "running" and j.step >= 4, 120, "start training")
        queued = [stack.submit(api, steps=12) for _ in range(2)]
        assert all(stack.job_row(q).status == "queued" for q in queued)
        # Both wait in the broker, so killing it loses them. Any job's message may be there twice,
        # the running one's too: the reconciler can re-send a row that the POST has sent but not
        # yet marked sent (claims are fenced, so a duplicate is dropped). Count jobs, not messages.
        assert set(queued) <= set(job_ids(stack.queued_messages()))

        broker.signal(signal.SIGKILL)
        broker.wait(timeout=10)
        # The API still takes jobs while the broker is down: the row is saved, the message sent later.
        t = time.monotonic()
        late = api.post("/v1/jobs", json={"kind": "train", "params": {**_params(stack, 12)}})
        assert late.status_code == 202 and time.monotonic() - t < 15, late.text
        queued.append(late.json()["id"])
        # The running job trains on without a broker (it may even finish meanwhile).
        step = stack.job_row(running).step
        stack.wait_job(running, lambda j: j.step >= step + 4 or j.status in FINISHED, 60,
                       "train on while the broker is down")
        assert stack.job_row(running).status in ("running", "succeeded")

        stack.start_broker()  # same port, empty: every queued message was lost
        jobs = [running, *queued]
        for job_id in jobs:
            stack.wait_job(job_id, lambda j: j.status in FINISHED, 240, "finish after the broker is back")
        rows = {job_id: stack.job_row(job_id) for job_id in jobs}
        # Each ran exactly once: one claim (attempt 1), one model, nothing failed.
        assert {j: (r.status, r.attempt) for j, r in rows.items()} == {j: ("succeeded", 1) for j in jobs}
        assert models_per_job(stack, jobs) == {j: 1 for j in jobs}
        assert api.get("/v1/jobs", params={"status": "succeeded"}).json()["total"] == len(jobs)


def _params(stack, steps: int) -> dict:
    from tests.reliability.conftest import FAST

    return {**FAST, "steps": steps}


def test_api_restart_changes_nothing_for_running_jobs(stack_factory):
    stack = stack_factory()
    stack.start_broker()
    stack.start_api()
    stack.start_worker()
    user = stack.user()
    with stack.client(user) as api:
        # Long enough to outlive both restarts however loaded the machine; cancelled at the end.
        job_id = stack.submit(api, steps=1_000_000, log_every=2, checkpoint_every=1000)
    stack.wait_job(job_id, lambda j: j.status == "running" and j.step >= 4, 120, "start training")

    # A client polling all along, as a researcher's script would.
    seen: list[tuple[float, str, dict | None]] = []
    stop = threading.Event()

    def poll() -> None:
        with stack.client(user, timeout=5) as client:
            while not stop.is_set():
                # Stamped when the answer or the error arrives: a request sent just before the
                # API is killed fails after the kill, inside the outage, not before it.
                try:
                    r = client.get(f"/v1/jobs/{job_id}")
                    seen.append((time.monotonic(), "ok" if r.status_code == 200 else f"http {r.status_code}",
                                 r.json() if r.status_code == 200 else None))
                except httpx.TransportError as exc:
                    seen.append((time.monotonic(), type(exc).__name__, None))
                time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    down: list[tuple[float, float]] = []
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):  # a redeploy, then a crash
            before = stack.job_row(job_id)
            t0 = time.monotonic()
            stack.api.signal(sig)
            stack.api.wait(timeout=30)
            stack.wait_job(job_id, lambda j, s=before.step: j.step >= s + 4, 60, "train on while the API is down")
            stack.start_api()
            down.append((t0, time.monotonic()))
            wait_for(lambda t=down[-1][1]: any(at > t and what == "ok" for at, what, _ in seen), 30,
                     what="the poller to get an answer again")
        # Still the same attempt, still training, and it still obeys its client.
        before = stack.job_row(job_id).step
        stack.wait_job(job_id, lambda j: j.step >= before + 4, 60, "train on after the restarts")
        with stack.client(user) as api:
            assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        final = stack.wait_job(job_id, lambda j: j.status in FINISHED, 60, "stop")
        wait_for(lambda: seen and seen[-1][2] and seen[-1][2]["status"] in FINISHED, 30, what="the poller to see it")
    finally:
        stop.set()
        poller.join(timeout=10)

    assert (final.status, final.attempt, final.error_title) == ("cancelled", 1, None)
    errors = [(t, what) for t, what, _ in seen if what != "ok"]
    assert all(any(a <= t <= b for a, b in down) for t, _ in errors), (errors, down)
    assert all(any(a <= t <= b for t, _ in errors) for a, b in down), "each outage was seen by the client"
    answers = [body for _, what, body in seen if what == "ok"]
    steps = [b["progress"]["step"] for b in answers]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert {b["attempt"] for b in answers} == {1} and {b["status"] for b in answers} == {"running", "cancelled"}
