"""A job's whole life, for the API and the workers alike: create (idempotently), dispatch, claim
with fencing, heartbeat, progress, record success or failure, hand back at shutdown, cancel,
fail when lost too often, and reconcile.

States (JobStatus): queued → running → succeeded | failed | cancelled. The row is the truth; a
Celery message only says "look at job X". Losing a message is harmless (the reconciler re-sends
queued jobs), and a duplicate is harmless (a worker claims a job by bumping its attempt number
in a transaction, so only one claim wins).

Fencing: a claim increments the job's ``attempt``, and every later write of that attempt says
``WHERE id = … AND attempt = <mine> AND status = 'running'``. A worker whose lease was taken
over (it stalled, or the reconciler re-queued it) finds its writes refused, stops, and never
touches the newer attempt's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kgan_service import quotas
from kgan_service.db import Database, utcnow
from kgan_service.errors import IdempotencyKeyReused, JobFinished
from kgan_service.models import TERMINAL, Artifact, Job, JobKind, JobStatus, Model, Owner, get_owned
from kgan_service.settings import Settings
from kgan_service.workers import holder_is_dead

log = logging.getLogger("kgan.jobs")

MAX_ERROR_DETAIL_CHARS = 2000
OUT_OF_MEMORY_ADVICE = ("make it smaller (k, width, batch_size, image_size) or give the workers more memory "
                        "(KGAN_WORKER_MEMORY_BYTES is what submissions are checked against)")

# --- creating ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobInputs:
    """What a checked request reads: the dataset and the model it names, and how many steps it takes."""

    dataset_id: str | None = None
    source_model_id: str | None = None
    total: int = 1


def create_job(session: Session, owner: Owner, kind: JobKind, params: dict[str, Any], fingerprint: str,
               idempotency_key: str | None, settings: Settings, check: Callable[[], JobInputs]) -> tuple[Job, bool]:
    """Returns (job, created). A retried request with the same Idempotency-Key returns the first
    job. ``check`` validates the request against the owner's data (it raises to refuse); it runs
    after the quota checks, in the transaction that holds the owner's lock."""
    if idempotency_key is not None:
        existing = _by_key(session, owner.id, idempotency_key)
        if existing is not None:
            return _same_request(existing, fingerprint), False
    # Caps come after the idempotency lookup: a retried request gets its job back even at the cap.
    quotas.lock_owner(session, owner)
    quotas.check_job_slots(session, owner, settings)
    quotas.check_storage_for_job(session, owner, settings)
    inputs = check()
    job = Job(owner_id=owner.id, kind=kind, params=params, dataset_id=inputs.dataset_id,
              source_model_id=inputs.source_model_id, idempotency_key=idempotency_key, request_hash=fingerprint,
              total=inputs.total)
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # Two retries of one request raced; the other one's insert won.
        session.rollback()
        existing = _by_key(session, owner.id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _same_request(existing, fingerprint), False
    return job, True


def _by_key(session: Session, owner_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key))


def _same_request(job: Job, fingerprint: str) -> Job:
    if job.request_hash != fingerprint:
        raise IdempotencyKeyReused("Idempotency-Key reused",
                                   f"This Idempotency-Key was first used for a different request (job {job.id}). "
                                   "Use a new key for a new job, or resend exactly the original body.")
    return job


def get_owned_job(session: Session, owner: Owner, job_id: str) -> Job:
    return get_owned(session, owner, Job, job_id, "job")


def cancel_job(session: Session, owner: Owner, job_id: str) -> Job:
    job = get_owned_job(session, owner, job_id)
    if job.status in TERMINAL:
        raise JobFinished("Job already finished",
                          f"Job {job.id} is {job.status}; only queued or running jobs can be cancelled.")
    now = utcnow()
    # A queued job is cancelled at once (a worker that later receives its message skips it);
    # a running one is asked to stop and does so at its next progress report, keeping its
    # last checkpoint.
    done = session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.QUEUED).values(
        status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now))
    if done.rowcount == 0:
        session.execute(update(Job).where(Job.id == job.id, Job.status == JobStatus.RUNNING)
                        .values(cancel_requested=True, updated_at=now))
    session.commit()
    session.refresh(job)
    return job


# --- dispatch ------------------------------------------------------------------------------

class Sender(Protocol):
    """Puts a job's message on a queue; ``device`` is the job's device preference, given only
    when it has one (the queue may be chosen by it)."""

    def __call__(self, job_id: str, device: str | None = None) -> None: ...


def device_preference(params: dict[str, Any]) -> str | None:
    """The device a job's params ask for, or None when they name none."""
    device = params.get("device")
    return device if isinstance(device, str) else None


def dispatch(db: Database, send: Sender, job_id: str, params: dict[str, Any] | None = None) -> bool:
    """Send a job's message (with ``params``' device preference) and note when; a failure leaves
    enqueued_at empty for the reconciler."""
    device = device_preference(params or {})
    try:
        if device is None:
            send(job_id)
        else:
            send(job_id, device=device)
    except Exception as exc:  # any broker fault: the row stays queued and is re-sent later
        log.warning("could not send job %s to the broker (%s); the reconciler will retry", job_id, exc)
        return False
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                        .values(enqueued_at=utcnow()))
    return True


def dispatch_again(db: Database, send: Sender, job_id: str) -> bool:
    """Dispatch a job whose message a worker hands back untouched (it is shutting down)."""
    with db.session() as session:
        params = session.scalar(select(Job.params).where(Job.id == job_id))
    return dispatch(db, send, job_id, params)


# --- claiming and fenced writes ----------------------------------------------------------


@dataclass
class Claim:
    """One attempt at a job, as the worker that claimed it holds it."""

    job_id: str
    attempt: int
    kind: str  # a JobKind
    params: dict
    dataset_id: str | None
    started_at: datetime


def deadline(started_at: datetime, settings: Settings) -> datetime:
    return started_at + timedelta(seconds=settings.job_time_limit_s)


def time_limit_detail(settings: Settings) -> str:
    return (f"The job ran past this server's limit of {settings.job_time_limit_s} s from its first start "
            "(KGAN_JOB_TIME_LIMIT_S); its last checkpoint is kept.")


def fail_if_lost_too_often(job: Job, settings: Settings, now: datetime) -> bool:
    """Fail a job whose worker was lost KGAN_MAX_ATTEMPTS times; attempts handed back at a
    graceful shutdown (checkpointed and re-queued) are not losses."""
    losses = job.attempt - job.handed_back
    if losses < settings.max_attempts:
        return False
    job.status, job.finished_at = JobStatus.FAILED, now
    job.error_title = "Worker lost too often"
    job.error_detail = (f"The job's worker was lost {losses} times (the limit is {settings.max_attempts}); "
                        "its last checkpoint is kept.")
    return True


def claim(db: Database, settings: Settings, job_id: str, worker: str) -> Claim | None:
    """Take a job for ``worker`` as a new attempt, or None when it is not to be run (gone,
    finished, held by a live worker, cancelled, past its time limit, lost too often)."""
    now = utcnow()
    with db.session() as s:
        job = s.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
        if job is None:
            log.warning("job %s does not exist; dropping its message", job_id)
            return None
        if job.status in TERMINAL:
            return None
        if job.status == JobStatus.RUNNING:
            expired = job.lease_expires_at is not None and job.lease_expires_at < now
            if not (expired or holder_is_dead(job.worker)):
                log.info("job %s is running on %s; dropping a duplicate message", job_id, job.worker)
                return None
        if job.cancel_requested:
            job.status, job.finished_at = JobStatus.CANCELLED, now
            return None
        if job.started_at is not None and deadline(job.started_at, settings) < now:
            job.status, job.finished_at = JobStatus.FAILED, now
            job.error_title, job.error_detail = "Time limit reached", time_limit_detail(settings)
            return None
        if fail_if_lost_too_often(job, settings, now):
            return None
        job.attempt += 1
        job.status, job.worker = JobStatus.RUNNING, worker
        # What an earlier attempt reported describes a process that is gone: until this one
        # reports (progress.attempt then names it), the progress says only that it has not.
        if job.attempt > 1:
            job.progress, job.eta_s = {"reported": False}, None
        job.heartbeat_at, job.lease_expires_at = now, now + timedelta(seconds=settings.lease_s)
        job.started_at = job.started_at or now
        return Claim(job.id, job.attempt, job.kind, dict(job.params), job.dataset_id, job.started_at)


def fenced(db: Database, claim: Claim, **values: Any) -> bool:
    """Write to the job row only if this attempt still owns it."""
    with db.session() as s:
        done = s.execute(update(Job).where(Job.id == claim.job_id, Job.attempt == claim.attempt,
                                           Job.status == JobStatus.RUNNING).values(updated_at=utcnow(), **values))
        return done.rowcount == 1


def heartbeat(db: Database, settings: Settings, claim: Claim) -> bool:
    """Extend this attempt's lease; False when the attempt no longer owns the job."""
    now = utcnow()
    return fenced(db, claim, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.lease_s))


def cancel_requested(db: Database, job_id: str) -> bool:
    with db.session() as s:
        return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def record_failure(db: Database, claim: Claim, title: str, detail: str) -> None:
    # A message may quote what the job was given; never store (and serve) more than a few lines of it.
    if len(detail) > MAX_ERROR_DETAIL_CHARS:
        detail = detail[:MAX_ERROR_DETAIL_CHARS] + " ... (cut)"
    fenced(db, claim, status=JobStatus.FAILED, error_title=title[:200], error_detail=detail, finished_at=utcnow(),
           eta_s=None)


def record_cancelled(db: Database, claim: Claim) -> None:
    fenced(db, claim, status=JobStatus.CANCELLED, finished_at=utcnow(), eta_s=None)


def hand_back(db: Database, claim: Claim, step: int | None) -> bool:
    """A graceful shutdown checkpointed the job at ``step`` (None: it has no checkpoint): back to
    the queue, not counted as a lost worker. False when the attempt no longer owns the job."""
    at_step = {} if step is None else {"step": step}
    return fenced(db, claim, status=JobStatus.QUEUED, worker=None, lease_expires_at=None, enqueued_at=None,
                  eta_s=None, handed_back=Job.handed_back + 1, **at_step)


@dataclass(frozen=True)
class Output:
    """A file a job made, as its artifact row records it (``key``: its path in the artifact store)."""

    kind: str
    key: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    member: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def record_success(db: Database, claim: Claim, outputs: Sequence[Output], *, model: dict[str, Any] | None = None,
                   model_id: str | None = None, step: int | None = None) -> str:
    """In one fenced transaction: the model row (``model``: its columns, when the job trained
    one), an artifact row per output (linked to that model, or to ``model_id``), and the job
    ``succeeded`` at ``step`` (its total when None). Returns "succeeded", or "superseded" when
    the attempt no longer owns the job."""
    with db.session() as s:
        job = s.execute(select(Job).where(Job.id == claim.job_id).with_for_update()).scalar_one()
        if job.attempt != claim.attempt or job.status != JobStatus.RUNNING:
            return "superseded"
        if model is not None:
            row = Model(owner_id=job.owner_id, job_id=job.id, attempt=claim.attempt, **model)
            s.add(row)
            s.flush()
            model_id = row.id
        for out in outputs:
            s.add(Artifact(owner_id=job.owner_id, job_id=job.id, model_id=model_id, member=out.member, kind=out.kind,
                           filename=out.filename, path=out.key, media_type=out.media_type, size_bytes=out.size_bytes,
                           sha256=out.sha256, meta=out.meta))
        job.status, job.finished_at, job.eta_s = JobStatus.SUCCEEDED, utcnow(), None
        job.step = job.total if step is None else step
    return "succeeded"


def fail_oom_killed(db: Database, job_id: str, worker: str) -> bool:
    """The kernel's OOM killer took ``worker``, the pool process running ``job_id``: fail the
    job once instead of letting the next delivery retry it. Matches while that process is still
    the holder, or once the reconciler has re-queued it (no later claim yet); a job some other
    process has claimed since is left alone. Returns whether the job was failed."""
    now = utcnow()
    held_by_it = (Job.status == JobStatus.RUNNING) & (Job.worker == worker)
    requeued_after_it = (Job.status == JobStatus.QUEUED) & Job.worker.is_(None) & (Job.attempt > 0)
    with db.session() as s:
        done = s.execute(update(Job).where(Job.id == job_id, held_by_it | requeued_after_it).values(
            status=JobStatus.FAILED, error_title="Out of memory", finished_at=now, eta_s=None, updated_at=now,
            error_detail="The kernel's out-of-memory killer stopped the job's worker process; running it "
                         f"again would run out again, so it is not retried: {OUT_OF_MEMORY_ADVICE}."))
        return done.rowcount == 1


# --- reconciliation ------------------------------------------------------------------------

# The run_id each broker had at the last reconciler pass, by URL (one API process's memory).
_broker_run_ids: dict[str, str] = {}


def broker_restarted(broker_url: str | None) -> bool:
    """True when the Redis broker's run_id changed since the last look: it restarted, and
    unless it persisted its data every queued message is gone. False while it is down (the
    next pass after it is back answers) and on the first look."""
    if not broker_url or not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return False
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            run_id = str(client.info("server")["run_id"])
        finally:
            client.close()
    except Exception:  # down, or not a Redis we can ask: the time-based re-send still covers it
        return False
    previous = _broker_run_ids.get(broker_url)
    _broker_run_ids[broker_url] = run_id
    return previous is not None and previous != run_id


def reconcile_once(db: Database, settings: Settings, send: Sender) -> dict[str, int]:
    """Re-queue running jobs whose lease expired and re-send queued jobs whose message may be lost
    (every queued job at once when the broker restarted, otherwise those queued for a long time)."""
    now = utcnow()
    counts = {"requeued": 0, "cancelled": 0, "failed": 0, "dispatched": 0}
    with db.session() as session:
        running = session.scalars(select(Job).where(Job.status == JobStatus.RUNNING)
                                  .with_for_update(skip_locked=True)).all()
        lost = [j for j in running if (j.lease_expires_at is not None and j.lease_expires_at < now)
                or holder_is_dead(j.worker)]
        for job in lost:
            if job.cancel_requested:
                job.status, job.finished_at = JobStatus.CANCELLED, now
                counts["cancelled"] += 1
            elif fail_if_lost_too_often(job, settings, now):
                counts["failed"] += 1
            else:
                log.warning("job %s attempt %s lost its lease (worker %s); re-queueing", job.id, job.attempt,
                            job.worker)
                job.status, job.worker, job.lease_expires_at, job.enqueued_at = JobStatus.QUEUED, None, None, None
                counts["requeued"] += 1
    stale = now - timedelta(seconds=settings.redispatch_after_s)
    if broker_restarted(settings.broker_url):
        # A duplicate message is harmless (claims are fenced); a lost one would strand the job.
        log.warning("the broker restarted; re-sending every queued job's message")
        stale = now
    with db.session() as session:
        queued = session.execute(select(Job.id, Job.params).where(
            Job.status == JobStatus.QUEUED, (Job.enqueued_at.is_(None)) | (Job.enqueued_at <= stale))
            .order_by(Job.created_at).limit(1000)).all()
    for job_id, params in queued:
        counts["dispatched"] += dispatch(db, send, job_id, params)
    return counts


def progress_view(job: Job) -> dict[str, Any]:
    fraction = job.step / job.total if job.total else 0.0
    return {"step": job.step, "total": job.total, "fraction": round(min(1.0, fraction), 6),
            "eta_s": job.eta_s if job.status == JobStatus.RUNNING else None, **job.progress}
