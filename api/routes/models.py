"""/v1/models: what train jobs produced, and per-member PNGs rendered on request.

The PNG routes are plain ``def``: FastAPI runs them in its thread pool, so rendering never
blocks the event loop and requests for different models render in parallel."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.deps import CurrentOwner, SessionDep
from api.errors import Problem, not_found
from api.models import Model, Owner
from api.render import ModelRef
from api.schemas import MemberOut, ModelOut, Page

router = APIRouter(prefix="/v1/models", tags=["models"])

MemberIndex = Annotated[int, Path(ge=0, le=127, description="member index k, 0 to k-1")]
Seed = Annotated[int, Query(ge=0, le=2**31 - 1, description="same seed, same latent vectors for every member")]
PNG = {200: {"content": {"image/png": {}}, "description": "a PNG image"}}


def get_owned_model(session: Session, owner: Owner, model_id: str) -> Model:
    model = session.get(Model, model_id)
    if model is None or model.owner_id != owner.id:
        raise not_found("model", model_id)
    return model


def model_out(m: Model) -> ModelOut:
    base = f"/v1/models/{m.id}"
    members = [MemberOut(k=j, tile_size=m.tile_sizes[j], tile_share=m.tile_shares[j], links={
        "samples": f"{base}/members/{j}/samples.png",
        **({"medoid": f"{base}/members/{j}/medoid.png"} if m.dataset_kind == "images" else {}),
    }) for j in range(m.k)]
    return ModelOut(id=m.id, job_id=m.job_id, k=m.k, step=m.step, dataset_kind=m.dataset_kind,
                    item_shape=m.item_shape, config=m.config, spec=m.spec, tile_sizes=m.tile_sizes,
                    tile_shares=m.tile_shares, metrics=m.metrics, members=members, created_at=m.created_at,
                    links={"self": base, "job": f"/v1/jobs/{m.job_id}", "artifacts": f"/v1/artifacts?model_id={m.id}"})


@router.get("", response_model=Page[ModelOut])
def list_models(owner: CurrentOwner, session: SessionDep, request: Request,
                limit: Annotated[int, Query(ge=1, le=100)] = 20,
                offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Page[ModelOut]:
    where = Model.owner_id == owner.id
    total = session.scalar(select(func.count()).select_from(Model).where(where)) or 0
    rows = session.scalars(select(Model).where(where).order_by(Model.created_at.desc(), Model.id.desc())
                           .limit(limit).offset(offset)).all()
    nxt = str(request.url.include_query_params(offset=offset + limit, limit=limit)) if offset + limit < total else None
    return Page[ModelOut](items=[model_out(m) for m in rows], total=total, limit=limit, offset=offset, next=nxt)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, owner: CurrentOwner, session: SessionDep) -> ModelOut:
    return model_out(get_owned_model(session, owner, model_id))


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


@router.get("/{model_id}/members/{k}/medoid.png", response_class=Response, responses=PNG)
def member_medoid(model_id: str, k: MemberIndex, owner: CurrentOwner, session: SessionDep,
                        request: Request, n: Annotated[int, Query(ge=2, le=4096)] = 256,
                        seed: Seed = 0) -> Response:
    """Member k's point mass, the mean image of n of its samples, and its true medoid sample."""
    ref, model = _member_ref(session, owner, model_id, k)
    if model.dataset_kind != "images":
        raise Problem(422, "Medoid images need an image model",
                      f"Model {model.id} generates 2-D points; its medoid is a point. Use samples.png for a "
                      "scatter plot of member k's samples.", slug="not-an-image-model")
    limit = request.app.state.settings.max_render_n
    if n > limit:
        raise Problem(422, "Too many samples", f"n={n} is over this server's limit of {limit}.",
                      slug="validation-error")
    data = request.app.state.renderer.medoid_png(ref, k, n, seed)
    return _png(request, data)
