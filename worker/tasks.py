"""Celery tasks. Nothing here imports torch at module level: the prefork parent loads this
module before it forks, and CUDA must first be touched in the child that runs the job.

Graceful shutdown: Celery's warm shutdown (SIGTERM to the worker) waits for the running task
to finish, which for a week-long job is never. So the parent, on ``worker_shutting_down``,
sends SIGUSR2 to its pool processes; a pool process that gets SIGUSR2 or SIGTERM (a signal to
the whole process group) asks its running job to stop. The trainer checkpoints at its next
step, the job goes back to the queue, the task returns, and the worker exits.

Out of memory: a pool process the kernel's OOM killer takes dies by SIGKILL, which Celery
reports to the main process as a lost worker and re-delivers. ``JobRequest`` tells that case
apart by the memory cgroup's OOM kill count (worker/memory.py) and fails the job once instead.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from functools import cache

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutting_down
from celery.worker.request import Request

from kgan_service.settings import get_settings
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


_registration = None


@worker_init.connect
def _clear_scratch(**_):
    """In the main process, before any pool process takes a job: the scratch folders of attempts
    that are over (a worker killed on this host left them; their checkpoints are in the store).
    A running attempt's folder stays: another worker on this host with the same scratch may own it."""
    from sqlalchemy import select

    from kgan_service.db import Database
    from kgan_service.models import Job, JobStatus
    from worker.scratch import Scratch

    settings = get_settings()
    scratch = Scratch(settings.scratch, None, settings.worker_cache_bytes)
    if not scratch.attempt_folders():
        return
    db = Database(settings)  # closed at once: pool processes must not inherit its connections
    try:
        with db.session() as session:
            live = set(session.execute(select(Job.id, Job.attempt).where(Job.status == JobStatus.RUNNING)).tuples())
        gone = scratch.remove_attempts_that_are_over(live)
    except Exception:  # the database is away: the folders go at the next start
        log.exception("could not tell which attempt folders in %s are over; kept them", settings.scratch)
        return
    finally:
        db.dispose()
    if gone:
        log.info("removed %d attempt folder(s) of attempts that are over from %s", gone, settings.scratch)


@worker_process_init.connect
def _fresh_process(**_):
    global _registration
    runner.cache_clear()
    from kgan_core.runtime import keep_freed_memory  # no torch import; see the module docstring
    from worker.registry import Registration

    keep_freed_memory()
    signal.signal(STOP_SIGNAL, _on_stop_signal)
    # This process's device and memory in the workers table, for the API's admission check.
    _registration = Registration(runner().settings, runner().db).start()


@worker_process_shutdown.connect
def _leave_registry(**_):
    if _registration is not None:
        _registration.stop()


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


class JobRequest(Request):
    """A job's delivery as the worker's main process sees it. A pool process killed by the
    kernel's OOM killer would otherwise be a lost worker, its job re-delivered and run out of
    memory again up to KGAN_MAX_ATTEMPTS times: here it fails the job once, saying why."""

    oom_kills_before: int | None = None

    def on_accepted(self, pid, time_accepted):
        # When a pool process takes the job, before the job allocates anything. (Not in
        # execute_using_pool: Celery's per-task request class replaces that method.)
        from worker.memory import oom_kills

        self.oom_kills_before = oom_kills()
        return super().on_accepted(pid, time_accepted)

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        # Before the message is handed back (super() re-queues it): the next delivery then finds
        # the job failed and skips it.
        exc = exc_info.exception
        if self.killed_by_oom_killer(exc.exc if isinstance(exc, ExceptionWithTraceback) else exc):
            self.fail_job_for_memory()
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def killed_by_oom_killer(self, exc: BaseException) -> bool:
        from worker.memory import oom_kills

        if not isinstance(exc, WorkerLostError) or self.worker_pid is None:
            return False
        signalled = re.search(r"signal (\d+)", str(exc))
        if signalled is None or int(signalled.group(1)) != signal.SIGKILL:
            return False
        after = oom_kills()
        return self.oom_kills_before is not None and after is not None and after > self.oom_kills_before

    def fail_job_for_memory(self) -> None:
        from kgan_service.db import Database
        from kgan_service.jobs import fail_oom_killed
        from kgan_service.workers import worker_identity

        job_id = str(self.args[0]) if self.args else None
        if job_id is None:
            return
        # An engine of its own, closed at once: pool processes forked later must not inherit
        # the main process's database connections.
        db = Database(get_settings())
        try:
            if fail_oom_killed(db, job_id, worker_identity(self.worker_pid)):
                log.warning("job %s: its pool process %s was killed by the OOM killer; failed, not retried",
                            job_id, self.worker_pid)
        except Exception:  # the database is away: the job is retried as before, not lost
            log.exception("job %s: could not record that the OOM killer stopped it", job_id)
        finally:
            db.dispose()


class JobTask(Task):
    Request = JobRequest


@app.task(name=RUN_JOB, base=JobTask, acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> str:
    _install_stop_handlers()
    return runner().run(job_id)
