"""Typed, bounded job parameters.

Train and train_prior parameters are TrainConfig's and PriorConfig's own fields (same
types, defaults and bounds), minus those a client must not choose on a shared server: a
``dataset`` becomes a built-in name or the id of one of the owner's datasets, a ``run``
becomes the id of one of the owner's models (never a server path), and ``data_root``,
``device`` and ``vgg_weights`` are the deployment's settings. A job's ``device`` is only a
preference for a kind of worker (kgan_service.queue routes by it); the worker that takes the job
trains on its own KGAN_WORKER_DEVICE.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from kgan_core.data.catalogue import BUILTIN_NAMES
from kgan_core.prior import PriorConfig
from kgan_core.train import TrainConfig
from kgan_core.visualise import VISUALISATIONS
from kgan_service.models import JobKind
from kgan_service.settings import DEVICE

SERVER_CHOSEN = frozenset({"dataset", "data_root", "device", "run", "vgg_weights"})


def _fields_of(config: type[BaseModel]) -> dict[str, Any]:
    return {name: (info.annotation, info) for name, info in config.model_fields.items() if name not in SERVER_CHOSEN}


def _takes_numbers_only(annotation: Any) -> bool:
    """A field for int or float values that takes no booleans (``int | None`` yes, ``bool`` no)."""
    args = set(typing.get_args(annotation)) or {annotation}
    return bool(args & {int, float}) and bool not in args


class NumbersAreNotBooleans(BaseModel):
    """``true`` is no number: pydantic would take it as 1 (``"k": true`` trained one member)."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = sorted(name for name, value in data.items() if isinstance(value, bool) and name in cls.model_fields
                         and _takes_numbers_only(cls.model_fields[name].annotation))
            if bad:
                raise ValueError(f"{', '.join(bad)} must be a number, not true/false")
        return data


class JobParams(NumbersAreNotBooleans):
    """What every kind of job takes: the kind of worker it prefers, which picks its queue."""

    device: str | None = Field(None, pattern=DEVICE, description=(
        "the kind of worker to run it: cpu, cuda, cuda:N or mps (sent to the server's CPU or GPU queue "
        "where it has one), or auto / left out for any worker"))


class DataSource(JobParams):
    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, description=f"a built-in dataset: {', '.join(BUILTIN_NAMES)}")
    dataset_id: str | None = Field(None, max_length=64, description="the id of one of your datasets (/v1/datasets)")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.dataset_id is None):
            raise ValueError("give exactly one of 'dataset' (a built-in name) or 'dataset_id' (an uploaded dataset)")
        if self.dataset is not None and self.dataset not in BUILTIN_NAMES:
            raise ValueError(f"'dataset' must be a built-in dataset ({', '.join(BUILTIN_NAMES)}); "
                             "upload your own images to /v1/datasets and pass 'dataset_id'")
        return self


_TrainFields = create_model("_TrainFields", __base__=DataSource, **_fields_of(TrainConfig))
_PriorFields = create_model("_PriorFields", __base__=DataSource, **_fields_of(PriorConfig))


class TrainParams(_TrainFields):
    """A k-GAN training run: every TrainConfig field except where the data comes from."""

    def to_config(self, dataset: str, data_root: str | None, device: str) -> TrainConfig:
        values = self.model_dump(exclude={"dataset", "dataset_id"})
        return TrainConfig(dataset=dataset, data_root=data_root, device=device, **values)


class PriorParams(_PriorFields):
    """A learned image prior (encoder E + decoder G_prior): every PriorConfig field except
    where the data comes from; ``model_id`` names the model whose critic is the encoder when
    ``encoder`` is 'critic'."""

    model_id: str | None = Field(None, max_length=64, description="with encoder='critic': one of your models")

    @model_validator(mode="after")
    def _critic_needs_model(self) -> PriorParams:
        if (self.encoder == "critic") != (self.model_id is not None):
            raise ValueError("encoder='critic' needs 'model_id' (the model whose critic encodes), and only it does")
        return self

    def to_config(self, dataset: str, data_root: str | None, device: str, run: str | None,
                  vgg_weights: str | None) -> PriorConfig:
        values = self.model_dump(exclude={"dataset", "dataset_id", "model_id"})
        return PriorConfig(dataset=dataset, data_root=data_root, device=device, run=run, vgg_weights=vgg_weights,
                           **values)


# Bounded before the visualisation sees them (api/visualise_options.py checks them against it).
_OptionNumber = Annotated[float, Field(allow_inf_nan=False)]
_OptionText = Annotated[str, Field(max_length=128)]
OptionValue = int | _OptionNumber | _OptionText | bool | None | Annotated[
    list[int | _OptionNumber | _OptionText], Field(max_length=64)]
# Chosen by the server: a file path on its disk, or the prior given as prior_id.
SERVER_OPTIONS = frozenset({"prior", "vgg_weights"})


class VisualiseParams(JobParams):
    """One of kgan_core.visualise's visualisations of a model, rendered by a worker and kept
    as an artifact with its numbers (for the heavy ones: activation maximisation, principal
    directions, cross-member matrices)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(max_length=64)
    what: Literal[tuple(VISUALISATIONS)]  # type: ignore[valid-type]
    member: int | None = Field(None, ge=0, le=127, description="one member, or all side by side")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    options: dict[str, OptionValue] = Field(default_factory=dict, max_length=32,
                                            description="the visualisation's own options (bounded by it)")
    prior_id: str | None = Field(None, max_length=64, description="a prior artifact (from a train_prior job), "
                                 "for activation-max's 'prior' method")

    @model_validator(mode="after")
    def _known_options(self) -> VisualiseParams:
        from kgan_core.visualise import options_of

        allowed = set(options_of(self.what)) - SERVER_OPTIONS
        unknown = sorted(set(self.options) - allowed)
        if unknown:
            raise ValueError(f"{self.what} does not take {', '.join(unknown)}; its options are "
                             f"{', '.join(sorted(allowed)) or 'none'}")
        if self.prior_id is not None and "prior" not in options_of(self.what):
            raise ValueError(f"{self.what} does not use a prior; leave out prior_id")
        from api.visualise_options import check_types

        check_types(self.what, self.options)
        return self


class TrainJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["train"]
    params: TrainParams


class PriorJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["train_prior"]
    params: PriorParams


class VisualiseJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["visualise"]
    params: VisualiseParams


# Each kind has its runner in worker/runner.py, so the API never accepts a kind no worker runs.
JobCreate = Annotated[TrainJobCreate | PriorJobCreate | VisualiseJobCreate, Field(discriminator="kind")]
JOB_KINDS: tuple[str, ...] = tuple(kind.value for kind in JobKind)
