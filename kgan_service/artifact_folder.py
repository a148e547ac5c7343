"""The artifact folder the API and the workers read and write today: one folder holding uploads,
run folders with checkpoints, and rendered artifacts (KGAN_ARTIFACT_DIR, by default KGAN_DATA_DIR/artifacts). SQL
rows hold paths relative to its root, so it can be mounted at different places in the api and
worker containers; those paths are also valid keys of kgan_service.store, the store interface
with a local-folder and an S3 backend (KGAN_ARTIFACT_URL)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure(self) -> None:
        for sub in ("datasets", "runs", "uploads", "previews"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def path(self, relative: str) -> Path:
        full = (self.root / relative).resolve()
        # Paths come from our own rows, but a bug must never serve a file outside the store.
        if not full.is_relative_to(self.root.resolve()):
            raise ValueError(f"{relative!r} leaves the artifact store")
        return full

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    # Each attempt of a job gets its own run folder: a stale worker that still runs an old
    # attempt writes only there and can never clobber the checkpoint of the newer attempt.
    def job_dir(self, job_id: str) -> Path:
        return self.root / "runs" / job_id

    def attempt_dir(self, job_id: str, attempt: int) -> Path:
        return self.job_dir(job_id) / f"attempt-{attempt:04d}"

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def check_writable(self) -> None:
        probe = self.root / f".ready-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
