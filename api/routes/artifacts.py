"""/v1/artifacts: immutable files (checkpoints, run summaries, rendered images) with their numbers."""

from __future__ import annotations

import stat
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy import Row, select
from sqlalchemy.orm import Session
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from api.deps import CurrentOwner, SessionDep, SettingsDep, StoreDep
from api.errors import Problem, not_found
from api.object_response import object_response
from api.pagination import paginate
from api.schemas import ArtifactOut, Page
from kgan_service.models import Artifact, Owner, get_owned
from kgan_service.settings import Settings
from kgan_service.store import ArtifactObjects, LocalObjects, ObjectMissing

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])

# Content never changes under an id, so clients and proxies may keep it for a year.
IMMUTABLE = "private, max-age=31536000, immutable"
# Files up to this size are sent as one body (the size of one chunk of a streamed file);
# larger ones, and any Range request, are streamed from disk in chunks.
SMALL_FILE = 64 * 1024


def _disposition(filename: str) -> dict[str, str]:
    # What FileResponse sends for filename=..., so both paths answer alike.
    return {"Content-Disposition": f"attachment; filename*=utf-8''{quote(filename)}"
            if quote(filename) != filename else f'attachment; filename="{filename}"'}


def get_owned_artifact(session: Session, owner: Owner, artifact_id: str) -> Artifact:
    return get_owned(session, owner, Artifact, artifact_id, "artifact")


def artifact_file(session: Session, owner: Owner, artifact_id: str) -> Row:
    """Just what sending the file needs; a download does not load (or JSON-decode) ``meta``."""
    row = session.execute(
        select(Artifact.id, Artifact.owner_id, Artifact.sha256, Artifact.path, Artifact.media_type,
               Artifact.filename, Artifact.size_bytes).where(Artifact.id == artifact_id)
    ).one_or_none()
    if row is None or row.owner_id != owner.id:
        raise not_found("artifact", artifact_id)
    return row


def artifact_out(a: Artifact) -> ArtifactOut:
    return ArtifactOut(id=a.id, kind=a.kind, filename=a.filename, media_type=a.media_type, size_bytes=a.size_bytes,
                       sha256=a.sha256, job_id=a.job_id, model_id=a.model_id, member=a.member, meta=a.meta,
                       created_at=a.created_at,
                       links={"self": f"/v1/artifacts/{a.id}", "meta": f"/v1/artifacts/{a.id}/meta"})


@router.get("", response_model=Page[ArtifactOut])
def list_artifacts(owner: CurrentOwner, session: SessionDep, request: Request,
                   model_id: Annotated[str | None, Query(max_length=64)] = None,
                   job_id: Annotated[str | None, Query(max_length=64)] = None,
                   member: Annotated[int | None, Query(ge=0, le=127)] = None,
                   kind: Annotated[str | None, Query(max_length=64)] = None,
                   limit: Annotated[int, Query(ge=1, le=100)] = 50,
                   offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Page[ArtifactOut]:
    where = [Artifact.owner_id == owner.id]
    for column, value in ((Artifact.model_id, model_id), (Artifact.job_id, job_id), (Artifact.member, member),
                          (Artifact.kind, kind)):
        if value is not None:
            where.append(column == value)
    statement = select(Artifact).where(*where).order_by(Artifact.created_at, Artifact.id)
    return Page[ArtifactOut](**paginate(session, request, statement, Artifact, where, limit, offset,
                                        lambda row: artifact_out(row[0])))


@router.get("/{artifact_id}/meta", response_model=ArtifactOut)
def artifact_meta(artifact_id: str, owner: CurrentOwner, session: SessionDep) -> ArtifactOut:
    """The JSON sibling of the file: what it is, and the numbers that go with it."""
    return artifact_out(get_owned_artifact(session, owner, artifact_id))


@router.get("/{artifact_id}", response_class=Response,
            responses={200: {"description": "the file, streamed from the artifact store"},
                       206: {"description": "the byte range asked for with Range: bytes=…"},
                       304: {"description": "not modified (If-None-Match matched the ETag)"},
                       400: {"description": "a Range header that cannot be parsed"},
                       416: {"description": "a Range with no byte inside the file"},
                       307: {"description": "where KGAN_ARTIFACT_REDIRECT_S is set: a short-lived presigned URL "
                             "of the object in the S3 store"},
                       410: {"description": "the file is gone from the artifact store"}})
def get_artifact(artifact_id: str, owner: CurrentOwner, session: SessionDep, store: StoreDep,
                 settings: SettingsDep, request: Request) -> Response:
    """The file, streamed from the artifact store in chunks (never read into memory whole); Range
    requests are answered with 206. The ETag is the content's sha256, so it is strong and never changes."""
    a = artifact_file(session, owner, artifact_id)
    etag = f'"{a.sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    match = request.headers.get("if-none-match")
    if match and (match.strip() == "*" or etag in [m.strip() for m in match.split(",")]):
        return Response(status_code=304, headers=headers)
    if not isinstance(store, LocalObjects):
        return remote_artifact(store, settings, a, headers, request)
    path = store.path(a.path)
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise artifact_missing(a.id)
    if st.st_size <= SMALL_FILE and "range" not in request.headers:
        # One chunk: read here, in the thread this route already runs in, rather than with the
        # four thread hops (open, read, read, close) of a streamed response.
        with open(path, "rb") as f:
            data = f.read(SMALL_FILE + 1)
        if len(data) == st.st_size:
            return Response(data, media_type=a.media_type, headers={**headers, **_disposition(a.filename)})
    response = FileResponse(path, media_type=a.media_type, filename=a.filename, headers=headers, stat_result=st)
    check_range(request, response, st.st_size)
    return response


def artifact_missing(artifact_id: str) -> Problem:
    return Problem(410, "Artifact file missing",
                   f"Artifact {artifact_id} is recorded but its file is gone from the artifact store; "
                   "re-run the job that made it.", slug="artifact-missing")


def remote_artifact(store: ArtifactObjects, settings: Settings, a: Row, headers: dict[str, str],
                    request: Request) -> Response:
    """An artifact in a store on another machine (S3): a presigned redirect where configured, so
    the bytes do not pass through the API; else streamed from the store like a local file."""
    if settings.artifact_redirect_s:
        url = store.presign(a.path, settings.artifact_redirect_s)
        if url is not None:
            # Not cached: the URL expires, the artifact's own URL does not.
            return Response(status_code=307, headers={"Location": url, "Cache-Control": "private, no-store"})
    headers = {**headers, **_disposition(a.filename)}
    # The row records the size (artifacts never change under their key), so a small whole file is
    # one GET; a missing object still answers 410 from it.
    if a.size_bytes <= SMALL_FILE and "range" not in request.headers:
        try:
            data = store.get_bytes(a.path)
        except ObjectMissing:
            raise artifact_missing(a.id) from None
        return Response(data, media_type=a.media_type, headers=headers)
    try:  # a streamed answer commits to its status before the first byte: ask first
        size = store.stat(a.path).size
    except ObjectMissing:
        raise artifact_missing(a.id) from None
    ranges = None
    http_range, if_range = request.headers.get("range"), request.headers.get("if-range")
    # An If-Range that no longer matches the (strong) ETag: the whole object, as FileResponse does.
    if http_range is not None and (if_range is None or if_range == headers["ETag"]):
        ranges = parse_range(http_range, size) or None
    return object_response(store, a.path, size, ranges, a.media_type, headers, request)


def check_range(request: Request, response: FileResponse, size: int) -> None:
    """A Range header FileResponse would refuse, refused here as a problem document (it answers
    text/plain): 400 when it cannot be parsed, 416 when no byte of it is in the file."""
    http_range, if_range = request.headers.get("range"), request.headers.get("if-range")
    if http_range is None or (if_range is not None and not response._should_use_range(if_range)):
        return  # no range, or an If-Range that no longer matches: the whole file is sent
    parse_range(http_range, size)


def parse_range(http_range: str, size: int) -> list[tuple[int, int]]:
    """The byte ranges asked for, as FileResponse reads them (end exclusive; [] for more ranges
    than it serves, meaning the whole file), or the problem that says what is wrong."""
    try:
        return FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader:
        raise Problem(400, "Malformed Range header", "Ask for bytes as 'Range: bytes=START-END' (or "
                      "'bytes=-N' for the last N bytes); the header sent cannot be parsed.", slug="bad-range") from None
    except RangeNotSatisfiable:
        raise Problem(416, "Range not satisfiable", f"The file is {size} bytes; ask for a range that starts "
                      "inside it.", slug="bad-range", headers={"Content-Range": f"bytes */{size}"}) from None
