"""A real S3-protocol server on a free 127.0.0.1 port for the tests that run on the S3 backend:
a MinIO binary when ``minio`` is on PATH, else moto's server mode (``moto[server]``), which
speaks the same HTTP API. Either way the store talks to it over sockets like to AWS."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests._service import free_port


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    kind: str  # "minio" or "moto"

    @property
    def env(self) -> dict[str, str]:
        """The variables a kgan process needs to reach this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def create_bucket(self) -> str:
        import boto3

        name = f"kgan-test-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                     aws_secret_access_key=self.secret_key, region_name="us-east-1").create_bucket(Bucket=name)
        return name


def _wait_live(url: str, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {proc.returncode} before it answered")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the S3 server did not answer {url} within {timeout} s")


@contextlib.contextmanager
def s3_server(scratch: Path) -> Iterator[S3Server]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    minio = shutil.which("minio")
    if minio:
        user, password = "kgan-test", uuid.uuid4().hex
        env = dict(os.environ, MINIO_ROOT_USER=user, MINIO_ROOT_PASSWORD=password)
        proc = subprocess.Popen([minio, "server", str(scratch), "--address", f"127.0.0.1:{port}", "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_live(f"{endpoint}/minio/health/live", proc, timeout=60)
            yield S3Server(endpoint, user, password, "minio")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        _wait_live(f"{endpoint}/moto-api/", None, timeout=60)
        # moto accepts any credentials; these are only there so boto3 signs its requests.
        yield S3Server(endpoint, "kgan-test", "kgan-test-secret", "moto")
    finally:
        server.stop()
