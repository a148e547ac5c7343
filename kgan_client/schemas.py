"""What the service answers, as typed objects.

These mirror api.schemas but are the client's own: they ignore fields they do not know
(``extra="allow"`` keeps them reachable), so a newer server never breaks an older client,
and a notebook needs only this package, not the server's code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class JobProgress(_Out):
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None
    d_loss: list[float] | None = None
    g_loss: list[float] | None = None
    wasserstein: list[float] | None = None
    tile_sizes: list[int] | None = None
    events: list[str] | None = None
    elapsed_s: float | None = None


class JobError(_Out):
    title: str
    detail: str | None = None


class JobInfo(_Out):
    id: str
    kind: str
    status: str
    params: dict[str, Any]
    dataset_id: str | None = None
    attempt: int = 0
    cancel_requested: bool = False
    progress: JobProgress = Field(default_factory=JobProgress)
    error: JobError | None = None
    model_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class MemberInfo(_Out):
    k: int
    tile_size: int
    tile_share: float
    links: dict[str, str] = Field(default_factory=dict)


class ModelInfo(_Out):
    id: str
    job_id: str
    k: int
    step: int
    dataset_kind: str
    item_shape: list[int]
    config: dict[str, Any]
    spec: dict[str, Any] = Field(default_factory=dict)
    tile_sizes: list[int]
    tile_shares: list[float]
    metrics: dict[str, Any] = Field(default_factory=dict)
    members: list[MemberInfo]
    created_at: datetime
    links: dict[str, str] = Field(default_factory=dict)


class DatasetInfo(_Out):
    id: str
    name: str
    source: str
    builtin: str | None = None
    status: str
    kind: str
    n_items: int
    size_bytes: int
    item_shape: list[int] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    links: dict[str, str] = Field(default_factory=dict)


class BuiltinDataset(_Out):
    name: str
    kind: str
    available: bool
    detail: str


class ArtifactInfo(_Out):
    id: str
    kind: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    job_id: str | None = None
    model_id: str | None = None
    member: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def local_name(self) -> str:
        """The file's name in a download folder: a job never makes two files of one name, so
        prefixing the job keeps names unique across a model's train and visualise jobs."""
        return f"{(self.job_id or self.id)[:8]}-{self.filename}"
