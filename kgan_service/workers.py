"""Worker processes as the job lifecycle and the admission check see them: who holds a job's
lease (``host:pid``), whether that holder is gone, each process's row in the ``workers`` table
(which every pool process refreshes each heartbeat), and the most memory a live worker offers
a job."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kgan_service.db import Database, utcnow
from kgan_service.models import Worker
from kgan_service.settings import Settings


def worker_identity(pid: int | None = None) -> str:
    """The job row's ``worker``: this host and a process of it (this one by default)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_is_dead(worker: str | None) -> bool:
    """True when the lease holder was a process on this host that no longer exists: a worker
    child killed mid-job, whose message Celery hands straight back. Then there is no need to
    wait for the lease to run out."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid))


FORGET_AFTER = timedelta(days=1)  # rows of workers gone this long are deleted by the next one to register


def register(db: Database, worker: str, device: str, device_name: str | None, memory_bytes: int) -> None:
    """Create or refresh ``worker``'s row: it is alive now, on ``device`` with ``memory_bytes`` for a job."""
    now = utcnow()
    with db.session() as s:
        s.execute(delete(Worker).where(Worker.seen_at < now - FORGET_AFTER))
        row = s.get(Worker, worker)
        if row is None:
            s.add(Worker(id=worker, device=device, device_name=device_name, memory_bytes=memory_bytes,
                         started_at=now, seen_at=now))
        else:
            row.device, row.device_name, row.memory_bytes, row.seen_at = device, device_name, memory_bytes, now


def unregister(db: Database, worker: str) -> None:
    with db.session() as s:
        s.execute(delete(Worker).where(Worker.id == worker))


@dataclass(frozen=True)
class WorkerMemory:
    """What the admission check compares a job's estimated peak with, and where it comes from."""

    limit_bytes: int
    source: str  # for the message: which worker, or which setting


def worker_memory(session: Session, settings: Settings) -> WorkerMemory:
    """The most memory a live worker has for a job (its GPU's, or its KGAN_WORKER_MEMORY_BYTES on
    a CPU), as the workers report it every heartbeat; with no live worker registered (none
    started yet, or all gone), this server's KGAN_WORKER_MEMORY_BYTES."""
    live_since = utcnow() - timedelta(seconds=settings.lease_s)
    largest = session.execute(select(Worker).where(Worker.seen_at >= live_since)
                              .order_by(Worker.memory_bytes.desc(), Worker.id).limit(1)).scalar_one_or_none()
    if largest is None:
        return WorkerMemory(settings.worker_memory_bytes, "a worker here has {gib} (KGAN_WORKER_MEMORY_BYTES)")
    device = f"{largest.device} ({largest.device_name})" if largest.device_name else largest.device
    return WorkerMemory(largest.memory_bytes, f"the largest running worker has {{gib}} on {device}")
