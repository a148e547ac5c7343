"""/v1/models: what train jobs produced, and per-member PNGs rendered on request.

The PNG routes are plain ``def``: FastAPI runs them in its thread pool, so rendering never
blocks the event loop and requests for different models render in parallel."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deletions import delete_model
from api.deps import CurrentOwner, SessionDep, StoreDep
from api.errors import Problem
from api.pagination import paginate
from api.render import ModelRef
from api.schemas import MemberHealth, MemberOut, ModelOut, Page
from kgan_service.models import Model, Owner, get_owned

router = APIRouter(prefix="/v1/models", tags=["models"])

MemberIndex = Annotated[int, Path(ge=0, le=127, description="member index k, 0 to k-1")]
Seed = Annotated[int, Query(ge=0, le=2**31 - 1, description="same seed, same latent vectors for every member")]
IMAGE_ONLY = ("medoid", "frozen-latent", "traversal", "real-tile")
PNG = {200: {"content": {"image/png": {}}, "description": "a PNG image"},
       304: {"description": "not modified (If-None-Match matched the ETag)"},
       422: {"description": "bad parameters, or a picture this model cannot draw (e.g. medoid.png of points)"}}


def get_owned_model(session: Session, owner: Owner, model_id: str) -> Model:
    return get_owned(session, owner, Model, model_id, "model")


def member_health(m: Model, j: int) -> MemberHealth | None:
    health = (m.metrics or {}).get("health") or {}
    entry = next((e for e in health.get("members", []) if e.get("member") == j), None)
    if entry is None:
        return None
    return MemberHealth(flags=entry["flags"], checks=entry["checks"], feature_space=health.get("feature_space"))


def model_out(m: Model) -> ModelOut:
    base = f"/v1/models/{m.id}"
    members = [MemberOut(k=j, tile_size=m.tile_sizes[j], tile_share=m.tile_shares[j],
                         health=member_health(m, j), links={
        "samples": f"{base}/members/{j}/samples.png",
        **({name: f"{base}/members/{j}/{name}.png" for name in IMAGE_ONLY} if m.dataset_kind == "images" else {}),
    }) for j in range(m.k)]
    return ModelOut(id=m.id, job_id=m.job_id, k=m.k, step=m.step, dataset_kind=m.dataset_kind,
                    item_shape=m.item_shape, config=m.config, spec=m.spec, tile_sizes=m.tile_sizes,
                    tile_shares=m.tile_shares, metrics=m.metrics, members=members, created_at=m.created_at,
                    links={"self": base, "job": f"/v1/jobs/{m.job_id}", "artifacts": f"/v1/artifacts?model_id={m.id}"})


@router.get("", response_model=Page[ModelOut])
def list_models(owner: CurrentOwner, session: SessionDep, request: Request,
                limit: Annotated[int, Query(ge=1, le=100)] = 20,
                offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Page[ModelOut]:
    where = [Model.owner_id == owner.id]
    statement = select(Model).where(*where).order_by(Model.created_at.desc(), Model.id.desc())
    return Page[ModelOut](**paginate(session, request, statement, Model, where, limit, offset,
                                     lambda row: model_out(row[0])))


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, owner: CurrentOwner, session: SessionDep) -> ModelOut:
    return model_out(get_owned_model(session, owner, model_id))


@router.delete("/{model_id}", status_code=204, response_class=Response,
               responses={204: {"description": "deleted, with its checkpoint and every artifact made from it"},
                          409: {"description": "unfinished jobs use the model (the problem lists them)"}})
def remove_model(model_id: str, owner: CurrentOwner, session: SessionDep, store: StoreDep,
                 request: Request) -> Response:
    """Delete a model to free its storage: its checkpoint, run folder, and the pictures and
    priors made from it. The jobs that made them stay in the job list."""
    removal = delete_model(session, store, owner, model_id)
    request.app.state.renderer.forget(model_id)
    removal.remove_files()
    return Response(status_code=204)


def _member_ref(session: Session, owner: Owner, model_id: str, k: int) -> tuple[ModelRef, Model]:
    model = get_owned_model(session, owner, model_id)
    if k >= model.k:
        raise Problem(404, "Member not found", f"Model {model.id} has k={model.k} members, numbered 0 to "
                      f"{model.k - 1}; there is no member {k}.", slug="not-found")
    session.commit()  # done with SQL before the (slower) rendering
    return ModelRef(model.id, model.run_path), model


def _png(request: Request, data: bytes) -> Response:
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/png", headers=headers)


@router.get("/{model_id}/members/{k}/samples.png", response_class=Response, responses=PNG)
def member_samples(model_id: str, k: MemberIndex, owner: CurrentOwner, session: SessionDep,
                         request: Request, n: Annotated[int, Query(ge=1, le=4096)] = 64, seed: Seed = 0) -> Response:
    """n samples from member k's generator: an image grid, or a scatter plot for 2-D points."""
    ref, _ = _member_ref(session, owner, model_id, k)
    limit = request.app.state.settings.max_render_n
    if n > limit:
        raise Problem(422, "Too many samples", f"n={n} is over this server's limit of {limit} per image.",
                      slug="validation-error")
    data = request.app.state.renderer.samples_png(ref, k, n, seed)
    return _png(request, data)


def _visual(request: Request, session: Session, owner: Owner, model_id: str, k: int, what: str, seed: int,
            **options) -> Response:
    from kgan_core.visualise import VisualisationError

    ref, _ = _member_ref(session, owner, model_id, k)
    try:
        data, _title = request.app.state.renderer.visual_png(ref, what, k, seed,
                                                             **{n: v for n, v in options.items() if v is not None})
    except VisualisationError as exc:
        raise Problem(422, f"Cannot render {what}", f"{exc}.", slug="visualisation-error") from exc
    return _png(request, data)


Dims = Annotated[list[int] | None, Query(max_length=16, description="latent dimensions (default: the most "
                                         "influential ones)")]


@router.get("/{model_id}/members/{k}/medoid.png", response_class=Response, responses=PNG)
def member_medoid(model_id: str, k: MemberIndex, owner: CurrentOwner, session: SessionDep, request: Request,
                  n: Annotated[int, Query(ge=2, le=2048)] = 256, seed: Seed = 0) -> Response:
    """The mean of n of member k's samples, its true medoid sample and its point mass m_k."""
    return _visual(request, session, owner, model_id, k, "medoid", seed, n=n)


@router.get("/{model_id}/members/{k}/frozen-latent.png", response_class=Response, responses=PNG)
def member_frozen_latent(model_id: str, k: MemberIndex, owner: CurrentOwner, session: SessionDep,
                         request: Request, dims: Dims = None,
                         values: Annotated[list[float] | None, Query(min_length=2, max_length=9)] = None,
                         n: Annotated[int, Query(ge=2, le=32)] = 8, seed: Seed = 0) -> Response:
    """Rows: one latent dimension frozen at a value; columns: the other dimensions sampled."""
    for v in values or []:
        if not -10.0 <= v <= 10.0:
            raise Problem(422, "Value out of range", f"values must lie in [-10, 10], got {v}.",
                          slug="validation-error")
    return _visual(request, session, owner, model_id, k, "frozen-latent", seed, dims=dims,
                   values=tuple(values) if values else None, n=n)


@router.get("/{model_id}/members/{k}/traversal.png", response_class=Response, responses=PNG)
def member_traversal(model_id: str, k: MemberIndex, owner: CurrentOwner, session: SessionDep, request: Request,
                     dims: Dims = None, steps: Annotated[int, Query(ge=3, le=15)] = 7,
                     span: Annotated[float, Query(ge=0.1, le=10.0)] = 3.0, seed: Seed = 0) -> Response:
    """Rows: latent dimensions; columns: values from -span·σ to +span·σ around a base z."""
    return _visual(request, session, owner, model_id, k, "traversal", seed, dims=dims, steps=steps, span=span)


@router.get("/{model_id}/members/{k}/real-tile.png", response_class=Response, responses=PNG)
def member_real_tile(model_id: str, k: MemberIndex, owner: CurrentOwner, session: SessionDep, request: Request,
                     n: Annotated[int, Query(ge=1, le=256)] = 32, seed: Seed = 0) -> Response:
    """The real images of member k's tile nearest to its point mass."""
    return _visual(request, session, owner, model_id, k, "real-tile", seed, n=n)
