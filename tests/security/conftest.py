"""Fixtures for the security and load tests: the service fixtures (both backends, ``client``,
``alice``/``bob``, ``trained``), and the API as a real process for what must be measured on
one (its memory, its latency under concurrent clients)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests._service import free_port, poll
from tests.service.conftest import *  # noqa: F403 - the same fixtures, for tests in this folder
from tests.service.conftest import pytest_generate_tests  # noqa: F401 - parametrises `backend`

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass
class Live:
    base: str
    key: str
    pid: int
    data_dir: Path
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGAN_")}
    env.update(KGAN_BUILTIN_DATA_ROOT=str(SHARED_DATA), KGAN_WORKER_DEVICE="cpu", **extra)
    return env


@contextmanager
def live_service(data_dir: Path, *, worker: bool = True, **env: str) -> Iterator[Live]:
    """``python -m api.serve`` (SQLite, an embedded Redis, a real Celery worker unless told
    not to) on a free port; yields once /healthz answers, with the first key it printed."""
    port = free_port()
    log_path = data_dir / "serve.log"
    log = open(log_path, "w+")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "api.serve", "--data-dir", str(data_dir), "--port", str(port),
           "--log-level", "warning"] + ([] if worker else ["--no-worker"])
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(**env), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, timeout=180)
        log.seek(0)
        first = re.search(r"^\s+(kgan_\S+)\s*$", log.read(), re.M)
        assert first, "the first start prints an API key"
        yield Live(base, first.group(1), proc.pid, data_dir, log_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024
