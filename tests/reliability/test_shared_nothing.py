"""Shared nothing but PostgreSQL, Redis and the S3 store: an API and two workers as real processes,
each with a data folder (and so an artifact folder and a scratch folder) of its own and no folder
in common, as on three hosts. A train job on an uploaded dataset loses its worker to SIGKILL after
a checkpoint reached the store; the other worker resumes from that checkpoint and finishes; the
API, which never saw either worker's folder, serves the model's pictures and every artifact.

Needs PostgreSQL on 127.0.0.1:5432 and a redis-server binary (CI has both); skipped otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import uuid
from pathlib import Path

import pytest
from PIL import Image

from kgan_service.store import ObjectMissing
from tests._procs import child_pids, pid_alive, service_env, start_api, start_worker, wait_for
from tests._service import digits_zip
from tests.reliability.conftest import Stack, fresh_pg_database
from tests.service.conftest import backends

pytestmark = pytest.mark.slow  # real processes; still part of the default run

CE = 4  # checkpoint_every: several checkpoints in a short run
CACHE_BYTES = 256 * 1024  # the workers' cache bound: room for the small dataset, not for much more
TRAIN = {"k": 2, "steps": 60, "batch_size": 4, "n_critic": 1, "width": 4, "latent_dim": 8, "rounds": 1,
         "log_every": 1, "checkpoint_every": CE}


def files_under(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_a_job_moves_between_workers_that_share_no_folder(tmp_path, s3_store):
    if "postgres" not in backends():
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379 (CI has both), as compose runs")
    with fresh_pg_database() as database_url:
        stack = Stack("postgres", tmp_path / "stack", database_url,
                      artifact_url=f"{s3_store}/shared-nothing-{uuid.uuid4().hex[:10]}",
                      worker_cache_bytes=CACHE_BYTES, lease_s=4)
        try:
            run(stack, tmp_path)
        except BaseException:
            print(stack.close())
            raise
        stack.close()


def run(stack: Stack, tmp_path: Path) -> None:
    homes = {name: tmp_path / name for name in ("api", "worker-a", "worker-b")}

    def env(name: str) -> dict[str, str]:
        # Only the data folder differs: the artifact folder and the scratch folder are under it.
        return service_env({**stack.values, "data_dir": homes[name]})

    stack.start_broker()
    stack.api = start_api("api", env("api"), stack.api_port, stack.logs)
    stack.procs.append(stack.api)
    workers = {}
    for name in ("worker-a", "worker-b"):
        workers[name] = start_worker(name, env(name), stack.settings.queue, stack.logs)
        stack.procs.append(workers[name])
    user = stack.user()
    with stack.client(user) as api:
        dataset = api.post("/v1/datasets", files={"file": ("digits.zip", digits_zip(), "application/zip")})
        assert dataset.status_code == 201, dataset.text
        job = api.post("/v1/jobs", json={"kind": "train", "params": {"dataset_id": dataset.json()["id"], **TRAIN}})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]

        # The event: a checkpoint of attempt 1 past its start is in the store (run.json goes last).
        first = f"runs/{job_id}/attempt-0001"

        def uploaded_step() -> int:
            return json.loads(stack.objects.get_bytes(f"{first}/run.json"))["step"]

        wait_for(lambda: uploaded_step() >= CE, 180, what="attempt 1's first uploaded checkpoint past step 0",
                 ignore=(ObjectMissing,))
        row = stack.job_row(job_id)
        assert row.status == "running" and row.attempt == 1
        pool_pid = int(row.worker.rsplit(":", 1)[1])
        taken = next(name for name, w in workers.items() if pool_pid in child_pids(w.pid))
        other = next(name for name in workers if name != taken)
        workers[taken].signal_group(signal.SIGKILL)
        workers[taken].wait(timeout=30)
        wait_for(lambda: not pid_alive(pool_pid), 30, what="the killed pool process to exit")
        uploaded = uploaded_step()
        assert 0 < uploaded < TRAIN["steps"]

        done = stack.wait_job(job_id, lambda j: j.status not in ("queued", "running"), 300,
                              f"the job to finish on {other}")
        assert (done.status, done.attempt) == ("succeeded", 2), api.get(f"/v1/jobs/{job_id}").text
        assert done.progress["attempt_started_at_step"] == uploaded  # the newest uploaded checkpoint

        # The API serves what only the store holds: each member's samples, and every artifact.
        body = api.get(f"/v1/jobs/{job_id}").json()
        model = api.get(body["links"]["model"]).json()
        assert model["step"] == TRAIN["steps"] and len(model["members"]) == TRAIN["k"]
        for member in model["members"]:
            png = api.get(member["links"]["samples"], params={"n": 16, "seed": 0})
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(png.content)).size[0] > 8
        artifacts = api.get("/v1/artifacts", params={"job_id": job_id, "limit": 100}).json()["items"]
        assert {"checkpoint", "run-summary", "samples"} <= {a["kind"] for a in artifacts}
        for a in artifacts:
            got = api.get(f"/v1/artifacts/{a['id']}")
            assert got.status_code == 200, got.text
            assert hashlib.sha256(got.content).hexdigest() == a["sha256"] == got.headers["etag"].strip('"')
        checkpoint = next(a for a in artifacts if a["kind"] == "checkpoint")
        part = api.get(f"/v1/artifacts/{checkpoint['id']}", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        assert part.headers["content-range"] == f"bytes 0-99/{checkpoint['size_bytes']}"

    # Nothing of the job stays in a scratch folder beyond the cache: the finished attempt's folder
    # goes when it ends, and the killed worker, restarted on its host, removes the one it left.
    workers[taken] = start_worker(f"{taken}-again", env(taken), stack.settings.queue, stack.logs)
    stack.procs.append(workers[taken])
    for name in ("worker-a", "worker-b"):
        scratch = homes[name] / "artifacts" / "worker-scratch"
        wait_for(lambda s=scratch: not [p for p in (s / "attempts").rglob("*") if p.is_file()], 120,
                 what=f"{name}'s attempt folders to go")
        left = files_under(homes[name])
        assert all(path.startswith("artifacts/worker-scratch/cache/") for path in left), left
        assert sum(left.values()) <= CACHE_BYTES, left
    # The API kept no model files: it loaded the checkpoint from a copy it removed.
    assert not [p for p in files_under(homes["api"]) if p.startswith("artifacts/runs/")]
