"""The Celery application. The API imports it only to send messages (by task name, so it
never imports torch); ``celery -A worker.celery_app worker`` runs the tasks.

The message carries only a job id; the job row in SQL is the source of truth, so losing the
broker loses nothing that the reconciler cannot re-send.
"""

from __future__ import annotations

from celery import Celery

from api.settings import Settings, get_settings

RUN_JOB = "kgan.run_job"


def make_celery(settings: Settings) -> Celery:
    app = Celery("kgan", broker=settings.broker_url or "redis://127.0.0.1:6379/0", include=["worker.tasks"])
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


# `celery -A worker.celery_app worker` picks this up; settings come from KGAN_* variables.
app = make_celery(get_settings())
