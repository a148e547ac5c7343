"""A process's own artifact folder (KGAN_ARTIFACT_DIR, by default KGAN_DATA_DIR/artifacts): where
the API receives an upload and checks it before moving it into the artifact store, and, unless
KGAN_WORKER_SCRATCH says otherwise, where a worker keeps its scratch folder. Every file the
service keeps lives in the store (kgan_service.store, KGAN_ARTIFACT_URL), which by default is
this same folder; on S3 nothing in it is shared with another host."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def ensure(self) -> None:
        # The store's folders too, so that a local-folder store looks the same from its first start.
        for sub in ("datasets", "runs", "uploads", "previews"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def check_writable(self) -> None:
        probe = self.root / f".ready-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
