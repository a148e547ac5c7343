"""RFC 9457 problem details: every error a client sees is ``application/problem+json``.

Handlers cover our own ``Problem`` exceptions, the service core's refusals
(``kgan_service.errors``, each class with its status here), FastAPI's validation errors (422, listing each
bad field), Starlette's HTTP errors (404 for unknown routes, 405, ...) and anything unexpected
(500 without internals; the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kgan_service import errors as service_errors

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




# The HTTP status of each refusal of the service core.
SERVICE_ERROR_STATUS: dict[type[service_errors.ServiceError], int] = {
    service_errors.NotFound: 404,
    service_errors.JobFinished: 409,
    service_errors.StorageUsedUp: 409,
    service_errors.UploadOverStorageQuota: 413,
    service_errors.IdempotencyKeyReused: 422,
    service_errors.JobQuotaExceeded: 429,
}


def problem_for(error: service_errors.ServiceError) -> Problem:
    """The problem document a refusal of the service core is answered with."""
    headers = None
    if isinstance(error, service_errors.JobQuotaExceeded):
        headers = {"Retry-After": str(error.retry_after_s)}
    return Problem(SERVICE_ERROR_STATUS[type(error)], error.title, error.detail, slug=error.slug, headers=headers,
                   **error.extra)


def not_found(what: str, ident: str) -> Problem:
    return problem_for(service_errors.NotFound(what, ident))


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


MAX_LISTED_ERRORS = 20  # a body of many bad items gets the first ones and a count, not a list as long
MAX_FIELD_CHARS = 120  # field paths hold the client's own keys (options, nested dicts): cut, never echoed whole


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def validation_problem(errors: list[dict[str, Any]], instance: str | None = None) -> JSONResponse:
    fields = []
    for err in errors[:MAX_LISTED_ERRORS]:
        loc, ctx = tuple(err.get("loc", ())), err.get("ctx") or {}
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found") and "discriminator" in ctx:
            loc = (*loc, str(ctx["discriminator"]).strip("'\""))  # name the field that picks the kind
        item = {"field": _cut(_field(loc), MAX_FIELD_CHARS), "message": _cut(str(err.get("msg", "invalid")), 300)}
        if "expected" in ctx:
            item["expected"] = str(ctx["expected"])
        fields.append(item)
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:10])
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return problem_response(422, "Invalid request", f"Fix these fields and send the request again: {summary}{more}",
                            TYPE_BASE + "validation-error", instance=instance, errors=fields)


_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(dependant) -> Iterator[str]:
    yield from (p.alias for p in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is a 422, like an unknown body field: a typo
    (``?limt=5``) must not be silently ignored."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    names = _QUERY_NAMES.get(id(dependant))
    if names is None:
        names = _QUERY_NAMES[id(dependant)] = frozenset(_query_names(dependant))
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        takes = f"it takes {', '.join(sorted(names))}" if names else "it takes none"
        raise RequestValidationError([{"loc": ("query", name), "type": "extra_forbidden",
                                       "msg": f"unknown query parameter ({takes})"} for name in unknown])
    # No text column takes NUL (PostgreSQL refuses it outright), and no id or name holds one.
    bad = [("path", k) for k, v in request.path_params.items() if "\x00" in str(v)]
    bad += [("query", k) for k, v in request.query_params.multi_items() if "\x00" in v]
    if bad:
        raise RequestValidationError([{"loc": loc, "type": "string_pattern_mismatch",
                                       "msg": "must not contain NUL characters"} for loc in bad])


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, exc.type, exc.headers,
                                instance=request.url.path, **exc.extra)

    @app.exception_handler(service_errors.ServiceError)
    async def _service(request: Request, exc: service_errors.ServiceError) -> JSONResponse:
        return await _problem(request, problem_for(exc))

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

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (a NUL in a text field on PostgreSQL, ...).
        log.info("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        reason = str(exc.orig).splitlines()[0] if exc.orig else "invalid value"
        return problem_response(422, "Invalid value", f"The database refused a value of this request ({reason}); "
                                "fix it and send the request again.", TYPE_BASE + "validation-error",
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal server error",
                                "The server failed to handle this request; the error is in its log. "
                                "Retrying may help if it was a passing fault.", instance=request.url.path)


# --- the problem documents in the OpenAPI schema -------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "Problem", "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:kgan:problem:<slug>, or about:blank"},
        "title": {"type": "string", "description": "short and the same for every problem of this type"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong and what to do about it"},
        "instance": {"type": "string", "description": "the path that answered"},
    },
    "additionalProperties": True,
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "allOf": [{"$ref": "#/components/schemas/Problem"}, {
        "type": "object",
        "properties": {"errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string", "description": "e.g. body.params.k or query.limit"},
                           "message": {"type": "string"}, "expected": {"type": "string"}}}}}}],
    "title": "ValidationProblem",
    "description": "A 422 problem; when the request did not fit the schema, ``errors`` lists each bad field.",
}
STATUS_DESCRIPTIONS = {
    400: "a body that cannot be parsed", 401: "no API key, or one that is not known or revoked",
    404: "no such object for your API key (another owner's objects look absent too)",
    409: "conflicts with the object's state", 410: "the object's file is gone from the artifact store",
    413: "over this server's size limit", 415: "unsupported media type", 422: "invalid request: fix the fields listed",
    429: "a limit was reached; retry later", 500: "server error", 503: "a dependency is down",
}
# Errors of routes whose modules do not declare them (so that every status a route can send is in the schema).
ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    # a dataset_id / model_id / prior_id that is not yours; over the stored-bytes cap; too many unfinished jobs
    ("post", "/v1/jobs"): (404, 409, 429),
    ("post", "/v1/jobs/{job_id}/cancel"): (409,),  # the job has already finished
}


def _problem_content(schema: str) -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Every error an operation can send, as problem+json in its responses; the API key as a
    Bearer security scheme (instead of a free-form Authorization header parameter)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"], schemas["ValidationProblem"] = PROBLEM_SCHEMA, VALIDATION_PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http", "scheme": "bearer", "description": "an API key (kgan create-key)"}
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            params = [p for p in op.get("parameters", [])
                      if not (p.get("in") == "header" and p.get("name", "").lower() == "authorization")]
            if "parameters" in op:
                op["parameters"] = params
            codes = {int(c) for c in responses if c.isdigit() and int(c) >= 400}
            codes.update(ROUTE_ERRORS.get((method, path), ()))
            if path.startswith("/v1/"):
                op["security"] = [{"apiKey": []}]
                codes.add(401)
                if "{" in path:
                    codes.add(404)
            if "requestBody" in op:
                codes.add(400)  # a body that is not even JSON / multipart (bytes that are not UTF-8, ...)
                codes.add(413)  # over KGAN_MAX_REQUEST_BODY_BYTES (api/body_limit.py), or an upload's limits
            if params or "requestBody" in op:
                codes.add(422)
            else:
                codes.discard(422)
                responses.pop("422", None)
            for code in sorted(codes):
                entry = responses.setdefault(str(code), {})
                entry.setdefault("description", STATUS_DESCRIPTIONS.get(code, HTTPStatus(code).phrase))
                entry["content"] = _problem_content("ValidationProblem" if code == 422 else "Problem")
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version,
                description=app.description, routes=app.routes, tags=app.openapi_tags, servers=app.servers))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
