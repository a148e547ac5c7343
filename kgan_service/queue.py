"""The job queue: Celery over Redis, configured once for the side that sends job messages (the
API, the reconciler, a worker re-queueing a job) and the side that runs them (``worker/``).

Messages are sent by task name, so a sender never imports the worker's code (nor torch). The
message carries only a job id; the job row in SQL is the source of truth, so losing the broker
loses nothing that the reconciler cannot re-send.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from kgan_service.settings import Settings

RUN_JOB = "kgan.run_job"


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """The Celery application; ``include`` names the modules that define tasks (the worker's)."""
    app = Celery("kgan", broker=settings.broker_url or "redis://127.0.0.1:6379/0", include=list(include))
    app.conf.update(
        # Results live in SQL; Celery's result backend would be a second, weaker truth.
        task_ignore_result=True,
        task_default_queue=settings.queue,
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


class JobQueue:
    """Sends jobs to the workers' queue (KGAN_QUEUE) by task name."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.celery = make_celery(settings)

    def send(self, job_id: str) -> None:
        self.celery.send_task(RUN_JOB, args=[job_id], queue=self.settings.queue)
