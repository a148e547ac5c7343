"""Workers that die or are told to stop in the middle of a training job. Real processes
throughout: a broker server, the API under uvicorn (its reconciler included) and Celery
workers, driven over HTTP."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest
from PIL import Image

from tests._procs import child_pids, pid_alive, wait_for

CE = 10  # checkpoint_every of the test jobs

pytestmark = pytest.mark.slow  # real processes; still part of the default run


def checkpoint_step(stack, job_id: str, attempt: int) -> int:
    summary = stack.objects.get_bytes(f"runs/{job_id}/attempt-{attempt:04d}/run.json")
    return int(json.loads(summary)["step"])


def pool_child(worker) -> int:
    return wait_for(lambda: (kids := child_pids(worker.pid)) and kids[0], 30, what="the worker's pool process")


def test_sigterm_checkpoints_and_requeues_the_running_job(stack_factory):
    # Two graceful stops with max_attempts=2: a shutdown hands the job back, it is not a lost worker.
    stack = stack_factory(max_attempts=2)
    stack.start_broker()
    stack.start_api()
    user = stack.user()
    with stack.client(user) as api:
        steps, stopped_at = 200, 0
        job_id = stack.submit(api, steps=steps)
        for n, how in enumerate(["worker", "group"], start=1):
            worker = stack.start_worker()
            seen = stack.wait_job(job_id, lambda j, n=n, r=stopped_at: j.status == "running" and j.attempt == n
                                  and j.step >= r + 6, 120, f"attempt {n} training").step
            # `docker stop` signals the worker's main process; systemd signals the whole group.
            (worker.signal if how == "worker" else worker.signal_group)(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, worker.log_tail()
            job = api.get(f"/v1/jobs/{job_id}").json()
            assert (job["status"], job["attempt"], job["error"]) == ("queued", n, None), job
            # The checkpoint was written where the job stopped: nothing was lost.
            stopped_at = checkpoint_step(stack, job_id, n)
            assert seen <= stopped_at == job["progress"]["step"] < steps
            assert any(job_id.encode() in m for m in stack.queued_messages()), "the job's message is back on the queue"
        stack.start_worker()
        done = stack.wait_job(job_id, lambda j: j.status not in ("queued", "running"), 180, "finish")
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert (done.status, done.attempt) == ("succeeded", 3), job
        assert job["progress"]["attempt_started_at_step"] == stopped_at and job["progress"]["step"] == steps


def test_repeated_sigkill_mid_training_loses_at_most_one_checkpoint_interval(stack_factory):
    stack = stack_factory()
    stack.start_broker()
    stack.start_api()
    user = stack.user()
    kills, steps = 6, 200
    with stack.client(user) as api:
        job_id = stack.submit(api, steps=steps, checkpoint_every=CE, log_every=2)
        worker = stack.start_worker()
        resumed_at = 0
        for attempt in range(1, kills + 1):
            # Let this attempt get past at least one checkpoint of its own, then kill it mid-step.
            seen = stack.wait_job(job_id, lambda j, a=attempt, r=resumed_at: j.status == "running" and j.attempt == a
                                  and j.step >= r + CE + 2, 120, f"attempt {attempt} past a checkpoint").step
            child = pool_child(worker)
            if attempt % 2:
                # The pool process dies (OOM killer, segfault): Celery hands the message back at once.
                gone = [child]
                os.kill(child, signal.SIGKILL)
            else:
                # The whole worker dies (node lost, container killed): the reconciler re-sends the job.
                gone = [worker.pid, child]
                worker.signal_group(signal.SIGKILL)
                worker.wait(timeout=30)
            wait_for(lambda g=gone: not any(pid_alive(p) for p in g), 30, what="the killed processes to exit")
            on_disk = checkpoint_step(stack, job_id, attempt)
            assert seen - CE <= on_disk < steps, (seen, on_disk)
            if attempt % 2 == 0:
                worker = stack.start_worker()
            nxt = stack.wait_job(job_id, lambda j, a=attempt: j.status == "running"
                                 and j.progress.get("attempt") == a + 1, 120, f"attempt {attempt + 1} to resume")
            resumed_at = nxt.progress["attempt_started_at_step"]
            # Resumed from the newest checkpoint: at most one checkpoint interval behind what was seen.
            assert resumed_at == on_disk and resumed_at >= seen - CE, (seen, on_disk, resumed_at)
        done = stack.wait_job(job_id, lambda j: j.status not in ("queued", "running"), 180, "finish")
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert (done.status, done.attempt, done.step) == ("succeeded", kills + 1, steps), job
        # The final model loads and renders, member by member.
        model = api.get(job["links"]["model"]).json()
        assert model["step"] == steps and len(model["members"]) == 2
        for member in model["members"]:
            png = api.get(member["links"]["samples"], params={"n": 100, "seed": 0})
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            low, high = Image.open(io.BytesIO(png.content)).convert("L").getextrema()
            assert high - low > 100
