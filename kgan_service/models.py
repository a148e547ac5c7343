"""SQL tables, and the values their status and kind columns take. The job row is the source of
truth for a job; the broker only carries its id."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from kgan_service.db import utcnow
from kgan_service.errors import NotFound


class JobStatus(enum.StrEnum):
    """queued → running → succeeded | failed | cancelled (running goes back to queued when its
    worker is lost or hands it back at shutdown). A StrEnum: the stored values and the API's
    JSON are these plain strings."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobKind(enum.StrEnum):
    """What a job does; each kind has its runner in worker/runner.py."""

    TRAIN = "train"
    TRAIN_PRIOR = "train_prior"
    VISUALISE = "visualise"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both databases (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use kgan_service.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), index=True)
    # Only a hash is stored; the prefix lets a person tell their keys apart.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))  # "upload" | "builtin"
    builtin: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    path: Mapped[str | None] = mapped_column(String(500), default=None)  # relative to the artifact store
    kind: Mapped[str] = mapped_column(String(16))  # "images" | "points"
    n_items: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    item_shape: Mapped[list[Any] | None] = mapped_column(default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner_id", "idempotency_key", name="uq_jobs_owner_idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # a JobKind
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)  # a JobStatus
    params: Mapped[dict[str, Any]] = mapped_column()
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    source_model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # Fencing: every claim increments attempt; a worker may write only while the row still
    # carries its attempt, so a stale worker cannot overwrite a newer attempt's results.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts that ended in a graceful shutdown (checkpointed and re-queued, as a deploy does):
    # unlike a lost worker, they do not count toward KGAN_MAX_ATTEMPTS.
    handed_back: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(255), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    eta_s: Mapped[float | None] = mapped_column(Float, default=None)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)  # latest metrics, tile sizes, events
    error_title: Mapped[str | None] = mapped_column(String(200), default=None)
    error_detail: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Worker(Base):
    """A worker process as it last reported itself (every heartbeat, running a job or idle): what
    submissions check a job's estimated peak memory against. A row unseen for longer than a
    lease is a worker that is gone."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid, as jobs.worker names it
    device: Mapped[str] = mapped_column(String(64))  # what it trains on: cpu, cuda:0, ...
    device_name: Mapped[str | None] = mapped_column(String(200), default=None)  # a GPU's model name
    memory_bytes: Mapped[int] = mapped_column(BigInteger)  # what a job on that device can use
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), index=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    attempt: Mapped[int] = mapped_column(Integer)
    run_path: Mapped[str] = mapped_column(String(500))  # relative to the artifact store
    k: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    dataset_kind: Mapped[str] = mapped_column(String(16))
    item_shape: Mapped[list[Any]] = mapped_column()
    config: Mapped[dict[str, Any]] = mapped_column()
    spec: Mapped[dict[str, Any]] = mapped_column()
    tile_sizes: Mapped[list[Any]] = mapped_column()
    tile_shares: Mapped[list[Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None, index=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), default=None, index=True)
    member: Mapped[int | None] = mapped_column(Integer, default=None)
    kind: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(500))  # relative to the artifact store
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Row = TypeVar("Row")


def get_owned(session: Session, owner: Owner, entity: type[Row], object_id: str, what: str) -> Row:
    """The row, if this owner's; otherwise NotFound: another owner's object must look absent, not forbidden."""
    row = session.get(entity, object_id)
    if row is None or row.owner_id != owner.id:  # type: ignore[attr-defined]
        raise NotFound(what, object_id)
    return row


def uploaded_archive_of(session: Session, model_id: str) -> str | None:
    """The store key of the uploaded archive a model was trained on; None for a built-in dataset.
    Its run.json names the archive where the training worker had it, which is elsewhere on any
    other host."""
    model = session.get(Model, model_id)
    job = session.get(Job, model.job_id) if model is not None else None
    dataset = session.get(Dataset, job.dataset_id) if job is not None and job.dataset_id else None
    return dataset.path if dataset is not None and dataset.source == "upload" else None
