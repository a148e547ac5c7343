"""Typed, bounded job parameters.

Train parameters are TrainConfig's own fields (same types, defaults and bounds), minus the
three a client must not choose on a shared server: ``dataset`` becomes a built-in name or the
id of one of the owner's datasets (never a server path), ``data_root`` and ``device`` are the
deployment's settings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from kgan_core.data import BUILTIN_DATASETS
from kgan_core.train import TrainConfig

SERVER_CHOSEN = frozenset({"dataset", "data_root", "device"})

_train_fields: dict[str, Any] = {
    name: (info.annotation, info) for name, info in TrainConfig.model_fields.items() if name not in SERVER_CHOSEN
}

_TrainFields = create_model("_TrainFields", __config__=ConfigDict(extra="forbid"), **_train_fields)


class TrainParams(_TrainFields):
    """A k-GAN training run: every TrainConfig field except where the data comes from."""

    dataset: str | None = Field(None, description=f"a built-in dataset: {', '.join(BUILTIN_DATASETS)}")
    dataset_id: str | None = Field(None, max_length=64, description="the id of one of your datasets (/v1/datasets)")

    @model_validator(mode="after")
    def _one_source(self) -> TrainParams:
        if (self.dataset is None) == (self.dataset_id is None):
            raise ValueError("give exactly one of 'dataset' (a built-in name) or 'dataset_id' (an uploaded dataset)")
        if self.dataset is not None and self.dataset not in BUILTIN_DATASETS:
            raise ValueError(f"'dataset' must be a built-in dataset ({', '.join(BUILTIN_DATASETS)}); "
                             "upload your own images to /v1/datasets and pass 'dataset_id'")
        return self

    def to_config(self, dataset: str, data_root: str | None, device: str) -> TrainConfig:
        values = self.model_dump(exclude={"dataset", "dataset_id"})
        return TrainConfig(dataset=dataset, data_root=data_root, device=device, **values)


class TrainJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["train"]
    params: TrainParams


# A new kind (train_prior, visualise) becomes a union discriminated by ``kind`` here, together
# with its runner in worker/runner.py, so the API never accepts a kind no worker can run.
JobCreate = TrainJobCreate
JOB_KINDS: tuple[str, ...] = ("train",)
