"""A job that runs out of memory on its worker fails once, saying so, instead of being retried
up to KGAN_MAX_ATTEMPTS times. Real processes: a broker, the API under uvicorn and a Celery
worker whose memory is really limited, once by its address space (the allocation fails inside
the job) and once by a memory cgroup (the kernel's OOM killer SIGKILLs the pool process)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from kgan_service.models import Worker
from tests._procs import Proc, pid_alive, wait_for
from tests.reliability.conftest import FAST
from worker.memory import oom_counter_file, oom_kills

pytestmark = pytest.mark.slow  # real processes; still part of the default run

GiB = 1024**3
# Admitted by the API (KGAN_WORKER_MEMORY_BYTES is set far above it below) but far more than
# the limited worker has: the stacked 4096×4096 layers of 64 members are 4 GiB each.
TOO_BIG = {"k": 64, "width": 4096, "execution": "batched", "steps": 20}

# Sets a limit on itself, then becomes the Celery worker: the limit holds for the worker's
# main process and every pool process it forks.
LIMITED_LAUNCHER = """
import os, resource, sys
how, value = sys.argv[1], sys.argv[2]
if how == "address-space":
    resource.setrlimit(resource.RLIMIT_AS, (int(value), int(value)))
else:
    with open(os.path.join(value, "cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""


def celery_worker(stack) -> list[str]:
    return ["-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork", "--concurrency", "1",
            "--queues", stack.settings.queue, "--loglevel", "INFO", "--hostname", f"w-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def start_limited_worker(stack, how: str, value: str) -> Proc:
    worker = Proc(stack._name("worker"), [sys.executable, "-c", LIMITED_LAUNCHER, how, value, *celery_worker(stack)],
                  stack.env, stack.logs)
    stack.procs.append(worker)
    return worker


def skipped_delivery(worker: Proc, job_id: str) -> bool:
    """The worker's log shows a delivery of the job that found it finished and ran nothing."""
    log = worker.log_tail(200_000)
    return job_id in log and "'skipped'" in log


def assert_failed_once_for_memory(stack, api, job_id: str, detail_says: str) -> dict:
    done = stack.wait_job(job_id, lambda j: j.status not in ("queued", "running"), 240, "fail")
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert (done.status, done.attempt) == ("failed", 1), job
    assert job["error"]["title"] == "Out of memory", job
    detail = job["error"]["detail"]
    assert detail_says in detail and "batch_size" in detail and "KGAN_WORKER_MEMORY_BYTES" in detail, detail
    return job


def test_a_job_past_its_workers_address_space_fails_once_as_out_of_memory(stack_factory):
    stack = stack_factory(worker_memory_bytes=1024 * GiB)
    stack.start_broker()
    stack.start_api()
    # torch, Celery and the rest reserve about 3.3 GiB of address space; 6 GiB leaves room to
    # run but not for one 4 GiB layer on top.
    worker = start_limited_worker(stack, "address-space", str(6 * GiB))
    with stack.client(stack.user(), timeout=120) as api:
        job_id = stack.submit(api, **TOO_BIG)
        assert_failed_once_for_memory(stack, api, job_id, "ran out of memory on its worker")
    assert worker.alive(), worker.log_tail()


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    """A memory cgroup of the test's own below this process's, limited to ``limit_bytes``;
    every process still in it afterwards is the test's and is killed before it is removed."""
    counters = oom_counter_file()
    if counters is None or oom_kills() is None:
        pytest.skip("no memory cgroup counts OOM kills here (needs Linux with a cgroup memory controller)")
    folder = counters.parent / f"kgan-test-{uuid.uuid4().hex[:8]}"
    limit_file = "memory.limit_in_bytes" if counters.name == "memory.oom_control" else "memory.max"
    try:
        folder.mkdir()
        (folder / limit_file).write_text(str(limit_bytes))
    except OSError as exc:
        with contextlib.suppress(OSError):
            folder.rmdir()
        pytest.skip(f"cannot make a limited memory cgroup under {counters.parent} ({exc}); needs root or a "
                    "delegated cgroup")
    try:
        yield folder
    finally:
        def members() -> list[int]:
            return [int(p) for p in (folder / "cgroup.procs").read_text().split()]

        for pid in members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p) for p in members()), 30, what="the cgroup's processes to exit")
        wait_for(lambda: _removed(folder), 30, what=f"{folder} to be removed")


def _removed(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:
        return False  # its last processes are still being reaped
    return True


def test_a_pool_process_the_oom_killer_takes_fails_its_job_once(stack_factory):
    stack = stack_factory(worker_memory_bytes=1024 * GiB)
    stack.start_broker()
    stack.start_api()
    with memory_cgroup(int(1.5 * GiB)) as cgroup, stack.client(stack.user(), timeout=120) as api:
        # The worker's main process and a pool process with torch loaded take about 0.8 GiB
        # resident; the job's first 4 GiB layer cannot be filled in what is left.
        worker = start_limited_worker(stack, "cgroup", str(cgroup))
        job_id = stack.submit(api, **TOO_BIG)
        job = assert_failed_once_for_memory(stack, api, job_id, "out-of-memory killer")
        assert _oom_kills_in(cgroup) >= 1
        # The message went back to the queue with the lost pool process; its next delivery found
        # the job failed and ran nothing: still attempt 1.
        wait_for(lambda: skipped_delivery(worker, job_id), 120, what="the re-delivered message to be skipped")
        assert stack.job_row(job_id).attempt == 1 and api.get(f"/v1/jobs/{job_id}").json() == job
        assert worker.alive(), worker.log_tail()


def _oom_kills_in(cgroup: Path) -> int:
    name = "memory.oom_control" if (cgroup / "memory.oom_control").exists() else "memory.events"
    counts = dict(line.split() for line in (cgroup / name).read_text().splitlines())
    return int(counts["oom_kill"])


def test_a_running_worker_reports_its_memory_and_submissions_are_checked_against_it(stack_factory):
    # The API's own fallback admits anything; the one worker running says it has 2 GiB.
    stack = stack_factory(worker_memory_bytes=1024 * GiB)
    stack.start_broker()
    stack.start_api()

    def registered() -> list[Worker]:
        with stack.db.session() as s:
            rows = s.scalars(select(Worker)).all()
            s.expunge_all()
            return rows

    def submit(api, params: dict):
        return api.post("/v1/jobs", json={"kind": "train", "params": {**FAST, **params}})

    with stack.client(stack.user(), timeout=120) as api:
        # The API's first train submission loads torch (for the estimate) inside its write
        # transaction: done before the worker's heartbeats have to wait on it.
        assert submit(api, {"k": 16, "n_points": 10}).status_code == 422
        worker = Proc(stack._name("worker"), [sys.executable, *celery_worker(stack)],
                      {**stack.env, "KGAN_WORKER_MEMORY_BYTES": str(2 * GiB)}, stack.logs)
        stack.procs.append(worker)
        rows = wait_for(registered, 120, what="the worker's registration")
        assert [(r.device, r.memory_bytes) for r in rows] == [("cpu", 2 * GiB)]
        needs_4_gib = {"k": 4, "width": 4096, "batch_size": 256}
        r = submit(api, needs_4_gib)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        problem = r.json()
        assert problem["limit_bytes"] == 2 * GiB < problem["estimated_bytes"] and "on cpu" in problem["detail"]
        # A worker that stops leaves the registry: the fallback setting is the limit again.
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker.log_tail()
        assert registered() == []
        assert submit(api, needs_4_gib).status_code == 202
