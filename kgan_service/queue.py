"""The job queue: Celery over Redis, configured once for the side that sends job messages (the
API, the reconciler, a worker re-queueing a job) and the side that runs them (``worker/``).

Messages are sent by task name, so a sender never imports the worker's code (nor torch). The
message carries only a job id; the job row in SQL is the source of truth, so losing the broker
loses nothing that the reconciler cannot re-send.

Routing: a job's device preference picks its queue (``queue_for_device``): ``cuda``/``cuda:N``/
``mps`` to KGAN_GPU_QUEUE, ``cpu`` to KGAN_CPU_QUEUE, none or ``auto`` to the default KGAN_QUEUE;
an unset GPU or CPU queue falls back to the default one. A worker consumes the queues that
KGAN_WORKER_QUEUES names (default: KGAN_QUEUE alone), so GPU hosts can take ``gpu,kgan`` (and
``cpu`` where no CPU-only host does) and CPU-only hosts ``cpu``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from celery import Celery
from kombu import Queue

from kgan_service.settings import DEVICE, Settings

RUN_JOB = "kgan.run_job"


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """The Celery application; ``include`` names the modules that define tasks (the worker's)."""
    app = Celery("kgan", broker=settings.broker_url or "redis://127.0.0.1:6379/0", include=list(include))
    app.conf.update(
        # Results live in SQL; Celery's result backend would be a second, weaker truth.
        task_ignore_result=True,
        task_default_queue=settings.queue,
        # What `celery worker` consumes when no --queues is given.
        task_queues=[Queue(name) for name in settings.worker_queue_names],
        task_serializer="json",
        accept_content=["json"],
        # Long GPU jobs: acknowledge only when the task ends, give the message back when the
        # worker process dies, hold one job at a time, and never let Redis redeliver a job
        # that is still running (its visibility timeout outlasts the longest job).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        # A POST must not hang on a broker that is down; the row is saved and the
        # reconciler re-sends it.
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5,
                                   "interval_max": 1.0},
        worker_send_task_events=False,
    )
    return app


def queue_for_device(device: str | None, settings: Settings) -> str:
    """The queue a job with this device preference is sent to (see the module docstring).

    A preference outside ``kgan_service.settings.DEVICE`` (what KGAN_WORKER_DEVICE accepts) is a
    ValueError: check it when the job is submitted, where the user can still be told."""
    if device is None or device == "auto":
        return settings.queue
    if not re.fullmatch(DEVICE, device):
        raise ValueError(f"unknown device preference {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    if device == "cpu":
        return settings.cpu_queue or settings.queue
    return settings.gpu_queue or settings.queue


class JobQueue:
    """Sends jobs by task name to the queue their device preference picks."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.celery = make_celery(settings)

    def send(self, job_id: str, device: str | None = None) -> None:
        self.celery.send_task(RUN_JOB, args=[job_id], queue=queue_for_device(device, self.settings))
