"""Errors the client raises: the service's problem documents, and jobs that did not succeed."""

from __future__ import annotations

from typing import Any

import httpx

from kgan_client.schemas import JobInfo


class KganError(Exception):
    """Base of every error this package raises on purpose."""


class ApiError(KganError):
    """The service refused a request; ``detail`` says what to change (RFC 9457 problem document)."""

    def __init__(self, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
                 method: str = "", url: str = ""):
        self.status, self.title, self.detail, self.errors = status, title, detail, errors or []
        self.method, self.url = method, url
        super().__init__(f"{status} {title}: {detail}" + (f" ({method} {url})" if method else ""))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"title": response.reason_phrase, "detail": response.text[:500] or response.reason_phrase}
        return cls(response.status_code, str(body.get("title") or response.reason_phrase),
                   str(body.get("detail") or ""), body.get("errors"), response.request.method,
                   str(response.request.url))


class JobFailed(KganError):
    """A job ended failed or cancelled; ``job`` holds its last state and error."""

    def __init__(self, job: JobInfo):
        self.job = job
        why = f": {job.error.title}" + (f" — {job.error.detail}" if job.error.detail else "") if job.error else ""
        super().__init__(f"{job.kind} job {job.id} {job.status}{why}")


class IntegrityError(KganError):
    """A downloaded file does not have the sha256 the service recorded for it."""
