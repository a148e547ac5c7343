"""A cap on request bodies, applied before anything parses them.

JSON bodies are parsed whole into Python objects, which take many times the bytes sent, so
a body over ``max_request_body_bytes`` is refused with a 413 problem as it arrives: at once
when its Content-Length says so, else when the bytes received pass the cap. Archive uploads
(multipart/form-data to /v1/datasets) are streamed to disk and bounded by
``max_upload_bytes`` instead (api/uploads.py).
"""

from __future__ import annotations

from api.errors import TYPE_BASE, problem_response

UPLOAD_PATH = "/v1/datasets"


def _is_upload(scope) -> bool:
    if scope["method"] != "POST" or scope["path"].rstrip("/") != UPLOAD_PATH:
        return False
    ctype = dict(scope["headers"]).get(b"content-type", b"")
    return ctype.split(b";", 1)[0].strip().lower() == b"multipart/form-data"


def _declared_length(scope) -> int | None:
    value = dict(scope["headers"]).get(b"content-length", b"")
    return int(value) if value.isdigit() else None


class BodyTooLarge(Exception):
    pass


class RequestBodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _is_upload(scope):
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        # Read the body here, up to the cap, and hand it on: the cap then holds for chunked
        # bodies and lying Content-Lengths alike, and no more than the cap is ever held.
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = problem_response(
            413, "Request body too large",
            f"This request's body is over this server's limit of {self.max_bytes} bytes "
            "(KGAN_MAX_REQUEST_BODY_BYTES); send a smaller one. Archives go to POST /v1/datasets as "
            "multipart/form-data, which has its own limit.",
            TYPE_BASE + "body-too-large", headers={"Connection": "close"}, instance=scope["path"])
        await response(scope, receive, send)
