"""What the service core refuses, in words its user can act on.

The core knows nothing of HTTP: api/errors.py answers each of these with a problem document
(``application/problem+json``) and gives each class its status code. ``slug`` names the kind of
problem (the document's ``urn:kgan:problem:<slug>`` type); ``extra`` carries the numbers behind
it (a cap, what is in use) for clients that act on them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    slug: ClassVar[str]

    def __init__(self, title: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.title, self.detail, self.extra = title, detail, extra


class NotFound(ServiceError):
    """The object does not exist, or belongs to another owner: the same answer either way, so ids
    of other owners' objects cannot be probed."""

    slug = "not-found"

    def __init__(self, what: str, ident: str):
        super().__init__(f"{what.capitalize()} not found", f"No {what} with id {ident!r} exists for your API key.")


class JobFinished(ServiceError):
    """A change that only an unfinished job accepts."""

    slug = "job-finished"


class IdempotencyKeyReused(ServiceError):
    """An Idempotency-Key sent again with a different request."""

    slug = "idempotency-key-reused"


class JobQuotaExceeded(ServiceError):
    """The owner has as many unfinished jobs as the server allows; ``retry_after_s`` is when a
    slot may free up."""

    slug = "job-quota-exceeded"

    def __init__(self, title: str, detail: str, retry_after_s: int, **extra: Any):
        super().__init__(title, detail, **extra)
        self.retry_after_s = retry_after_s


class StorageUsedUp(ServiceError):
    """The owner's stored bytes are at the cap, so a new job could not store its results."""

    slug = "storage-quota-exceeded"


class UploadOverStorageQuota(ServiceError):
    """An upload that would bring the owner's stored bytes over the cap."""

    slug = "storage-quota-exceeded"
