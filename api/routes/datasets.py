"""/v1/datasets: upload an archive of images, or name a built-in; inspect and preview it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import datasets as service
from api.deletions import delete_dataset
from api.deps import CurrentOwner, SessionDep, SettingsDep, StagingDep, StoreDep
from api.errors import Problem, validation_problem
from api.pagination import paginate
from api.schemas import BuiltinDatasetOut, DatasetOut, Page
from api.uploads import receive_upload, safe_remove
from kgan_core.data.catalogue import BUILTINS
from kgan_service import quotas
from kgan_service.models import Dataset, Owner, get_owned, new_id
from kgan_service.settings import Settings
from kgan_service.store import ObjectMissing, dataset_key

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


class BuiltinCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    builtin: str = Field(description="a built-in dataset name (GET /v1/datasets/builtin lists them)")
    name: str | None = Field(None, min_length=1, max_length=200)


def dataset_out(d: Dataset) -> DatasetOut:
    return DatasetOut(id=d.id, name=d.name, source=d.source, builtin=d.builtin, status=d.status, kind=d.kind,
                      n_items=d.n_items, size_bytes=d.size_bytes, item_shape=d.item_shape, meta=d.meta,
                      created_at=d.created_at,
                      links={"self": f"/v1/datasets/{d.id}", "preview": f"/v1/datasets/{d.id}/preview.png"})


def _check_storage(session: Session, owner: Owner, settings: Settings, incoming: int) -> None:
    try:
        quotas.check_storage_for_upload(session, owner, settings, incoming)
    finally:
        session.commit()  # end the read transaction: SQLite's lock must not be held while the body streams


def get_owned_dataset(session: Session, owner: Owner, dataset_id: str) -> Dataset:
    return get_owned(session, owner, Dataset, dataset_id, "dataset")


UPLOAD_BODY = {
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": ".zip, .tar, .tar.gz or .tgz of images"},
            "name": {"type": "string", "maxLength": 200}}}},
        "application/json": {"schema": BuiltinCreate.model_json_schema()},
    }},
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetOut, openapi_extra=UPLOAD_BODY,
             responses={400: {"description": "a malformed multipart body"},
                        413: {"description": "the archive is over this server's size limit"},
                        415: {"description": "neither multipart/form-data nor JSON"},
                        422: {"description": "a bad archive (the problem names the entry and what is wrong with it), "
                              "or an unknown or unavailable built-in"}})
async def create_dataset(request: Request, owner: CurrentOwner, session: SessionDep, store: StoreDep,
                         staging: StagingDep, settings: SettingsDep, response: Response):
    """Upload an archive of images (multipart, part ``file``), or send JSON ``{"builtin": "mnist"}``."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = BuiltinCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            return validation_problem([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()], request.url.path)
        if body.builtin not in BUILTINS:
            raise Problem(422, "Unknown built-in dataset", f"{body.builtin!r} is not built in; choose one of "
                          f"{', '.join(BUILTINS)}, or upload an archive.", slug="validation-error")
        row = await run_in_threadpool(service.create_builtin, session, owner, store, settings, body.builtin, body.name)
    else:
        # Refuse before reading the body when the owner's storage is already full, and again
        # once the upload's size is known (the per-upload limit bounds what is staged meanwhile).
        await run_in_threadpool(_check_storage, session, owner, settings, 0)
        staged = staging.root / "uploads" / f"{new_id()}.part"
        try:
            got = await receive_upload(request, staged, settings.max_upload_bytes)
            await run_in_threadpool(_check_storage, session, owner, settings, got.size)
            name = got.fields.get("name") or None
            if name is not None and len(name) > 200:
                raise Problem(422, "Name too long", "The dataset name may have at most 200 characters.",
                              slug="validation-error")
            row = await run_in_threadpool(service.create_upload, session, owner, store, settings, staged,
                                          got.filename or "upload", name, got.size)
        finally:
            safe_remove(staged)
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return dataset_out(row)


@router.get("", response_model=Page[DatasetOut])
def list_datasets(owner: CurrentOwner, session: SessionDep, request: Request,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Page[DatasetOut]:
    where = [Dataset.owner_id == owner.id]
    statement = select(Dataset).where(*where).order_by(Dataset.created_at.desc(), Dataset.id.desc())
    return Page[DatasetOut](**paginate(session, request, statement, Dataset, where, limit, offset,
                                       lambda row: dataset_out(row[0])))


@router.get("/builtin", response_model=list[BuiltinDatasetOut])
def list_builtin(owner: CurrentOwner, settings: SettingsDep) -> list[BuiltinDatasetOut]:
    """Built-in datasets, and whether this server has their files."""
    out = []
    for facts in BUILTINS.values():
        available, detail = service.builtin_status(facts.name, settings)
        out.append(BuiltinDatasetOut(name=facts.name, kind=facts.kind, available=available, detail=detail))
    return out


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, owner: CurrentOwner, session: SessionDep) -> DatasetOut:
    return dataset_out(get_owned_dataset(session, owner, dataset_id))


@router.get("/{dataset_id}/preview.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "the first images, or a scatter plot"},
                       410: {"description": "the preview file is gone from the artifact store"}})
def dataset_preview(dataset_id: str, owner: CurrentOwner, session: SessionDep, store: StoreDep) -> Response:
    dataset = get_owned_dataset(session, owner, dataset_id)
    try:
        png = store.get_bytes(f"{dataset_key(dataset.id)}/preview.png")  # a small image: one read
    except ObjectMissing:
        raise Problem(410, "Preview missing", f"The preview of dataset {dataset.id} is gone from the artifact store.",
                      slug="artifact-missing") from None
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=31536000, immutable"})


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses={204: {"description": "deleted, with its archive and preview"},
                          409: {"description": "unfinished jobs read it, or models trained on the uploaded "
                                "archive still need it (the problem lists them)"}})
def remove_dataset(dataset_id: str, owner: CurrentOwner, session: SessionDep, store: StoreDep) -> Response:
    """Delete a dataset to free its storage. Jobs that used it stay in the job list."""
    delete_dataset(session, store, owner, dataset_id).remove_files()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
