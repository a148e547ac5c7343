"""Response bodies. Requests are validated by api.params (jobs) and the routes' own parameters."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="matching objects in all pages")
    limit: int
    offset: int
    next: str | None = Field(None, description="URL of the next page, if there is one")


class JobError(BaseModel):
    title: str
    detail: str | None


class JobProgress(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int
    total: int
    fraction: float
    eta_s: float | None = Field(None, description="seconds left, estimated from this attempt's speed")
    d_loss: list[float] | None = Field(None, description="latest critic loss per member")
    g_loss: list[float] | None = Field(None, description="latest generator loss per member")
    wasserstein: list[float] | None = Field(None, description="latest Wasserstein estimate per member")
    tile_sizes: list[int] | None = Field(None, description="data items per member's tile")
    events: list[str] | None = Field(None, description="recent notes from the trainer (e.g. a re-seeded tile)")
    elapsed_s: float | None = None
    attempt: int | None = Field(None, description="the attempt these numbers come from")
    reported: bool | None = Field(None, description="false: the current attempt has not reported yet (the "
                                  "numbers of earlier attempts are cleared when a new one starts)")


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    params: dict[str, Any]
    dataset_id: str | None
    attempt: int = Field(description="how many times a worker has started this job")
    cancel_requested: bool
    progress: JobProgress
    error: JobError | None
    model_id: str | None = Field(None, description="the model a succeeded train job produced")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str]


class HealthCheck(BaseModel):
    value: float | None = Field(description="the measured number; null when it could not be measured")
    threshold: float
    flagged: bool
    detail: str = Field(description="what the number is and which side of the threshold is flagged")


class MemberHealth(BaseModel):
    flags: list[str] = Field(description="names of the checks past their threshold; empty for a healthy member")
    checks: dict[str, HealthCheck] = Field(
        description="collapse, critic_inversion, wasserstein, and for images hf_artefacts and saturation")
    feature_space: str | None = Field(None, description="where collapse was measured: judge, pixels or data")


class MemberOut(BaseModel):
    k: int
    tile_size: int
    tile_share: float
    health: MemberHealth | None = Field(None, description="checks from the end of training (null for older models)")
    links: dict[str, str]


class ModelOut(BaseModel):
    id: str
    job_id: str
    k: int
    step: int
    dataset_kind: str
    item_shape: list[int]
    config: dict[str, Any]
    spec: dict[str, Any]
    tile_sizes: list[int]
    tile_shares: list[float]
    metrics: dict[str, Any]
    members: list[MemberOut]
    created_at: datetime
    links: dict[str, str]


class DatasetOut(BaseModel):
    id: str
    name: str
    source: str
    builtin: str | None
    status: str
    kind: str
    n_items: int
    size_bytes: int
    item_shape: list[int] | None
    meta: dict[str, Any]
    created_at: datetime
    links: dict[str, str]


class BuiltinDatasetOut(BaseModel):
    name: str
    kind: str
    available: bool
    detail: str


class ArtifactOut(BaseModel):
    id: str
    kind: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    job_id: str | None
    model_id: str | None
    member: int | None
    meta: dict[str, Any] = Field(description="the numbers that go with the file")
    created_at: datetime
    links: dict[str, str]


class KeyInfo(BaseModel):
    owner: str
