"""End to end: `python -m api.serve` as a subprocess (SQLite, embedded Redis, a real Celery
worker), driven over HTTP like a researcher would with httpx."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests._service import embedded_service, poll

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with embedded_service(tmp_path_factory.mktemp("embedded")) as running:
        yield running.url, running.key, running.data_dir, running.env


@pytest.mark.slow
def test_train_poll_and_fetch_a_png_per_member(service):
    base, first_key, data_dir, env = service
    created = subprocess.run([sys.executable, "-m", "api.keys", "create", "--owner", "researcher", "--quiet",
                              "--data-dir", str(data_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
    key = created.stdout.strip()
    assert key.startswith("kgan_") and key != first_key
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        params = {"dataset": "ring8", "n_points": 2000, "k": 2, "steps": 30, "log_every": 5, "checkpoint_every": 10,
                  "rounds": 1, "width": 32, "batch_size": 32}
        r = api.post("/v1/jobs", json={"kind": "train", "params": params}, headers={"Idempotency-Key": "e2e-1"})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        job = poll(lambda: (j := api.get(location).json())["status"] in ("succeeded", "failed", "cancelled") and j,
                   timeout=300, every=1)
        assert job["status"] == "succeeded", job
        assert job["progress"]["step"] == 30 and job["progress"]["fraction"] == 1.0
        model = api.get(job["links"]["model"]).json()
        assert model["k"] == 2 and len(model["members"]) == 2
        for member in model["members"]:
            png = api.get(member["links"]["samples"], params={"n": 200, "seed": 1})
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            image = Image.open(io.BytesIO(png.content))
            image.load()
            w, h = image.size
            assert 200 <= w <= 1000 and 200 <= h <= 1000  # a 4-inch, 100-dpi scatter plot
            low, high = image.convert("L").getextrema()
            assert high - low > 100  # points drawn on white, not a blank canvas
        artifacts = api.get("/v1/artifacts", params={"model_id": model["id"]}).json()["items"]
        checkpoint = next(a for a in artifacts if a["kind"] == "checkpoint")
        file = api.get(checkpoint["links"]["self"])
        assert file.headers["etag"] == f'"{checkpoint["sha256"]}"' and "immutable" in file.headers["cache-control"]
        assert len(file.content) == checkpoint["size_bytes"]
        assert api.get(checkpoint["links"]["self"], headers={"If-None-Match": file.headers["etag"]}).status_code == 304
        # Retrying the first POST returns the same job, not a new one.
        again = api.post("/v1/jobs", json={"kind": "train", "params": params}, headers={"Idempotency-Key": "e2e-1"})
        assert again.json()["id"] == job["id"]


@pytest.mark.slow
def test_cancel_through_the_running_service(service):
    # Progress is reported only every 50,000 steps, so the cancel must take effect between
    # reports: the worker's heartbeat sees it and the trainer stops at its next step.
    base, key, data_dir, _ = service
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        params = {"dataset": "ring8", "n_points": 2000, "k": 2, "steps": 100_000, "log_every": 50_000,
                  "checkpoint_every": 20, "width": 32, "batch_size": 32}
        job = api.post("/v1/jobs", json={"kind": "train", "params": params}).json()
        # Training is under way once its first checkpoint is on disk, long before its first report.
        summary = data_dir / "artifacts" / "runs" / job["id"] / "attempt-0001" / "run.json"
        poll(summary.is_file, timeout=180)
        assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
        final = poll(lambda: (j := api.get(f"/v1/jobs/{job['id']}").json())["status"] != "running" and j, timeout=120)
        assert final["status"] == "cancelled"
        metrics = httpx.get(f"{base}/metrics").text
        assert re.search(r'kgan_jobs\{state="cancelled"\} [1-9]', metrics)
