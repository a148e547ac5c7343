"""The artifact store: where uploads, datasets, run folders with checkpoints and rendered
artifacts are kept, addressed by keys such as ``runs/<job>/attempt-0001/checkpoint.safetensors``.

Two backends behind one interface, chosen by ``KGAN_ARTIFACT_URL``:

- ``file:///data/artifacts``: a local folder (the embedded default). Keys are paths under it.
- ``s3://bucket/prefix``: any S3-compatible server (AWS S3, MinIO, Ceph RGW, R2) through boto3,
  with the usual ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
  ``AWS_REGION`` variables. This is what lets workers on several hosts share nothing but
  PostgreSQL, Redis and the store.

Every write is atomic per object: a reader sees the old object, the whole new one, or nothing,
never half a file (S3 PUTs, including multipart uploads, appear only once complete; the local
backend writes a hidden temporary file and renames it). SQL rows hold keys, never URLs, so the
same rows work whichever backend serves them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

CHUNK_BYTES = 1 << 20
# Temporary files of unfinished local writes start with this; listings never show them.
_PARTIAL = ".partial-"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StoreError(RuntimeError):
    """The store could not do what was asked; the message says what to check."""


class ObjectMissing(StoreError):
    """No object under this key."""

    def __init__(self, key: str):
        super().__init__(f"no object {key!r} in the artifact store")
        self.key = key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def check_key(key: str) -> str:
    """A key is a relative POSIX path without empty, '.' or '..' parts: the same rule on both
    backends, so a key that works on a laptop works on S3 and can never leave the local root."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"{key!r} is not an artifact key (a relative path such as 'runs/<job>/file')")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or parts[-1].startswith(_PARTIAL):
        raise ValueError(f"{key!r} is not an artifact key (empty, '.' or '..' parts, or a reserved name)")
    return key


# Where a job's files live. Each attempt of a job has its own folder: a stale worker that still
# runs an old attempt writes only there and can never clobber the checkpoint of a newer attempt.
def job_key(job_id: str) -> str:
    return check_key(f"runs/{job_id}")


def attempt_key(job_id: str, attempt: int) -> str:
    return f"{job_key(job_id)}/attempt-{attempt:04d}"


def dataset_key(dataset_id: str) -> str:
    return check_key(f"datasets/{dataset_id}")


def _folder(prefix: str) -> str:
    """'runs/j1' and 'runs/j1/' both mean the folder runs/j1/ (never runs/j10); '' is everything."""
    prefix = prefix.strip("/")
    return check_key(prefix) + "/" if prefix else ""


class ArtifactObjects(ABC):
    """What the service needs from a store. Keys are checked by :func:`check_key`."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the objects live, as KGAN_ARTIFACT_URL names it (never holds a credential)."""

    @abstractmethod
    def put_file(self, key: str, source: Path) -> int:
        """Copy a local file in (multipart on S3, so it is never read into memory); its size."""

    @abstractmethod
    def put_stream(self, key: str, stream: BinaryIO) -> int:
        """Copy a readable binary stream in, chunk by chunk; the number of bytes stored."""

    def move_in(self, key: str, source: Path) -> int:
        """Put a local file under ``key`` and remove the local file (an upload staged on disk)."""
        size = self.put_file(key, source)
        Path(source).unlink(missing_ok=True)
        return size

    def put_bytes(self, key: str, data: bytes) -> int:
        import io

        return self.put_stream(key, io.BytesIO(data))

    @abstractmethod
    def fetch(self, key: str, dest: Path) -> Path:
        """Download to ``dest`` (its folder is created); ``dest`` appears only once complete."""

    @abstractmethod
    def iter_range(self, key: str, start: int = 0, stop: int | None = None,
                   chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes [start, stop) of an object, streamed in chunks (stop None: to the end)."""

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_range(key))

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size of an object; :class:`ObjectMissing` when there is none."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectMissing:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under the folder ``prefix``, sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; removing one that is not there is not an error."""

    @abstractmethod
    def delete_tree(self, prefix: str) -> int:
        """Remove every object under the folder ``prefix``; how many were removed."""

    def presign(self, key: str, expires_s: int) -> str | None:
        """A URL that fetches the object without credentials for ``expires_s`` seconds, where the
        backend has such URLs (S3); None where it does not (a local folder)."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StoreError` unless objects can be written, read and removed now."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalObjects(ArtifactObjects):
    """A folder on this machine: the embedded deployment, and one host with one volume."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def path(self, key: str) -> Path:
        full = (self.root / check_key(key)).resolve()
        # check_key already refuses '..'; a symlink inside the folder must not lead out of it either.
        if not full.is_relative_to(self.root):
            raise ValueError(f"{key!r} leaves the artifact store")
        return full

    @contextlib.contextmanager
    def _atomic(self, dest: Path) -> Iterator[BinaryIO]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{_PARTIAL}{uuid.uuid4().hex}-{dest.name}")
        try:
            with open(partial, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)

    def put_file(self, key: str, source: Path) -> int:
        with open(source, "rb") as stream:
            return self.put_stream(key, stream)

    def move_in(self, key: str, source: Path) -> int:
        # A rename when the file is on the same file system (an upload staged in this folder):
        # no second copy of a large archive, and the object appears whole.
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = Path(source).stat().st_size
            os.replace(source, dest)
            return size
        except OSError:
            return super().move_in(key, source)

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        with self._atomic(self.path(key)) as out:
            shutil.copyfileobj(stream, out, CHUNK_BYTES)
            return out.tell()

    def fetch(self, key: str, dest: Path) -> Path:
        dest = Path(dest)
        try:
            with open(self.path(key), "rb") as stream, self._atomic(dest) as out:
                shutil.copyfileobj(stream, out, CHUNK_BYTES)
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectMissing(key) from None
        return dest

    def iter_range(self, key: str, start: int = 0, stop: int | None = None,
                   chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            stream = open(self.path(key), "rb")  # noqa: SIM115 - closed by the generator below
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectMissing(key) from None
        return self._read(stream, start, stop, chunk_bytes)

    @staticmethod
    def _read(stream: BinaryIO, start: int, stop: int | None, chunk_bytes: int) -> Iterator[bytes]:
        with stream:
            stream.seek(start)
            left = None if stop is None else max(0, stop - start)
            while left is None or left > 0:
                block = stream.read(chunk_bytes if left is None else min(chunk_bytes, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    def stat(self, key: str) -> ObjectInfo:
        path = self.path(key)
        if not path.is_file():
            raise ObjectMissing(key)
        return ObjectInfo(key, path.stat().st_size)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        folder = _folder(prefix)
        base = self.path(folder.rstrip("/")) if folder else self.root
        if not base.is_dir():
            return []
        found = [ObjectInfo(p.relative_to(self.root).as_posix(), p.stat().st_size)
                 for p in base.rglob("*") if p.is_file() and not p.name.startswith(_PARTIAL)]
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> int:
        folder = _folder(prefix)
        if not folder:
            raise ValueError("delete_tree needs a folder; it never empties the whole store")
        count = len(self.list(folder))
        shutil.rmtree(self.path(folder.rstrip("/")), ignore_errors=True)
        return count

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{_PARTIAL}ready-{os.getpid()}-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            ok = probe.read_bytes() == b"ok"
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"cannot write to the artifact folder {self.root}: {exc.strerror or exc}; "
                             "check that it exists and this process may write to it") from None
        if not ok:
            raise StoreError(f"the artifact folder {self.root} did not give back what was written to it")


class S3Objects(ArtifactObjects):
    """A bucket (and a key prefix in it) on an S3-compatible server, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client=None):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                # MinIO, Ceph and test servers live at an address, not under a wildcard DNS name:
                # name the bucket in the path there; AWS itself picks its own style.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                connect_timeout=3, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
            )
            # Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
            # a profile, an instance role); they are never passed through, kept or printed here.
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                                    region_name=region or "us-east-1", config=config)
        self.client = client
        from boto3.s3.transfer import TransferConfig

        # 8 MiB parts: an upload holds a few parts in memory at most, whatever the file's size.
        self.transfer = TransferConfig(multipart_threshold=8 * 1024**2, multipart_chunksize=8 * 1024**2,
                                       max_concurrency=4)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _where(self) -> str:
        return f"{self.url} at {self.endpoint_url or 'AWS S3'}"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """botocore's exceptions as StoreErrors that say what to check, never quoting a secret."""
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if key is not None and code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(key) from None
            if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and key is None):
                raise StoreError(f"the bucket {self.bucket!r} does not exist on {self.endpoint_url or 'AWS S3'}; "
                                 "create it or correct KGAN_ARTIFACT_URL") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"):
                raise StoreError(f"{self._where()} refused this process's credentials ({code}); check "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy") from None
            raise StoreError(f"{self._where()} answered {status} {code}: {error.get('Message', '')}".rstrip(": "))\
                from None
        except NoCredentialsError:
            raise StoreError(f"no credentials for {self._where()}; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY") from None
        except EndpointConnectionError:
            raise StoreError(f"cannot reach {self.endpoint_url or 'AWS S3'} for {self.url}; check "
                             "AWS_ENDPOINT_URL and that the server is up") from None
        except BotoCoreError as exc:
            raise StoreError(f"{self._where()}: {type(exc).__name__}: {exc}") from None

    def put_file(self, key: str, source: Path) -> int:
        size = Path(source).stat().st_size
        with self._errors():
            self.client.upload_file(str(source), self.bucket, self._name(key), Config=self.transfer)
        return size

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        counted = _Counting(stream)
        with self._errors():
            self.client.upload_fileobj(counted, self.bucket, self._name(key), Config=self.transfer)
        return counted.count

    def fetch(self, key: str, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{_PARTIAL}{uuid.uuid4().hex}-{dest.name}")
        try:
            with self._errors(key):
                self.client.download_file(self.bucket, self._name(key), str(partial), Config=self.transfer)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest

    def iter_range(self, key: str, start: int = 0, stop: int | None = None,
                   chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        if stop is not None and stop <= start:
            self.stat(key)  # still an ObjectMissing for a key that is not there
            return iter(())
        ranged = {} if start == 0 and stop is None else {"Range": f"bytes={start}-{'' if stop is None else stop - 1}"}
        with self._errors(key):
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._name(key), **ranged)["Body"]
            except Exception as exc:
                # A start at or past the end is an empty read, as for a local file.
                if getattr(exc, "response", {}).get("Error", {}).get("Code") == "InvalidRange":
                    self.stat(key)
                    return iter(())
                raise
        return self._chunks(key, body, chunk_bytes)

    def _chunks(self, key: str, body, chunk_bytes: int) -> Iterator[bytes]:
        with contextlib.closing(body), self._errors(key):
            yield from body.iter_chunks(chunk_bytes)

    def stat(self, key: str) -> ObjectInfo:
        with self._errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        return ObjectInfo(key, int(head["ContentLength"]))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        folder = _folder(prefix)
        name = f"{self.prefix}/{folder}" if self.prefix else folder
        found: list[ObjectInfo] = []
        with self._errors():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=name):
                found += [ObjectInfo(self._key(o["Key"]), int(o["Size"])) for o in page.get("Contents", [])]
        return sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_tree(self, prefix: str) -> int:
        folder = _folder(prefix)
        if not folder:
            raise ValueError("delete_tree needs a folder; it never empties the whole store")
        names = [self._name(info.key) for info in self.list(folder)]
        for i in range(0, len(names), 1000):  # DeleteObjects takes at most 1,000 keys
            with self._errors():
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in names[i:i + 1000]], "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StoreError(f"{self._where()} kept {len(answer['Errors'])} object(s) under {folder!r}, e.g. "
                                 f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message', '')}".rstrip())
        return len(names)

    def presign(self, key: str, expires_s: int) -> str | None:
        with self._errors(key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._name(key)}, ExpiresIn=int(expires_s))

    def check(self) -> None:
        with self._errors():
            self.client.head_bucket(Bucket=self.bucket)
        probe = f"{_PARTIAL}ready-{os.getpid()}-{uuid.uuid4().hex}"
        name = f"{self.prefix}/{probe}" if self.prefix else probe
        with self._errors():
            self.client.put_object(Bucket=self.bucket, Key=name, Body=b"ok")
            ok = self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read() == b"ok"
            self.client.delete_object(Bucket=self.bucket, Key=name)
        if not ok:
            raise StoreError(f"{self._where()} did not give back what was written to it")


class _Counting:
    """A read-only stream that counts the bytes read through it (boto3 reports no size)."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.count = stream, 0

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.count += len(block)
        return block


def open_store(url: str, environ: Mapping[str, str] | None = None) -> ArtifactObjects:
    """The store that ``KGAN_ARTIFACT_URL`` names: ``file:///absolute/folder`` or
    ``s3://bucket[/prefix]`` (endpoint and region from AWS_ENDPOINT_URL and AWS_REGION)."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StoreError(f"KGAN_ARTIFACT_URL={url!r}: a folder URL is file:///absolute/path (three slashes)")
        return LocalObjects(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if parts.username or parts.password:
            # Said without echoing the URL: it holds a secret.
            raise StoreError("KGAN_ARTIFACT_URL must not hold credentials; set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY instead")
        if parts.query or parts.fragment or parts.port is not None:
            raise StoreError(f"KGAN_ARTIFACT_URL={url!r}: write s3://bucket/prefix; the server's address "
                             "goes in AWS_ENDPOINT_URL")
        if not _BUCKET_NAME.match(parts.hostname or ""):
            raise StoreError(f"KGAN_ARTIFACT_URL={url!r}: {parts.hostname or ''!r} is not a bucket name "
                             "(3 to 63 lower-case letters, digits, dots and hyphens)")
        prefix = unquote(parts.path).strip("/")
        if prefix:
            try:
                check_key(prefix)
            except ValueError:
                raise StoreError(f"KGAN_ARTIFACT_URL={url!r}: the prefix {prefix!r} has empty, '.' or '..' "
                                 "parts") from None
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
        return S3Objects(parts.hostname, prefix, endpoint_url=endpoint, region=region)
    # Only the scheme is quoted: an unknown URL might hold a password.
    raise StoreError(f"KGAN_ARTIFACT_URL starts with {parts.scheme + ':' if parts.scheme else 'no scheme'}; "
                     "use file:///absolute/folder or s3://bucket/prefix")

