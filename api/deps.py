"""Typed dependencies: routes declare what they need (``SessionDep``, ``CurrentOwner``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from api.auth import owner_for_header
from kgan_service.artifact_folder import ArtifactStore
from kgan_service.db import READ_ONLY, Database
from kgan_service.models import Owner
from kgan_service.settings import Settings
from kgan_service.store import ArtifactObjects


# Plain attribute reads are async: FastAPI runs a sync dependency in its thread pool, a hop
# (~0.1 ms, more under load) every request paid three times over for nothing.
async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ArtifactObjects:
    return request.app.state.objects


async def get_staging(request: Request) -> ArtifactStore:
    return request.app.state.store


def get_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    session = db.sessions()
    try:
        yield session
    finally:
        # Ends the transaction before a slow response body (a file download) is streamed.
        session.close()


# scope="function": the session closes when the route returns, not after the response is sent.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# The artifact store (KGAN_ARTIFACT_URL): every file a route reads or writes.
StoreDep = Annotated[ArtifactObjects, Depends(get_store)]
# This API process's own folder, where an upload is received and checked before it is stored.
StagingDep = Annotated[ArtifactStore, Depends(get_staging)]
DatabaseDep = Annotated[Database, Depends(get_db)]


def current_owner(session: SessionDep,
                  authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None) -> Owner:
    owner = owner_for_header(session, authorization)
    if not READ_ONLY.get():
        # Auth only reads; end the transaction so SQLite's write lock (BEGIN IMMEDIATE) is not
        # held across a route that writes. A GET's transaction is deferred and takes no lock,
        # so it goes on into the route: two statements fewer on the hottest requests.
        session.commit()
    return owner


CurrentOwner = Annotated[Owner, Depends(current_owner)]
