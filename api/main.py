"""The FastAPI application. Run it with ``uvicorn --factory api.main:create_app`` (settings
from KGAN_* variables) or through ``kgan serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from contextlib import asynccontextmanager

from alembic.script import ScriptDirectory
from fastapi import Depends, FastAPI, Request
from prometheus_client import CollectorRegistry

from api import errors
from api.body_limit import RequestBodyLimit
from api.deps import CurrentOwner
from api.jobs import warm_footprint_estimates
from api.metrics import GpuMetrics, JobCollector, RequestMetrics
from api.migrate import alembic_config
from api.routes import artifacts, datasets, gallery, health, jobs, models
from api.uploads import sweep_stale_parts
from kgan_service.artifact_folder import ArtifactStore
from kgan_service.db import READ_ONLY, Database
from kgan_service.jobs import reconcile_once
from kgan_service.queue import JobQueue
from kgan_service.settings import Settings, get_settings
from kgan_service.store import open_store

log = logging.getLogger("kgan.api")

DESCRIPTION = """Train k-GAN ensembles and see, member by member, what each generator and critic has learnt.

Every request under `/v1` carries `Authorization: Bearer <API key>` (create one with `kgan create-key`).
Errors are `application/problem+json` documents (RFC 9457)."""


def sweep_uploads(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    removed = sweep_stale_parts(app.state.store.root / "uploads", settings.stale_upload_s)
    if removed:
        log.info("removed %d stale upload part(s) left by a killed API process", removed)


async def _reconciler(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    while True:
        try:
            await asyncio.to_thread(sweep_uploads, app)
            counts = await asyncio.to_thread(reconcile_once, app.state.db, settings, app.state.send_job)
            if any(counts.values()):
                log.info("reconciler: %s", counts)
        except Exception:  # a database or broker hiccup must not kill the loop
            log.exception("reconciler pass failed; trying again in %ss", settings.reconcile_interval_s)
        await asyncio.sleep(settings.reconcile_interval_s)


async def _known_query_for_owner(request: Request, _owner: CurrentOwner) -> None:
    errors.reject_unknown_query(request)  # async: no thread-pool hop for a dict lookup


class ReadOnlyRequests:
    """GET and HEAD only read: mark them so SQLite transactions begin deferred (kgan_service.db.READ_ONLY)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        token = READ_ONLY.set(True)
        try:
            await self.app(scope, receive, send)
        finally:
            READ_ONLY.reset(token)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = Database(settings)
    store = ArtifactStore(settings.artifacts)
    store.ensure()
    objects = open_store(settings.artifact_store_url)
    queue = JobQueue(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = None
        sweep_uploads(app)
        # In the background: startup need not wait, and it is done long before most first submissions.
        threading.Thread(target=warm_footprint_estimates, name="warm-estimates", daemon=True).start()
        if settings.reconcile_interval_s > 0:
            task = asyncio.create_task(_reconciler(app))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            app.state.renderer.clear()
            db.dispose()

    app = FastAPI(title="kgan", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    from api.render import Renderer
    from kgan_service.models import uploaded_archive_of

    app.state.settings, app.state.db, app.state.store, app.state.celery = settings, db, store, queue.celery
    app.state.objects = objects
    app.state.send_job = queue.send
    def archive_of(model_id: str) -> str | None:
        with db.session() as s:
            return uploaded_archive_of(s, model_id)

    app.state.renderer = Renderer(objects, settings, archive_of=archive_of)
    app.state.schema_head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    app.state.registry = registry = CollectorRegistry()
    registry.register(JobCollector(db))
    registry.register(GpuMetrics())
    app.add_middleware(RequestBodyLimit, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestMetrics, registry=registry)  # outside the body limit: its 413s are counted
    app.add_middleware(ReadOnlyRequests)
    errors.install(app)
    # Unknown query parameters are refused like unknown body fields; under /v1 only after the
    # key is checked, so that a request without one is a 401 whatever else is wrong with it.
    for module in (health, gallery):
        app.include_router(module.router, dependencies=[Depends(errors.reject_unknown_query)])
    for module in (datasets, jobs, models, artifacts):
        app.include_router(module.router, dependencies=[Depends(_known_query_for_owner)])
    errors.install_openapi(app)
    return app
