"""An upload cut off by a SIGKILL of the API leaves its half-written ``.part`` file behind; the
next API process sweeps it once it has gone unwritten for KGAN_STALE_UPLOAD_S. Real processes:
a broker and the API under uvicorn, killed the way the kernel's OOM killer would."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests._procs import start_api, wait_for
from tests._service import digits_zip

pytestmark = pytest.mark.slow  # real processes; still part of the default run

BOUNDARY = "kgan-test-boundary"
CHUNK = b"\0" * 64 * 1024


def slow_multipart(stop: threading.Event) -> Iterator[bytes]:
    """A multipart body whose file part never ends: 64 KiB every 20 ms until ``stop``."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.zip\"\r\n"
           "Content-Type: application/zip\r\n\r\n").encode()
    while not stop.is_set():
        yield CHUNK
        time.sleep(0.02)


def test_a_part_file_left_by_a_sigkilled_api_is_swept_after_restart(stack_factory):
    stack = stack_factory(stale_upload_s=1)
    stack.start_broker()
    api_process = stack.start_api()
    user = stack.user()
    stop, outcome = threading.Event(), {}

    def upload() -> None:
        try:
            with httpx.Client(base_url=stack.base_url, headers=user.headers, timeout=120) as api:
                outcome["response"] = api.post("/v1/datasets", content=slow_multipart(stop), headers={
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        except httpx.HTTPError as exc:  # the server vanished mid-body: what this test does to it
            outcome["error"] = exc

    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    try:
        def growing_part() -> list:
            parts = list(stack.settings.data_dir.rglob("*.part"))
            return [p for p in parts if p.stat().st_size > 1024 * 1024] and parts

        parts = wait_for(growing_part, 120, what="the upload's .part file to pass 1 MiB")
        assert len(parts) == 1, parts
        part = parts[0]
        api_process.signal(signal.SIGKILL)
        assert api_process.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop.set()
        sender.join(timeout=30)
    assert "response" not in outcome, outcome  # the upload never finished
    assert part.exists(), "a SIGKILL gives the API no chance to remove its own part file"
    size = part.stat().st_size

    # A loaded machine may take a while to import the API again: a generous start deadline.
    stack.api = start_api(stack._name("api"), stack.env, stack.api_port, stack.logs, timeout=240)
    stack.procs.append(stack.api)
    # The new process sweeps it at start or on a reconciler pass, once it is a second old.
    wait_for(lambda: not part.exists(), 120, every=0.2, what=f"{part} to be swept")
    assert size > 1024 * 1024
    # And uploads work as before.
    with stack.client(user) as api:
        r = api.post("/v1/datasets", files={"file": ("digits.zip", digits_zip(), "application/zip")})
        assert r.status_code == 201, r.text
    assert not list(stack.settings.data_dir.rglob("*.part"))
