"""Per-owner resource limits: how many unfinished jobs, how many stored bytes.

The caps are settings (``KGAN_MAX_QUEUED_JOBS_PER_OWNER``, ``KGAN_MAX_STORED_BYTES_PER_OWNER``);
a request over one is refused with an error (kgan_service.errors) that says what is in use, what
the cap is, and what to do. A job's wall-clock limit (``KGAN_JOB_TIME_LIMIT_S``) is enforced
when a worker claims it and while it runs (kgan_service.jobs).
"""

from __future__ import annotations

import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kgan_service.errors import JobQuotaExceeded, StorageUsedUp, UploadOverStorageQuota
from kgan_service.models import UNFINISHED, Artifact, Dataset, Job, JobStatus, Owner
from kgan_service.settings import Settings


def lock_owner(session: Session, owner: Owner) -> None:
    """Serialise one owner's quota checks (PostgreSQL row lock; SQLite transactions already are)."""
    session.execute(select(Owner.id).where(Owner.id == owner.id).with_for_update())


def unfinished_jobs(session: Session, owner_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Job)
                          .where(Job.owner_id == owner_id, Job.status.in_(UNFINISHED))) or 0


def stored_bytes(session: Session, owner_id: str) -> int:
    """Uploaded archives plus every artifact (checkpoints, priors, pictures) the owner's jobs made."""
    uploads = session.scalar(select(func.coalesce(func.sum(Dataset.size_bytes), 0))
                             .where(Dataset.owner_id == owner_id, Dataset.source == "upload")) or 0
    artifacts = session.scalar(select(func.coalesce(func.sum(Artifact.size_bytes), 0))
                               .where(Artifact.owner_id == owner_id)) or 0
    return int(uploads) + int(artifacts)


def retry_after_s(session: Session, owner_id: str) -> int:
    """When a slot may free up: the soonest ETA of the owner's running jobs, else a minute."""
    eta = session.scalar(select(func.min(Job.eta_s)).where(Job.owner_id == owner_id, Job.status == JobStatus.RUNNING))
    return 60 if eta is None else max(1, min(3600, math.ceil(eta)))


def check_job_slots(session: Session, owner: Owner, settings: Settings) -> None:
    cap = settings.max_queued_jobs_per_owner
    have = unfinished_jobs(session, owner.id)
    if have >= cap:
        wait = retry_after_s(session, owner.id)
        raise JobQuotaExceeded("Too many unfinished jobs",
                               f"You have {have} queued or running jobs; this server allows {cap} per owner "
                               f"(KGAN_MAX_QUEUED_JOBS_PER_OWNER). Wait for one to finish (try again in about "
                               f"{wait} s) or cancel one with POST /v1/jobs/{{id}}/cancel.",
                               retry_after_s=wait, limit=cap, in_use=have)


STORAGE_REMEDY = (" Delete datasets and models you no longer need (DELETE /v1/datasets/{id}, DELETE "
                  "/v1/models/{id}), or ask the server's operator to raise KGAN_MAX_STORED_BYTES_PER_OWNER.")


def check_storage_for_job(session: Session, owner: Owner, settings: Settings) -> None:
    """A job writes checkpoints or pictures: refuse it when the owner's storage is already full."""
    cap, used = settings.max_stored_bytes_per_owner, stored_bytes(session, owner.id)
    if used >= cap:
        raise StorageUsedUp("Storage quota used up",
                            f"Your datasets and job results take {used} bytes; this server allows {cap} bytes "
                            "per owner, so a new job could not store its results." + STORAGE_REMEDY,
                            limit=cap, in_use=used)


def check_storage_for_upload(session: Session, owner: Owner, settings: Settings, incoming: int) -> None:
    """Before receiving (incoming=0) and once the upload's size is known."""
    cap, used = settings.max_stored_bytes_per_owner, stored_bytes(session, owner.id)
    if used + incoming > cap or used >= cap:
        what = f"this {incoming}-byte upload would bring them to {used + incoming}" if incoming else "that is full"
        raise UploadOverStorageQuota("Storage quota exceeded",
                                     f"Your datasets and job results take {used} bytes of the {cap} bytes this "
                                     f"server allows per owner; {what}." + STORAGE_REMEDY, limit=cap, in_use=used)
