"""Celery tasks. Nothing here imports torch at module level: the prefork parent loads this
module before it forks, and CUDA must first be touched in the child that runs the job."""

from __future__ import annotations

from functools import cache

from celery.signals import worker_process_init

from api.settings import get_settings
from worker.celery_app import RUN_JOB, app
from worker.runner import JobRunner


@cache
def runner() -> JobRunner:
    # One database engine per worker process, created after the fork.
    return JobRunner(get_settings())


@worker_process_init.connect
def _fresh_process(**_):
    runner.cache_clear()


@app.task(name=RUN_JOB, acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> str:
    return runner().run(job_id)
