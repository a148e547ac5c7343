"""A job request checked against what it names, before the service core creates the job.

Everything that can be known wrong before a worker starts (an unavailable built-in, an
architecture that does not fit the data, a run no worker can hold, an option the visualisation
refuses) is answered now as a 4xx; the job's life from there on is kgan_service.jobs'.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy.orm import Session

from api.errors import Problem
from api.params import JobCreate, PriorParams, TrainParams, VisualiseParams
from api.visualise_options import ModelOutline, check_options
from kgan_core.data.catalogue import BUILTINS
from kgan_service import jobs as lifecycle
from kgan_service.models import Artifact, Dataset, Job, JobKind, Model, Owner, get_owned
from kgan_service.settings import Settings
from kgan_service.workers import worker_memory


def request_fingerprint(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _item_shape(params: TrainParams, dataset: Dataset | None) -> tuple[int, ...] | None:
    if dataset is None:
        # A built-in's item shape before image_size/channels: enough to check an architecture
        # against the data at POST time instead of failing later in a worker.
        facts = BUILTINS.get(params.dataset or "")
        base = facts.item_shape if facts else None
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
    points = dataset.kind == "points" if dataset else (params.dataset in BUILTINS and BUILTINS[params.dataset].points)
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

    def check() -> lifecycle.JobInputs:
        if body.kind == JobKind.TRAIN:
            dataset = check_train_params(session, owner, body.params, settings)
            return lifecycle.JobInputs(dataset.id if dataset else None, None, body.params.steps)
        if body.kind == JobKind.TRAIN_PRIOR:
            dataset, model = check_prior_params(session, owner, body.params, settings)
            return lifecycle.JobInputs(dataset.id if dataset else None, model.id if model else None,
                                       body.params.steps)
        return lifecycle.JobInputs(None, check_visualise_params(session, owner, body.params).id, 1)

    return lifecycle.create_job(session, owner, JobKind(body.kind), body.params.model_dump(mode="json"),
                                request_fingerprint(body), idempotency_key, settings, check)
