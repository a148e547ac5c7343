"""Queue routing: a job's device preference picks its queue, and a worker consumes only the
queues KGAN_WORKER_QUEUES names (checked with real Celery workers on a real broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from kgan_service.queue import JobQueue, queue_for_device
from kgan_service.settings import Settings
from tests._procs import ROOT, Proc, service_env, start_broker, wait_for
from tests._queue_probe import PROBE_KEY
from tests._service import free_port

ROUTED = Settings(queue="kgan", gpu_queue="gpu", cpu_queue="cpu")


@pytest.mark.parametrize(("device", "queue"), [
    (None, "kgan"), ("auto", "kgan"), ("cpu", "cpu"), ("cuda", "gpu"), ("cuda:3", "gpu"), ("mps", "gpu")])
def test_device_preference_picks_the_queue(device, queue):
    assert queue_for_device(device, ROUTED) == queue


@pytest.mark.parametrize("device", [None, "auto", "cpu", "cuda", "cuda:0", "mps"])
def test_without_gpu_and_cpu_queues_every_job_goes_to_the_default_queue(device):
    # An existing deployment, whose workers consume only KGAN_QUEUE, keeps receiving every job.
    assert queue_for_device(device, Settings(queue="jobs")) == "jobs"


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_an_unknown_device_preference_is_refused_by_name(device):
    with pytest.raises(ValueError, match=f"unknown device preference {device!r}"):
        queue_for_device(device, ROUTED)


def test_worker_queues_default_to_the_default_queue_and_parse_a_list():
    assert Settings(queue="jobs").worker_queue_names == ("jobs",)
    assert Settings(worker_queues="gpu, kgan,gpu").worker_queue_names == ("gpu", "kgan")
    for bad in ("gpu;cpu", "gpu,,cpu", "", "gpu cpu"):
        with pytest.raises(ValidationError, match="worker_queues"):
            Settings(worker_queues=bad)


def test_the_worker_app_consumes_its_configured_queues():
    # In a fresh interpreter: worker.celery_app reads the settings once, at import.
    env = {**os.environ, "KGAN_WORKER_QUEUES": "cpu,kgan", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "from worker.celery_app import app; "
                          "print(','.join(q.name for q in app.conf.task_queues))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "cpu,kgan"


def _received(client: redis.Redis) -> list[dict]:
    return [json.loads(item) for item in client.lrange(PROBE_KEY, 0, -1)]


def test_a_cpu_worker_takes_cpu_jobs_and_leaves_gpu_and_default_jobs(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    broker = start_broker("broker", port, tmp_path / "broker", logs)
    broker_url = f"redis://127.0.0.1:{port}/0"
    values = {"broker_url": broker_url, "data_dir": tmp_path / "data", "queue": "kgan",
              "gpu_queue": "gpu", "cpu_queue": "cpu"}
    sender = JobQueue(Settings(**values))
    client = redis.Redis.from_url(broker_url)
    workers: list[Proc] = []

    def start_worker(name: str, queues: str) -> Proc:
        # No --queues: the worker's queues come from KGAN_WORKER_QUEUES alone.
        argv = [sys.executable, "-m", "celery", "-A", "tests._queue_probe", "worker", "--pool", "solo",
                "--loglevel", "INFO", "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat"]
        worker = Proc(name, argv, service_env({**values, "worker_queues": queues}), logs)
        workers.append(worker)
        return worker

    try:
        # Waiting before the worker starts: a worker that consumed gpu or kgan would take them first.
        sender.send("gpu-job", device="cuda:0")
        sender.send("default-job")
        sender.send("cpu-job-1", device="cpu")
        cpu_worker = start_worker("cpu-worker", "cpu")
        wait_for(lambda: len(_received(client)) >= 1, 120, what="the cpu worker to take a job",
                 ignore=(redis.ConnectionError,))
        # A second cpu job after the first was taken: by now the worker has polled its queues again.
        sender.send("cpu-job-2", device="cpu")
        wait_for(lambda: len(_received(client)) >= 2, 30, what="the cpu worker to take a second job")
        assert _received(client) == [{"job": "cpu-job-1", "queue": "cpu"}, {"job": "cpu-job-2", "queue": "cpu"}]
        assert client.llen("gpu") == 1 and client.llen("kgan") == 1, "the cpu worker took a job not meant for it"

        # A GPU host's worker (gpu,kgan) takes the GPU job and the one without a preference.
        cpu_worker.stop(grace_s=10)
        start_worker("gpu-worker", "gpu,kgan")
        wait_for(lambda: len(_received(client)) >= 4, 120, what="the gpu worker to take its jobs")
        assert sorted((r["job"], r["queue"]) for r in _received(client)[2:]) == [
            ("default-job", "kgan"), ("gpu-job", "gpu")]
        assert client.llen("gpu") == client.llen("kgan") == 0
    except BaseException:
        for proc in workers + [broker]:
            print(f"===== {proc.name} =====\n{proc.log_tail()}")
        raise
    finally:
        client.close()
        sender.celery.close()
        for proc in reversed(workers + [broker]):
            proc.stop(grace_s=0)
