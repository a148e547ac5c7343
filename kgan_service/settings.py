"""The one settings object for the API, the worker, migrations and the embedded command.

Every value comes from the environment with the ``KGAN_`` prefix (``KGAN_DATABASE_URL``,
``KGAN_BROKER_URL``, ...). The defaults are the embedded deployment: SQLite and an artifact
folder under ``./var``; ``kgan serve`` adds the broker URL of the Redis server it starts.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GiB = 1024**3
MiB = 1024**2

# A Celery queue's name is also a Redis key: keep it to plain characters.
QUEUE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
QUEUE_LIST = r"^\s*[A-Za-z0-9_.-]{1,64}\s*(,\s*[A-Za-z0-9_.-]{1,64}\s*)*$"
# A worker's device, and a job's device preference (kgan_service.queue routes by it).
DEVICE = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def _machine_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): a documented 16 GiB
        return 16 * GiB


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KGAN_", extra="forbid")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="embedded defaults live here: SQLite db, artifacts, Redis")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir")
    broker_url: str | None = Field(None, description="Redis URL of the Celery broker (kgan serve sets it)")
    artifact_dir: Path | None = Field(None, description="checkpoints, uploads, artifacts; default data_dir/artifacts")
    artifact_url: str | None = Field(
        None, description="the artifact store: file:///folder or s3://bucket/prefix "
        "(endpoint and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); "
        "default: the artifact_dir folder")
    builtin_data_root: Path | None = Field(
        None, description="folder holding built-in datasets' files (mnist/, fashion-mnist/, ...)")
    vgg_weights: Path | None = Field(
        None, description="VGG-16 ImageNet weights for the prior's vgg16 encoder (default: torchvision's cache)")
    queue: str = Field("kgan", pattern=QUEUE_NAME,
                       description="the default Celery queue: jobs without a device preference go here")
    worker_queues: str | None = Field(
        None, pattern=QUEUE_LIST, description="comma-separated queues a worker consumes, e.g. gpu,kgan "
        "or cpu,kgan; default: the default queue alone")
    gpu_queue: str | None = Field(
        None, pattern=QUEUE_NAME, description="queue for jobs that ask for a GPU (cuda, cuda:N, mps); "
        "unset: the default queue, so a deployment without GPU and CPU queues runs them as before")
    cpu_queue: str | None = Field(
        None, pattern=QUEUE_NAME, description="queue for jobs that ask for the CPU; unset: the default queue")

    # --- workers ---------------------------------------------------------------------------
    worker_device: str = Field("auto", pattern=DEVICE)
    worker_scratch: Path | None = Field(
        None, description="a worker's own folder: the attempt it trains and its cache of datasets, models and "
        "priors fetched from the artifact store; default artifact_dir/worker-scratch. Never shared")
    worker_cache_bytes: int = Field(
        10 * GiB, ge=0, le=1024**5, description="files a worker keeps in its scratch cache; the least recently "
        "used are removed above it (the file a job is using is kept)")
    lease_s: float = Field(30.0, ge=2.0, le=3600.0, description="a running job without a heartbeat this long is lost")
    heartbeat_s: float = Field(5.0, ge=0.2, le=600.0)
    reconcile_interval_s: float = Field(5.0, ge=0.0, le=3600.0, description="0 turns the API's reconciler off")
    redispatch_after_s: float = Field(
        600.0, ge=1.0, le=86_400.0, description="re-send a still-queued job's message after this long (lost broker)")
    max_attempts: int = Field(20, ge=1, le=1000, description="worker losses a job survives before it fails "
                              "(graceful shutdowns, which checkpoint and re-queue it, do not count)")
    job_time_limit_s: int = Field(
        7 * 86_400, ge=1, le=90 * 86_400,
        description="wall-clock seconds from a job's first start; past it the job fails, keeping its checkpoint")

    worker_memory_bytes: int = Field(
        default_factory=lambda: _machine_memory_bytes(), ge=64 * MiB, le=1024**5,
        description="memory one worker can give a job (default: this machine's total); a train job whose "
        "estimated peak (kgan_core.models.training_footprint) is over it is refused with 422")

    # --- per-owner limits --------------------------------------------------------------------
    max_queued_jobs_per_owner: int = Field(
        100, ge=1, le=1_000_000, description="unfinished (queued or running) jobs one owner may have; more get 429")
    max_stored_bytes_per_owner: int = Field(
        100 * GiB, ge=0, le=1024**5, description="uploaded archives plus job artifacts per owner; more get 413/409")

    # --- uploads ---------------------------------------------------------------------------
    max_upload_bytes: int = Field(1 * GiB, ge=1024, le=1024 * GiB)
    max_archive_entries: int = Field(100_000, ge=1, le=10_000_000)
    max_uncompressed_bytes: int = Field(4 * GiB, ge=1024, le=4096 * GiB)
    max_image_pixels: int = Field(4096 * 4096, ge=64, le=2**31)
    max_path_depth: int = Field(16, ge=1, le=256)
    stale_upload_s: float = Field(
        3600.0, ge=1.0, le=30 * 86_400.0, description="an upload's .part file unwritten this long is from a killed "
        "API process; removed at start and by the reconciler")

    # --- request bodies ----------------------------------------------------------------------
    max_request_body_bytes: int = Field(
        1 * MiB, ge=1024, le=1 * GiB, description="largest body of any request but an archive upload; "
        "more get 413 before the body is parsed")

    # --- serving ---------------------------------------------------------------------------
    render_device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")
    model_cache_size: int = Field(8, ge=1, le=1024, description="trained models kept loaded in the API process")
    model_cache_bytes: int | None = Field(
        2 * GiB, ge=1, le=1024 * GiB, description="memory the loaded models may take in the API process "
        "(weights, tiles, data); the least recently used are dropped first")
    artifact_redirect_s: int = Field(
        0, ge=0, le=7 * 86_400, description="on an S3 store, answer an artifact GET with a redirect to a presigned "
        "URL valid this many seconds (the bytes then bypass the API); 0 streams them through the API")
    max_render_n: int = Field(1024, ge=1, le=65_536, description="most samples one PNG request may ask for")

    @field_validator("data_dir", "artifact_dir", "worker_scratch", "builtin_data_root", "vgg_weights")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Resolved once, so the API and a worker started from another folder agree.
        return value.expanduser().resolve() if value is not None else None

    @property
    def db_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.data_dir / 'kgan.db'}"
        # One PostgreSQL driver everywhere: psycopg 3.
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def artifacts(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def artifact_store_url(self) -> str:
        return self.artifact_url or self.artifacts.as_uri()

    @property
    def scratch(self) -> Path:
        return self.worker_scratch or self.artifacts / "worker-scratch"

    @property
    def worker_queue_names(self) -> tuple[str, ...]:
        """The queues a worker consumes, in the order given, each once."""
        if not self.worker_queues:
            return (self.queue,)
        return tuple(dict.fromkeys(name.strip() for name in self.worker_queues.split(",")))

    @property
    def visibility_timeout_s(self) -> int:
        # Redis redelivers an unacknowledged message after this; it must outlast any job.
        return self.job_time_limit_s + 3600


@lru_cache
def get_settings() -> Settings:
    return Settings()
