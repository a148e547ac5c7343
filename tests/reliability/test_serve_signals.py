"""`kgan serve` under the signals that systemd, `docker stop`, a terminal and the kernel send:
a stopped serve leaves no process behind (SIGTERM mid-job; each test ends with SIGTERM, SIGINT
or SIGHUP and checks the same), a worker or broker that dies is started again (and counted in
/metrics), and a serve that was killed outright is cleaned up after by the next one on its
data folder. Real processes throughout, on tiny ring8 jobs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.supervisor import AlreadyServing, PidFile, Recorded, stop_leftovers, stop_session
from kgan_service.db import Database
from kgan_service.models import Job
from kgan_service.settings import Settings
from tests._procs import Proc, any_left, child_pids, descendants, service_env, start_time, wait_for
from tests._service import free_port
from tests.reliability.conftest import FAST

pytestmark = pytest.mark.slow  # real processes; still part of the default run

READY_S = 240  # a serve imports torch before it listens: tens of seconds on a loaded machine
JOB_S = 300
STOP_S = 120  # the grace period is 10 s; the rest is a loaded machine tearing down interpreters
STEPS = 200  # long enough to be mid-training when the signal comes


class Serve:
    """One `python -m api.serve` in a session of its own, on a data folder that outlives it."""

    def __init__(self, data_dir: Path, log_dir: Path, name: str):
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{free_port()}"
        env = service_env({"data_dir": data_dir, "reconcile_interval_s": 0.5, "heartbeat_s": 0.5, "lease_s": 5,
                           "worker_device": "cpu"})
        argv = [sys.executable, "-m", "api.serve", "--data-dir", str(data_dir), "--port", self.url.rsplit(":", 1)[1],
                "--log-level", "info"]
        self.proc = Proc(name, argv, env, log_dir)
        self.seen: dict[int, int] = {}  # every process of this serve ever looked at: pid -> start time

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.proc.alive():
                raise AssertionError(f"{self.proc.name} exited:\n{self.proc.log_tail()}")
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200

        wait_for(ready, READY_S, every=0.2, what=f"{self.proc.name} to be ready", ignore=(httpx.TransportError,))

    def printed_key(self) -> str:
        key = re.search(r"^\s+(kgan_\S+)\s*$", self.proc.log_path.read_text(errors="replace"), re.M)
        assert key, "the first start prints an API key"
        return key.group(1)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def children(self) -> dict[str, int]:
        """The broker and the worker (its Celery main process) by name."""
        found = {}
        for pid in child_pids(self.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"valkey-server" in cmdline:
                found["broker"] = pid
            elif b"-m celery" in cmdline:
                found["worker"] = pid
        return found

    def processes(self) -> dict[int, int]:
        """This serve and every process below it, with their start times."""
        now = {self.pid: start_time(self.pid), **descendants(self.pid)}
        now = {pid: started for pid, started in now.items() if started is not None}
        self.seen.update(now)
        return now


@pytest.fixture
def serves(tmp_path, request) -> Iterator:
    started: list[Serve] = []

    def start() -> Serve:
        serve = Serve(tmp_path / "data", tmp_path / "logs", f"{len(started) + 1:02d}-serve")
        started.append(serve)
        return serve

    (tmp_path / "logs").mkdir()
    yield start
    # Whatever a failing test left running: each serve and every process it was seen with.
    left: dict[int, int] = {}
    for serve in started:
        if serve.proc.alive():
            serve.processes()
        left.update(serve.seen)
    for pid in any_left(left):
        with contextlib.suppress(ProcessLookupError):
            # A session leader takes its session along (a worker's pool process).
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
    for serve in started:
        serve.proc.stop(grace_s=0)
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        for serve in started:
            print(f"===== {serve.proc.name} (exit {serve.proc.popen.returncode}) =====\n{serve.proc.log_tail(8000)}")


def submit(api: httpx.Client, steps: int) -> str:
    r = api.post("/v1/jobs", json={"kind": "train", "params": {**FAST, "steps": steps}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_training(api: httpx.Client, job_id: str) -> dict:
    return wait_for(lambda: (j := api.get(f"/v1/jobs/{job_id}").json())["status"] == "running"
                    and j["progress"]["step"] >= 2 and j, JOB_S, every=0.2, what=f"job {job_id} to train",
                    ignore=(httpx.TransportError,))


def wait_finished(api: httpx.Client, job_id: str) -> dict:
    return wait_for(lambda: (j := api.get(f"/v1/jobs/{job_id}").json())["status"] not in ("queued", "running")
                    and j, JOB_S, every=0.5, what=f"job {job_id} to finish", ignore=(httpx.TransportError,))


def job_row(data_dir: Path, job_id: str) -> Job:
    """The job as the database holds it, while no API is up."""
    db = Database(Settings(data_dir=data_dir))
    try:
        with db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            s.expunge(job)
            return job
    finally:
        db.dispose()


def restarts(api: httpx.Client) -> dict[str, float]:
    text = api.get("/metrics").text
    return {m[1]: float(m[2]) for m in re.finditer(r'^kgan_serve_restarts_total\{process="(\w+)"\} (\S+)$', text, re.M)}


def brokers_on(data_dir: Path) -> list[int]:
    """valkey-server processes working in this data folder (the server runs in its --dir)."""
    folder = str((data_dir / "valkey").resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == folder and start_time(int(entry.name)) is not None:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stop_and_check(serve: Serve, sig: int) -> None:
    """Signal serve alone (not its group), as `kill` or `docker stop` would: it exits 0 and
    takes every process it started along, leaving no pid file behind."""
    processes = serve.processes()
    assert {"worker", "broker"} <= set(serve.children()), serve.children()
    serve.proc.signal(sig)
    code = serve.proc.wait(timeout=STOP_S)
    assert code == 0, serve.proc.log_tail()
    assert not any_left(processes), (signal.Signals(sig).name, any_left(processes), serve.proc.log_tail())
    assert not (serve.data_dir / "serve.pid").exists()


def test_sigterm_mid_job_stops_every_process_and_the_next_serve_finishes_the_job(serves):
    first = serves()
    first.wait_ready()
    key = first.printed_key()
    with first.client(key) as api:
        job_id = submit(api, STEPS)
        wait_training(api, job_id)
    worker = first.children()["worker"]
    assert child_pids(worker), "the worker's pool process is training"
    stop_and_check(first, signal.SIGTERM)
    # Gracefully: the job checkpointed and went back to the queue (not lost, not failed).
    row = job_row(first.data_dir, job_id)
    assert (row.status, row.attempt, row.handed_back) == ("queued", 1, 1) and 0 < row.step < STEPS, row.__dict__

    second = serves()
    second.wait_ready()
    with second.client(key) as api:
        job = wait_finished(api, job_id)
        assert (job["status"], job["attempt"], job["progress"]["step"]) == ("succeeded", 2, STEPS), job
        assert job["progress"]["attempt_started_at_step"] == row.step
    stop_and_check(second, signal.SIGHUP)  # a closed terminal


def test_a_worker_or_broker_killed_outright_is_started_again_and_counted(serves):
    serve = serves()
    serve.wait_ready()
    with serve.client(serve.printed_key()) as api:
        assert restarts(api) == {"broker": 0, "worker": 0}
        first_job = submit(api, STEPS)
        wait_training(api, first_job)
        worker = serve.children()["worker"]
        pool = {pid: start_time(pid) for pid in child_pids(worker)}
        os.kill(worker, signal.SIGKILL)  # the Celery main process only; its pool process is orphaned
        wait_for(lambda: serve.children().get("worker", worker) != worker, 120, what="a new worker")
        # The orphan does not train on beside the new worker: it was stopped (and handed its job back).
        wait_for(lambda: not any_left(pool), 30, what="the old pool process to exit")
        second_job = submit(api, 20)
        for job_id in (first_job, second_job):
            job = wait_finished(api, job_id)
            assert job["status"] == "succeeded", job
        assert restarts(api) == {"broker": 0, "worker": 1}
        assert f"the worker (pid {worker}) was killed by SIGKILL" in serve.proc.log_tail(50_000)

        broker = serve.children()["broker"]
        os.kill(broker, signal.SIGKILL)
        wait_for(lambda: serve.children().get("broker", broker) != broker, 120, what="a new broker")
        third_job = submit(api, 20)
        assert wait_finished(api, third_job)["status"] == "succeeded"
        assert restarts(api) == {"broker": 1, "worker": 1}
        assert brokers_on(serve.data_dir) == [serve.children()["broker"]]
    stop_and_check(serve, signal.SIGINT)  # Ctrl-C, sent to serve alone


def test_a_serve_killed_outright_is_cleaned_up_after_by_the_next(serves):
    first = serves()
    first.wait_ready()
    key = first.printed_key()
    with first.client(key) as api:
        job_id = submit(api, STEPS)
        wait_training(api, job_id)
    old = first.processes()
    first.proc.signal(signal.SIGKILL)
    first.proc.wait(timeout=30)
    # What the pid file is for: the broker, the worker and its pool process outlive serve.
    assert sorted(any_left(old)) == sorted(set(old) - {first.pid})
    assert (first.data_dir / "serve.pid").exists()

    second = serves()
    second.wait_ready()
    assert not any_left(old), "the new serve stopped the old one's children before starting its own"
    assert brokers_on(second.data_dir) == [second.children()["broker"]], "one broker on the data folder"
    # While it runs, another serve on the same folder is refused, and says which to stop.
    third = serves()
    assert third.proc.wait(timeout=READY_S) == 1
    assert f"another kgan serve (pid {second.pid}) is running" in third.proc.log_tail()
    with second.client(key) as api:
        job = wait_finished(api, job_id)
        assert (job["status"], job["progress"]["step"]) == ("succeeded", STEPS), job
    stop_and_check(second, signal.SIGTERM)


def test_a_recorded_pid_that_another_process_now_has_is_left_alone():
    # The pid file outlives its processes; the pid may since have gone to something else.
    other = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        started = start_time(other.pid)
        assert started is not None
        reused = Recorded("worker", other.pid, started - 1)  # what was recorded started earlier
        stop_session(reused, marker="not-its-marker", deadline=time.monotonic() + 5, hurry=threading.Event())
        assert other.poll() is None, "a process that only shares the recorded pid was signalled"
        assert stop_leftovers({"boot_id": "an-earlier-boot", "marker": "m", "serve": {"pid": 1},
                               "children": [Recorded("worker", other.pid, started).as_json()]},
                              time.monotonic() + 5, threading.Event()) == []
        assert other.poll() is None, "a record from an earlier boot names no running process"
        same = Recorded("worker", other.pid, started)
        stop_session(same, marker="m", deadline=time.monotonic() + 30, hurry=threading.Event(), reap=other.poll)
        assert other.wait(timeout=10) == -signal.SIGTERM
    finally:
        other.kill()
        other.wait()


def test_a_data_folder_in_use_is_refused_with_the_pid_to_stop(tmp_path):
    holder, second = PidFile(tmp_path / "serve.pid"), PidFile(tmp_path / "serve.pid")
    assert holder.acquire() is None
    holder.write({"serve": {"pid": 4321, "started": 1}, "children": []})
    with pytest.raises(AlreadyServing, match=r"another kgan serve \(pid 4321\) is running.*kill -TERM 4321"):
        second.acquire()
    holder.release()
    assert not (tmp_path / "serve.pid").exists(), "a clean stop leaves no pid file"
    assert second.acquire() is None
    second.release()
