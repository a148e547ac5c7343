"""Celery tasks. Nothing here imports torch at module level: the prefork parent loads this
module before it forks, and CUDA must first be touched in the child that runs the job.

Graceful shutdown: Celery's warm shutdown (SIGTERM to the worker) waits for the running task
to finish, which for a week-long job is never. So the parent, on ``worker_shutting_down``,
sends SIGUSR2 to its pool processes; a pool process that gets SIGUSR2 or SIGTERM (a signal to
the whole process group) asks its running job to stop. The trainer checkpoints at its next
step, the job goes back to the queue, the task returns, and the worker exits.
"""

from __future__ import annotations

import logging
import os
import signal
from functools import cache

from celery.signals import worker_process_init, worker_shutting_down

from api.settings import get_settings
from worker.celery_app import RUN_JOB, app
from worker.runner import SHUTDOWN, JobRunner

log = logging.getLogger("kgan.worker")

STOP_SIGNAL = signal.SIGUSR2


@cache
def runner() -> JobRunner:
    # One database engine per worker process, created after the fork.
    return JobRunner(get_settings())


_billiard_term = signal.SIG_DFL


def _on_stop_signal(signum, frame) -> None:
    if SHUTDOWN.request() or signum != signal.SIGTERM:
        return
    # SIGTERM to an idle pool process: nothing to save; exit the way billiard would have.
    if callable(_billiard_term):
        _billiard_term(signum, frame)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_stop_handlers() -> None:
    """In a pool process. Called when a task starts: billiard sets its own SIGTERM handler after
    worker_process_init, so ours must come later than that."""
    global _billiard_term
    if signal.getsignal(signal.SIGTERM) is not _on_stop_signal:
        _billiard_term = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(STOP_SIGNAL, _on_stop_signal)


@worker_process_init.connect
def _fresh_process(**_):
    runner.cache_clear()
    from kgan_core.runtime import keep_freed_memory  # no torch import; see the module docstring

    keep_freed_memory()
    signal.signal(STOP_SIGNAL, _on_stop_signal)


@worker_shutting_down.connect
def _stop_running_jobs(sig=None, how=None, **_):
    """In the worker's main process: tell every pool process to checkpoint and re-queue its job."""
    from billiard.process import active_children

    for child in active_children():
        try:
            os.kill(child.pid, STOP_SIGNAL)
        except (ProcessLookupError, TypeError):
            continue
        log.info("%s shutdown (%s): asked pool process %s to checkpoint and re-queue its job", how, sig, child.pid)


@app.task(name=RUN_JOB, acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> str:
    _install_stop_handlers()
    return runner().run(job_id)
