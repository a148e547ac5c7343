"""Sending an object of a remote artifact store (S3) the way FileResponse sends a local file: the
whole object, one byte range (206 with Content-Range) or several (206 multipart/byteranges),
If-Range against the strong ETag, HEAD without a body. The bytes are streamed from the store in
chunks (kgan_service.store's iter_range): an object is never held in memory whole."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from kgan_service.store import ArtifactObjects


def object_response(objects: ArtifactObjects, key: str, size: int, ranges: list[tuple[int, int]] | None,
                    media_type: str, headers: dict[str, str], request: Request) -> Response:
    """``ranges``: as FileResponse parses a Range header (end exclusive), or None for the whole
    object (no Range header, or an If-Range that no longer matches)."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    head = request.method == "HEAD"
    if not ranges:
        body = iter(()) if head else objects.iter_range(key)
        return StreamingResponse(body, media_type=media_type, headers={**headers, "Content-Length": str(size)})
    if len(ranges) == 1:
        start, end = ranges[0]
        body = iter(()) if head else objects.iter_range(key, start, end)
        return StreamingResponse(body, status_code=206, media_type=media_type, headers={
            **headers, "Content-Range": f"bytes {start}-{end - 1}/{size}", "Content-Length": str(end - start)})
    boundary = secrets.token_hex(13)
    # FileResponse's own framing (it uses nothing of the instance), so both answer byte for byte alike.
    length, part_header = FileResponse.generate_multipart(None, ranges, boundary, size, media_type)  # type: ignore[arg-type]

    def parts() -> Iterator[bytes]:
        for start, end in ranges:
            yield part_header(start, end)
            yield from objects.iter_range(key, start, end)
            yield b"\r\n"
        yield f"--{boundary}--".encode("latin-1")

    return StreamingResponse(iter(()) if head else parts(), status_code=206,
                             media_type=f"multipart/byteranges; boundary={boundary}",
                             headers={**headers, "Content-Length": str(length)})
