"""Each pool process keeps a row in the ``workers`` table: its device and the memory a job there
can use, refreshed every heartbeat whether it runs a job or waits for one. Submissions compare
a job's estimated peak memory with the live rows (kgan_service.workers, which also writes them),
so a job no running worker can hold is refused at once instead of failing on a worker later.

The device is looked at in a thread of the pool process, not in the fork hook: touching CUDA
belongs in the process that uses it, and importing torch may take longer than Celery gives the
hook."""

from __future__ import annotations

import logging
import threading

from kgan_service import workers
from kgan_service.db import Database
from kgan_service.models import Worker
from kgan_service.settings import Settings
from kgan_service.workers import worker_identity
from worker.memory import device_memory_bytes

log = logging.getLogger("kgan.worker")


def resolved_device(name: str) -> str:
    """``auto`` as the job would resolve it: the first GPU when there is one, else the CPU."""
    if name != "auto":
        return name
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return str(torch.cuda.get_device_properties(int(device.partition(":")[2] or 0)).name)


class Registration:
    """This process's row, kept fresh by a daemon thread until ``stop``."""

    def __init__(self, settings: Settings, db: Database):
        self.settings, self.db = settings, db
        self.me = worker_identity()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="worker-registration")

    def start(self) -> Registration:
        self.thread.start()
        return self

    def describe(self) -> Worker:
        device = resolved_device(self.settings.worker_device)
        return Worker(id=self.me, device=device, device_name=device_name(device),
                      memory_bytes=device_memory_bytes(device, self.settings))

    def register(self, described: Worker) -> None:
        workers.register(self.db, self.me, described.device, described.device_name, described.memory_bytes)

    def _beat(self) -> None:
        try:
            described = self.describe()
        except Exception:  # a device that cannot be read: submissions fall back to KGAN_WORKER_MEMORY_BYTES
            log.exception("could not read this worker's device memory; it is not registered")
            return
        log.info("worker %s registered: %s with %.1f GiB for jobs", self.me, described.device,
                 described.memory_bytes / 1024**3)
        while True:
            try:
                self.register(described)
            except Exception:  # a database blip: the row outlives a few missed beats
                log.exception("could not refresh worker %s's registration", self.me)
            if self.stopped.wait(self.settings.heartbeat_s):
                break
        self.unregister()

    def unregister(self) -> None:
        try:
            workers.unregister(self.db, self.me)
        except Exception:
            log.exception("could not remove worker %s's registration (it goes stale on its own)", self.me)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        self.thread.join(timeout)
