"""RFC 9457 problem details: every error a client sees is ``application/problem+json``.

Handlers cover our own ``Problem`` exceptions, FastAPI's validation errors (422, listing each
bad field), Starlette's HTTP errors (404 for unknown routes, 405, ...) and anything unexpected
(500 without internals; the traceback goes to the log).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("kgan.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "urn:kgan:problem:"


class Problem(Exception):
    """Raise from anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str, *, slug: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.type = TYPE_BASE + slug if slug else "about:blank"
        self.headers, self.extra = headers, extra


def not_found(what: str, ident: str) -> Problem:
    # The same answer whether the object does not exist or belongs to someone else, so ids
    # of other owners' objects cannot be probed.
    return Problem(404, f"{what.capitalize()} not found", f"No {what} with id {ident!r} exists for your API key.",
                   slug="not-found")


def problem_response(status: int, title: str, detail: str, type_: str = "about:blank",
                     headers: dict[str, str] | None = None, instance: str | None = None,
                     **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    from api.params import JOB_KINDS

    # A tagged union puts the tag into the path (body.train.params.k); the client wrote body.params.k.
    if len(loc) > 2 and loc[0] == "body" and loc[1] in JOB_KINDS:
        loc = (loc[0], *loc[2:])
    return ".".join(str(p) for p in loc)


def validation_problem(errors: list[dict[str, Any]], instance: str | None = None) -> JSONResponse:
    fields = []
    for err in errors:
        loc, ctx = tuple(err.get("loc", ())), err.get("ctx") or {}
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found") and "discriminator" in ctx:
            loc = (*loc, str(ctx["discriminator"]).strip("'\""))  # name the field that picks the kind
        item = {"field": _field(loc), "message": err.get("msg", "invalid")}
        if "expected" in ctx:
            item["expected"] = str(ctx["expected"])
        fields.append(item)
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:10])
    more = f" (and {len(fields) - 10} more)" if len(fields) > 10 else ""
    return problem_response(422, "Invalid request", f"Fix these fields and send the request again: {summary}{more}",
                            TYPE_BASE + "validation-error", instance=instance, errors=fields)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, exc.type, exc.headers,
                                instance=request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()), instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else {
            404: f"There is nothing at {request.url.path}; see /docs for the routes this service offers.",
            405: f"{request.method} is not allowed on {request.url.path}; see /docs for the allowed methods.",
        }.get(exc.status_code, title)
        return problem_response(exc.status_code, title, detail, headers=getattr(exc, "headers", None),
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal server error",
                                "The server failed to handle this request; the error is in its log. "
                                "Retrying may help if it was a passing fault.", instance=request.url.path)
