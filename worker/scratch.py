"""A worker's own folder (KGAN_WORKER_SCRATCH): the attempt it is training, and a bounded cache of
the files it fetched from the artifact store. Nothing in it is shared with the API or with other
workers; what they need is put into the store, which is what lets workers run on several hosts.

- ``attempts/<job>/attempt-NNNN``: an attempt trains and draws here; its checkpoint is uploaded
  after every save (:class:`CheckpointUpload`), its results when it ends; then the folder goes.
- ``cache/<key>``: datasets, models and priors, fetched once and kept while they fit in
  KGAN_WORKER_CACHE_BYTES; the least recently used are removed first.

On the local-folder store every key already is a file on this machine, so the cache hands out the
store's own path rather than a copy: the embedded deployment keeps one copy of each file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from kgan_service.store import _PARTIAL, ArtifactObjects, LocalObjects, check_key

log = logging.getLogger("kgan.worker")


class Scratch:
    def __init__(self, root: Path, objects: ArtifactObjects, cache_bytes: int):
        self.root, self.objects, self.cache_bytes = Path(root), objects, cache_bytes

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        path = self.root / "attempts" / check_key(job_id) / f"attempt-{attempt:04d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_attempt(self, job_id: str, attempt: int) -> None:
        job = self.root / "attempts" / check_key(job_id)
        shutil.rmtree(job / f"attempt-{attempt:04d}", ignore_errors=True)
        with contextlib.suppress(OSError):
            job.rmdir()  # only when no other attempt of the job runs here

    def attempt_folders(self) -> list[tuple[str, int, Path]]:
        """(job, attempt, folder) of every attempt folder here."""
        found = []
        for path in (self.root / "attempts").glob("*/attempt-*"):
            try:
                found.append((path.parent.name, int(path.name.removeprefix("attempt-")), path))
            except ValueError:
                continue
        return found

    def remove_attempts_that_are_over(self, live: set[tuple[str, int]]) -> int:
        """Remove the folders of attempts not in ``live`` (the running attempts, as the database
        has them): what a worker killed on this host left. Returns how many went."""
        gone = 0
        for job_id, attempt, _path in self.attempt_folders():
            if (job_id, attempt) not in live:
                self.remove_attempt(job_id, attempt)
                gone += 1
        return gone

    def cached(self, key: str) -> Path:
        """A local path holding the object ``key`` (a finished dataset, model file or prior: objects
        that never change under their key, so a cached copy stays right)."""
        if isinstance(self.objects, LocalObjects):
            return self.objects.path(key)
        path = self.root / "cache" / check_key(key)
        if path.is_file():
            os.utime(path)  # the access time the eviction orders by; atime may be off (noatime)
            return path
        self.objects.fetch(key, path)
        self.evict(keep=path)
        return path

    def cached_files(self) -> list[Path]:
        cache = self.root / "cache"
        if not cache.is_dir():
            return []
        return [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(_PARTIAL)]

    def evict(self, keep: Path | None = None) -> None:
        """Remove the least recently used cached files until the cache fits its bound; ``keep``
        (the file a job is about to use) and the files beside it (the rest of the same model)
        stay even when they alone are over it."""
        files = []
        for path in self.cached_files():
            try:
                stat = path.stat()
            except FileNotFoundError:  # another pool process evicted it
                continue
            files.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= self.cache_bytes:
                break
            if keep is not None and path.parent == keep.parent:
                continue
            path.unlink(missing_ok=True)
            total -= size
            log.info("scratch cache: removed %s (%d bytes) to stay within %d bytes", path, size, self.cache_bytes)


class CheckpointUpload:
    """Puts an attempt's checkpoint into the store each time the trainer has saved a new one.

    Called from the training thread between steps, so the files never change while they are read.
    The checkpoint goes first and run.json last: resume trusts an attempt only once its run.json is
    there, and each object appears whole or not at all, so another worker never resumes from half a
    checkpoint."""

    FILES = ("checkpoint.safetensors", "run.json")

    def __init__(self, objects: ArtifactObjects, run_dir: Path, key: str):
        self.objects, self.run_dir, self.key = objects, Path(run_dir), key
        self.uploaded: tuple[int, int] | None = None

    def _saved(self) -> tuple[int, int] | None:
        try:
            stat = (self.run_dir / self.FILES[-1]).stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    def __call__(self) -> bool:
        """Upload when a checkpoint was saved since the last upload; whether one was."""
        saved = self._saved()
        if saved is None or saved == self.uploaded or not (self.run_dir / self.FILES[0]).is_file():
            return False
        for name in self.FILES:
            self.objects.put_file(f"{self.key}/{name}", self.run_dir / name)
        self.uploaded = saved
        return True
