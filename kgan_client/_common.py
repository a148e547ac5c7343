"""What the sync and async clients share: request bodies, response checks and verified
downloads. Only the sending differs between them (``send`` vs ``await send``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import IO, Any

import httpx
from PIL import Image

from kgan_client.errors import ApiError, IntegrityError, KganError
from kgan_client.schemas import ArtifactInfo, DatasetInfo, ModelInfo

DatasetRef = str | DatasetInfo
ModelRef = str | ModelInfo
UploadSource = str | os.PathLike[str] | bytes | IO[bytes]
DEFAULT_TIMEOUT = 60.0
INDEX_FILE = "artifacts.json"


def base_headers(key: str) -> dict[str, str]:
    key = (key or "").strip()  # a key read from a file or an environment variable may end in a newline
    if not key or any(c.isspace() for c in key):
        raise KganError("give the API key exactly as printed by `kgan serve` or `kgan create-key` (kgan_...)")
    return {"Authorization": f"Bearer {key}", "User-Agent": "kgan-client/0.1"}


def check(response: httpx.Response) -> httpx.Response:
    """The response, if it succeeded; otherwise the service's problem document as an ApiError
    (a streamed response must have been read first)."""
    if response.is_success:
        return response
    raise ApiError.from_response(response)


def data_source(dataset: DatasetRef | None, dataset_id: str | None) -> dict[str, str]:
    """``{"dataset": name}`` for a built-in, ``{"dataset_id": id}`` for an uploaded dataset."""
    if isinstance(dataset, DatasetInfo):
        if dataset_id is not None:
            raise KganError("give the dataset once: either dataset=<uploaded dataset> or dataset_id=")
        return {"dataset_id": dataset.id}
    if (dataset is None) == (dataset_id is None):
        raise KganError("give exactly one of dataset=<built-in name or uploaded dataset> and dataset_id=<id>")
    return {"dataset": dataset} if dataset is not None else {"dataset_id": dataset_id}  # type: ignore[dict-item]


def dataset_id_of(dataset: DatasetRef) -> str:
    return dataset.id if isinstance(dataset, DatasetInfo) else dataset


def model_id_of(model: ModelRef) -> str:
    return model.id if isinstance(model, ModelInfo) else model


def job_request(kind: str, params: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return {"json": {"kind": kind, "params": params}, "headers": headers}


def visualise_params(model: ModelRef, what: str, member: int | None, seed: int, prior: str | ArtifactInfo | None,
                     options: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"model_id": model_id_of(model), "what": what, "seed": seed, "options": options}
    if member is not None:
        params["member"] = member
    if prior is not None:
        params["prior_id"] = prior.id if isinstance(prior, ArtifactInfo) else prior
    return params


def upload_files(source: UploadSource, filename: str | None) -> tuple[str, IO[bytes], bool]:
    """(file name, readable file, whether we opened it and must close it)."""
    if isinstance(source, bytes):
        if not filename:
            raise KganError("uploading bytes needs filename= ending in .zip, .tar, .tar.gz or .tgz")
        return filename, io.BytesIO(source), True
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise KganError(f"{path} is not a file; upload a .zip, .tar, .tar.gz or .tgz of images")
        return filename or path.name, path.open("rb"), True
    name = filename or Path(getattr(source, "name", "") or "").name
    if not name:
        raise KganError("uploading a file object needs filename= ending in .zip, .tar, .tar.gz or .tgz")
    return name, source, False


def image_from(response: httpx.Response) -> Image.Image:
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


class VerifiedFile:
    """Writes a download beside its final name and renames it into place only when its sha256
    matches the service's, so a folder never holds a half-written or corrupted file."""

    def __init__(self, path: Path, sha256: str):
        self.path, self.sha256 = path, sha256
        self.part = path.with_name(path.name + ".part")
        self.hash = hashlib.sha256()
        self.file = self.part.open("wb")

    def write(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        self.file.write(chunk)

    def finish(self) -> Path:
        self.file.close()
        if self.hash.hexdigest() != self.sha256:
            self.part.unlink(missing_ok=True)
            raise IntegrityError(f"{self.path.name}: the download's sha256 is {self.hash.hexdigest()}, the service "
                                 f"recorded {self.sha256}; download it again")
        self.part.replace(self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.part.unlink(missing_ok=True)


def already_there(path: Path, sha256: str) -> bool:
    """True when ``path`` holds exactly this content (so a repeated download fetches nothing)."""
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == sha256


def write_index(folder: Path, artifacts: list[ArtifactInfo]) -> None:
    """artifacts.json: every downloaded file's name with its kind, member and numbers, merged
    with what an earlier download into the same folder recorded."""
    index_path = folder / INDEX_FILE
    index: dict[str, Any] = {}
    if index_path.is_file():
        try:
            index = {entry["id"]: entry for entry in json.loads(index_path.read_text())}
        except (ValueError, KeyError, TypeError):
            index = {}
    for a in artifacts:
        index[a.id] = {**a.model_dump(mode="json"), "file": a.local_name}
    tmp = index_path.with_name(INDEX_FILE + ".part")
    tmp.write_text(json.dumps(sorted(index.values(), key=lambda e: (e["created_at"], e["id"])), indent=2))
    tmp.replace(index_path)


def artifact_query(model_id: str | None, job_id: str | None, member: int | None, kind: str | None) -> dict[str, Any]:
    query = {"model_id": model_id, "job_id": job_id, "member": member, "kind": kind, "limit": 100}
    return {name: value for name, value in query.items() if value is not None}
