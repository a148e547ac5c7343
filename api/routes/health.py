"""Liveness, readiness and metrics: no API key needed (they reveal no one's data)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.errors import PROBLEM_JSON

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers. Says nothing about its dependencies (that is /readyz)."""
    return {"status": "ok"}


def _check_db(request: Request) -> None:
    with request.app.state.db.engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    head = request.app.state.schema_head
    if version != head:
        raise RuntimeError(f"database schema is at {version}, the code expects {head}; run the migrations")


def _check_broker(request: Request) -> None:
    settings = request.app.state.settings
    if not settings.broker_url:
        raise RuntimeError("no broker configured; set KGAN_BROKER_URL (kgan serve does this for you)")
    with request.app.state.celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _check_store(request: Request) -> None:
    # The artifact folder holds the files the routes and the reconciler still read directly, and
    # the configured store (the same folder by default, else a bucket) must take objects too.
    request.app.state.store.check_writable()
    request.app.state.objects.check()


@router.get("/readyz", responses={503: {"description": "a dependency is down", "content": {PROBLEM_JSON: {}}}})
def readyz(request: Request) -> JSONResponse:
    """Database reachable and migrated, broker reachable, artifact store writable."""
    checks: dict[str, str] = {}
    for name, check in (("database", _check_db), ("broker", _check_broker), ("artifact_store", _check_store)):
        try:
            check(request)
            checks[name] = "ok"
        except Exception as exc:  # report every failing dependency, whatever it raised
            checks[name] = f"failed: {exc}"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    bad = ", ".join(f"{k} ({v})" for k, v in checks.items() if v != "ok")
    return JSONResponse({"type": "urn:kgan:problem:not-ready", "title": "Service not ready", "status": 503,
                         "detail": f"Not ready: {bad}.", "checks": checks}, status_code=503, media_type=PROBLEM_JSON)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
