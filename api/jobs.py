"""Job lifecycle on the API side: create (idempotently), dispatch, cancel, reconcile.

States: queued → running → succeeded | failed | cancelled. The row is the truth; a Celery
message only says "look at job X". Losing a message is harmless (the reconciler re-sends
queued jobs), and a duplicate is harmless (a worker claims a job by bumping its attempt
number in a transaction, so only one claim wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import quotas
from api.auth import get_owned
from api.db import Database, utcnow
from api.errors import Problem
from api.models import Artifact, Dataset, Job, Model, Owner, Worker
from api.params import JobCreate, PriorParams, TrainParams, VisualiseParams
from api.settings import Settings
from api.visualise_options import ModelOutline, check_options

log = logging.getLogger("kgan.jobs")

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
STATES = ("queued", "running", "succeeded", "failed", "cancelled")

# Item shapes of the built-ins before image_size/channels: enough to check an architecture
# against the data at POST time instead of failing later in a worker.
BUILTIN_SHAPES: dict[str, tuple[int, ...]] = {
    "ring8": (2,), "grid25": (2,), "mnist": (1, 28, 28), "stacked-mnist": (3, 28, 28), "fashion-mnist": (1, 28, 28),
    "lfw": (3, 250, 250), "lfw-subset": (1, 25, 25),
}


def request_fingerprint(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _item_shape(params: TrainParams, dataset: Dataset | None) -> tuple[int, ...] | None:
    if dataset is None:
        base = BUILTIN_SHAPES.get(params.dataset or "")
    elif dataset.item_shape:
        base = tuple(dataset.item_shape)
    else:
        return None
    if base is None or len(base) == 1:
        return base
    channels = params.channels or base[0]
    if params.image_size is not None:
        return (channels, params.image_size, params.image_size)
    if dataset is not None and len(dataset.meta.get("sizes", [])) > 1:
        raise Problem(422, "Images need resizing",
                      f"Dataset {dataset.id} holds images of several sizes ({dataset.meta['sizes'][:4]}); "
                      "set params.image_size so they can all be resized to one square size.",
                      slug="validation-error")
    if base[1] != base[2]:
        raise Problem(422, "Images need resizing",
                      f"The images are {base[2]}×{base[1]} pixels; the models need square images: "
                      "set params.image_size.", slug="validation-error")
    return (channels, base[1], base[2])


def _data_source(session: Session, owner: Owner, params: TrainParams | PriorParams,
                 settings: Settings) -> Dataset | None:
    from api.datasets import builtin_status

    if params.dataset is not None:
        available, detail = builtin_status(params.dataset, settings)
        if not available:
            raise Problem(422, "Built-in dataset not available", f"{params.dataset}: {detail}.",
                          slug="dataset-unavailable")
        return None
    return get_owned(session, owner, Dataset, params.dataset_id or "", "dataset")


def owned_model(session: Session, owner: Owner, model_id: str) -> Model:
    return get_owned(session, owner, Model, model_id, "model")


@dataclass(frozen=True)
class WorkerMemory:
    """What the admission check compares a job's estimated peak with, and where it comes from."""

    limit_bytes: int
    source: str  # for the message: which worker, or which setting


def worker_memory(session: Session, settings: Settings) -> WorkerMemory:
    """The most memory a live worker has for a job (its GPU's, or its KGAN_WORKER_MEMORY_BYTES on
    a CPU), as the workers report it every heartbeat; with no live worker registered (none
    started yet, or all gone), this server's KGAN_WORKER_MEMORY_BYTES."""
    live_since = utcnow() - timedelta(seconds=settings.lease_s)
    largest = session.execute(select(Worker).where(Worker.seen_at >= live_since)
                              .order_by(Worker.memory_bytes.desc(), Worker.id).limit(1)).scalar_one_or_none()
    if largest is None:
        return WorkerMemory(settings.worker_memory_bytes, "a worker here has {gib} (KGAN_WORKER_MEMORY_BYTES)")
    device = f"{largest.device} ({largest.device_name})" if largest.device_name else largest.device
    return WorkerMemory(largest.memory_bytes, f"the largest running worker has {{gib}} on {device}")


def warm_footprint_estimates() -> None:
    """Count one small model on the meta device, so a submission's first estimate is fast.

    The first count in a process sets up torch's meta device (about a second, several under
    load), and a submission counts inside its database transaction: on SQLite that held the
    write lock, and with it every worker's heartbeat, for that long."""
    from kgan_core.models import default_spec, training_footprint

    training_footprint(default_spec((1, 8, 8)), 1, 1)


def check_footprint(session: Session, params: TrainParams, spec, settings: Settings) -> None:
    """Refuse a run no worker can hold, before a worker dies trying."""
    from kgan_core.config import IMAGE_DEFAULTS, POINT_DEFAULTS
    from kgan_core.models import training_footprint

    defaults = POINT_DEFAULTS if len(spec.item_shape) == 1 else IMAGE_DEFAULTS
    batch_size = params.batch_size or defaults["batch_size"]
    footprint = training_footprint(spec, params.k, batch_size)
    memory = worker_memory(session, settings)
    if footprint.peak_bytes > memory.limit_bytes:
        gib = 1024**3
        raise Problem(422, "Too large for the workers",
                      f"k={params.k} members of width {spec.width} with batch_size={batch_size} have "
                      f"{footprint.parameters:,} parameters and need about {footprint.peak_bytes / gib:.1f} GiB to "
                      f"train; {memory.source.format(gib=f'{memory.limit_bytes / gib:.1f} GiB')}. "
                      "Lower k, width, batch_size or image_size, or add a worker with more memory.",
                      slug="too-large", parameters=footprint.parameters, estimated_bytes=footprint.peak_bytes,
                      limit_bytes=memory.limit_bytes)


def check_train_params(session: Session, owner: Owner, params: TrainParams, settings: Settings) -> Dataset | None:
    """Everything that can be known wrong before a worker starts, answered as a 4xx now."""
    from kgan_core.models import ArchitectureError, default_spec

    dataset = _data_source(session, owner, params, settings)
    shape = _item_shape(params, dataset)
    if shape is not None:
        try:
            spec = default_spec(shape, params.arch, params.latent_dim, params.width)
        except ArchitectureError as exc:
            raise Problem(422, "Architecture does not fit the data", f"{exc}.", slug="validation-error") from exc
        check_footprint(session, params, spec, settings)
    n_items = dataset.n_items if dataset is not None else (params.n_points if shape and len(shape) == 1 else None)
    if n_items is not None and params.limit is not None:
        n_items = min(n_items, params.limit)
    if n_items is not None and params.k > n_items:
        raise Problem(422, "Too many members for the data",
                      f"k={params.k} members need at least {params.k} data items; the data has {n_items}.",
                      slug="validation-error")
    return dataset


def check_prior_params(session: Session, owner: Owner, params: PriorParams,
                       settings: Settings) -> tuple[Dataset | None, Model | None]:
    from kgan_core.prior import vgg16_weight_candidates

    dataset = _data_source(session, owner, params, settings)
    points = dataset.kind == "points" if dataset else len(BUILTIN_SHAPES.get(params.dataset or "", (1, 1, 1))) == 1
    if points:
        raise Problem(422, "A prior needs images", "A prior models images; this dataset holds 2-D points.",
                      slug="validation-error")
    if params.image_size is not None and params.image_size % 4:
        raise Problem(422, "Image size must be divisible by 4",
                      f"Prior images need a side divisible by 4, got image_size={params.image_size}.",
                      slug="validation-error")
    model = owned_model(session, owner, params.model_id) if params.model_id else None
    if params.encoder == "vgg16" and not any(p.is_file() for p in vgg16_weight_candidates(settings.vgg_weights)):
        raise Problem(422, "VGG-16 weights not on this server",
                      "The vgg16 encoder needs VGG-16's ImageNet weights, which this server does not have "
                      "(KGAN_VGG_WEIGHTS). Use encoder 'small' (trained on your data) or 'critic'.",
                      slug="dataset-unavailable")
    return dataset, model


def check_visualise_params(session: Session, owner: Owner, params: VisualiseParams) -> Model:
    model = owned_model(session, owner, params.model_id)
    if params.member is not None and params.member >= model.k:
        raise Problem(422, "No such member", f"Model {model.id} has k={model.k} members, numbered 0 to "
                      f"{model.k - 1}.", slug="validation-error")
    try:
        check_options(params.what, params.options, member=params.member, seed=params.seed,
                      outline=ModelOutline(model.k, model.dataset_kind, model.item_shape, model.step))
    except ValueError as exc:
        raise Problem(422, "Options the visualisation refuses", f"{params.what} of model {model.id}: {exc}. "
                      "Leave an option out for its default.", slug="validation-error") from None
    if params.prior_id is not None:
        prior = get_owned(session, owner, Artifact, params.prior_id, "artifact")
        if prior.kind != "prior":
            raise Problem(422, "Not a prior", f"Artifact {prior.id} is a {prior.kind}, not a prior; train one with "
                          "a train_prior job.", slug="validation-error")
    return model


def create_job(session: Session, owner: Owner, body: JobCreate, idempotency_key: str | None,
               settings: Settings) -> tuple[Job, bool]:
    """Returns (job, created). A retried POST with the same Idempotency-Key returns the first job."""
    fingerprint = request_fingerprint(body)
    if idempotency_key is not None:
        existing = _by_key(session, owner.id, idempotency_key)
        if existing is not None:
            return _same_request(existing, fingerprint), False
    # Caps come after the idempotency lookup: a retried POST gets its job back even at the cap.
    quotas.lock_owner(session, owner)
    quotas.check_job_slots(session, owner, settings)
    quotas.check_storage_for_job(session, owner, settings)
    dataset, model, total = None, None, 1
    if body.kind == "train":
        dataset, total = check_train_params(session, owner, body.params, settings), body.params.steps
    elif body.kind == "train_prior":
        (dataset, model), total = check_prior_params(session, owner, body.params, settings), body.params.steps
    else:
        model = check_visualise_params(session, owner, body.params)
    job = Job(owner_id=owner.id, kind=body.kind, params=body.params.model_dump(mode="json"),
              dataset_id=dataset.id if dataset else None, source_model_id=model.id if model else None,
              idempotency_key=idempotency_key, request_hash=fingerprint, total=total)
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
        raise Problem(422, "Idempotency-Key reused",
                      f"This Idempotency-Key was first used for a different request (job {job.id}). "
                      "Use a new key for a new job, or resend exactly the original body.",
                      slug="idempotency-key-reused")
    return job


def get_owned_job(session: Session, owner: Owner, job_id: str) -> Job:
    return get_owned(session, owner, Job, job_id, "job")


def cancel_job(session: Session, owner: Owner, job_id: str) -> Job:
    job = get_owned_job(session, owner, job_id)
    if job.status in TERMINAL:
        raise Problem(409, "Job already finished",
                      f"Job {job.id} is {job.status}; only queued or running jobs can be cancelled.",
                      slug="job-finished")
    now = utcnow()
    # A queued job is cancelled at once (a worker that later receives its message skips it);
    # a running one is asked to stop and does so at its next progress report, keeping its
    # last checkpoint.
    done = session.execute(update(Job).where(Job.id == job.id, Job.status == "queued")
                           .values(status="cancelled", cancel_requested=True, finished_at=now, updated_at=now))
    if done.rowcount == 0:
        session.execute(update(Job).where(Job.id == job.id, Job.status == "running")
                        .values(cancel_requested=True, updated_at=now))
    session.commit()
    session.refresh(job)
    return job


# --- leases ------------------------------------------------------------------------------


def worker_identity(pid: int | None = None) -> str:
    """The job row's ``worker``: this host and a process of it (this one by default)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(worker: str | None) -> bool:
    """True when the lease holder was a process on this host that no longer exists: a worker
    child killed mid-job, whose message Celery hands straight back. Then there is no need to
    wait for the lease to run out."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))


# --- dispatch and reconciliation ---------------------------------------------------------

Sender = Callable[[str], None]


def dispatch(db: Database, send: Sender, job_id: str) -> bool:
    """Send a job's message and note when; a failure leaves enqueued_at empty for the reconciler."""
    try:
        send(job_id)
    except Exception as exc:  # any broker fault: the row stays queued and is re-sent later
        log.warning("could not send job %s to the broker (%s); the reconciler will retry", job_id, exc)
        return False
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(enqueued_at=utcnow()))
    return True


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


def fail_if_lost_too_often(job: Job, settings: Settings, now: datetime) -> bool:
    """Fail a job whose worker was lost KGAN_MAX_ATTEMPTS times; attempts handed back at a
    graceful shutdown (checkpointed and re-queued) are not losses."""
    losses = job.attempt - job.handed_back
    if losses < settings.max_attempts:
        return False
    job.status, job.finished_at = "failed", now
    job.error_title = "Worker lost too often"
    job.error_detail = (f"The job's worker was lost {losses} times (the limit is {settings.max_attempts}); "
                        "its last checkpoint is kept.")
    return True


def reconcile_once(db: Database, settings: Settings, send: Sender) -> dict[str, int]:
    """Re-queue running jobs whose lease expired and re-send queued jobs whose message may be lost
    (every queued job at once when the broker restarted, otherwise those queued for a long time)."""
    now = utcnow()
    counts = {"requeued": 0, "cancelled": 0, "failed": 0, "dispatched": 0}
    with db.session() as session:
        running = session.scalars(select(Job).where(Job.status == "running")
                                  .with_for_update(skip_locked=True)).all()
        lost = [j for j in running if (j.lease_expires_at is not None and j.lease_expires_at < now)
                or holder_is_dead(j.worker)]
        for job in lost:
            if job.cancel_requested:
                job.status, job.finished_at = "cancelled", now
                counts["cancelled"] += 1
            elif fail_if_lost_too_often(job, settings, now):
                counts["failed"] += 1
            else:
                log.warning("job %s attempt %s lost its lease (worker %s); re-queueing", job.id, job.attempt,
                            job.worker)
                job.status, job.worker, job.lease_expires_at, job.enqueued_at = "queued", None, None, None
                counts["requeued"] += 1
    stale = now - timedelta(seconds=settings.redispatch_after_s)
    if broker_restarted(settings.broker_url):
        # A duplicate message is harmless (claims are fenced); a lost one would strand the job.
        log.warning("the broker restarted; re-sending every queued job's message")
        stale = now
    with db.session() as session:
        ids = session.scalars(select(Job.id).where(
            Job.status == "queued", (Job.enqueued_at.is_(None)) | (Job.enqueued_at <= stale))
            .order_by(Job.created_at).limit(1000)).all()
    for job_id in ids:
        counts["dispatched"] += dispatch(db, send, job_id)
    return counts


def progress_view(job: Job) -> dict[str, Any]:
    fraction = job.step / job.total if job.total else 0.0
    return {"step": job.step, "total": job.total, "fraction": round(min(1.0, fraction), 6),
            "eta_s": job.eta_s if job.status == "running" else None, **job.progress}
