"""A Celery app built exactly as the workers' is (kgan_service.queue.make_celery), whose job task
only records which queue delivered each job id, in the broker's Redis under ``PROBE_KEY``.

The routing test starts a real worker with ``celery -A tests._queue_probe worker`` (no
``--queues``), so what it consumes comes from KGAN_WORKER_QUEUES alone, without loading torch,
a database or the training code."""

from __future__ import annotations

import json

import redis

from kgan_service.queue import RUN_JOB, make_celery
from kgan_service.settings import get_settings

PROBE_KEY = "kgan-probe:received"

settings = get_settings()
app = make_celery(settings)


@app.task(name=RUN_JOB, bind=True)
def run_job(self, job_id: str) -> None:
    client = redis.Redis.from_url(settings.broker_url)
    try:
        client.rpush(PROBE_KEY, json.dumps({"job": job_id, "queue": self.request.delivery_info["routing_key"]}))
    finally:
        client.close()
