"""The embedded service (`python -m api.serve`: SQLite, embedded Redis, a real Celery worker)
as a subprocess, for tests that drive it over HTTP like a user would: the end-to-end service tests, the
Python client's and the gallery's."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass(frozen=True)
class EmbeddedService:
    url: str
    key: str
    data_dir: Path
    env: dict[str, str]  # the service's environment, for running `python -m api.keys` beside it
    pid: int  # the API's process (for measuring its memory)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(fn: Callable[[], T], timeout: float, every: float = 0.5) -> T:
    """fn() until it returns something truthy; transport errors count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s; last value {last!r}")


@contextlib.contextmanager
def embedded_service(data_dir: Path, *, worker: bool = True, **settings: str) -> Iterator[EmbeddedService]:
    """Start the service on a free port (without its Celery worker if ``worker`` is false, with
    extra KGAN_* ``settings``), wait for /readyz, yield its URL and the API key it printed;
    stop it with Ctrl-C afterwards and fail if it did not exit cleanly."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGAN_")}
    env.update(KGAN_RECONCILE_INTERVAL_S="1", KGAN_HEARTBEAT_S="1", KGAN_WORKER_DEVICE="cpu",
               **settings)
    log_path = data_dir / "serve.log"
    with log_path.open("w+") as log:
        command = [sys.executable, "-m", "api.serve", "--data-dir", str(data_dir), "--port", str(port),
                   "--log-level", "warning"] + ([] if worker else ["--no-worker"])
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            poll(lambda: proc.poll() is not None or httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
                 timeout=120)
            assert proc.poll() is None, f"the service exited early:\n{log_path.read_text()[-3000:]}"
            key = re.search(r"^\s+(kgan_\S+)\s*$", log_path.read_text(), re.M)
            assert key, "the first start prints an API key"
            yield EmbeddedService(url, key.group(1), data_dir, env, proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
    assert code == 0, log_path.read_text()[-3000:]


# Tiny but real training runs: seconds on a loaded 2-core machine.
RING8_TINY = {"n_points": 2000, "k": 2, "steps": 30, "log_every": 5, "checkpoint_every": 10, "rounds": 1,
              "width": 32, "batch_size": 32}
IMAGES_TINY = {"k": 2, "steps": 6, "batch_size": 4, "n_critic": 1, "width": 4, "latent_dim": 8, "rounds": 1,
               "log_every": 2}


def digits_zip(n: int = 24, size: int = 8) -> bytes:
    """A .zip of n small grey PNGs of two kinds (bright top half / bright left half), so the two
    members have something to tell apart."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(n):
            pixels = rng.integers(0, 60, (size, size), dtype=np.uint8)
            if i % 2:
                pixels[: size // 2] += 180
            else:
                pixels[:, : size // 2] += 180
            png = io.BytesIO()
            Image.fromarray(pixels, "L").save(png, format="PNG")
            archive.writestr(f"digits/{i:03d}.png", png.getvalue())
    return buffer.getvalue()
