"""The Celery application that runs jobs: ``celery -A worker.celery_app worker`` (its
configuration is kgan_service.queue's, shared with the API that only sends messages).

Started without ``--queues``, a worker consumes the queues KGAN_WORKER_QUEUES names (default:
KGAN_QUEUE alone); ``--queues`` on the command line replaces them."""

from __future__ import annotations

from kgan_service.queue import RUN_JOB, make_celery
from kgan_service.settings import get_settings

__all__ = ["RUN_JOB", "app", "make_celery"]

# `celery -A worker.celery_app worker` picks this up; settings come from KGAN_* variables.
app = make_celery(get_settings(), include=["worker.tasks"])
