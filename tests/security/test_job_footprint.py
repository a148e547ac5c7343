"""Jobs that cannot run are refused at submission: a train job's parameters and peak memory
are estimated from its config on the meta device and compared with what a worker has
(KGAN_WORKER_MEMORY_BYTES); a job that still runs out of memory fails once, saying so."""

from __future__ import annotations

import torch

from kgan_core.models import default_spec, training_footprint
from tests.service.conftest import TINY_TRAIN, assert_problem


def test_a_job_no_worker_can_hold_is_a_422_naming_the_estimate_and_the_limit(client, alice, settings):
    huge = {"dataset": "ring8", "k": 128, "width": 4096, "batch_size": 4096}
    r = client.post("/v1/jobs", json={"kind": "train", "params": huge}, headers=alice.headers)
    problem = assert_problem(r, 422)
    assert "KGAN_WORKER_MEMORY_BYTES" in problem["detail"]
    assert problem["parameters"] > 8_000_000_000  # 8.6 G: two 4096-wide MLPs of 128 members
    assert problem["estimated_bytes"] > problem["limit_bytes"] == settings.worker_memory_bytes
    images = {"dataset": "mnist", "k": 128, "width": 512, "batch_size": 4096}
    assert_problem(client.post("/v1/jobs", json={"kind": "train", "params": images}, headers=alice.headers), 422)
    r = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers)
    assert r.status_code == 202, r.text


def test_the_estimate_counts_what_the_built_networks_hold():
    from kgan_core.models import build_critic, build_generator, parameter_count

    spec = default_spec((1, 28, 28), "auto", None, 8)
    footprint = training_footprint(spec, 3, 16)
    assert footprint.parameters == parameter_count(build_generator(spec, 3)) + parameter_count(build_critic(spec, 3))
    # At least weights, gradients and Adam's two moments in float32, and the generator's output.
    assert footprint.peak_bytes >= 16 * footprint.parameters + 4 * 3 * 16 * 28 * 28


def test_a_job_that_runs_out_of_memory_fails_once_with_that_reason(client, alice, settings, monkeypatch):
    from worker.runner import JobRunner

    def allocate_too_much(self, claim, stop):
        return torch.empty(2**60, dtype=torch.uint8)  # a real allocation the machine refuses

    monkeypatch.setattr(JobRunner, "run_train", allocate_too_much)
    job = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers).json()
    assert JobRunner(settings).run(job["id"]) == "failed"
    body = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert body["status"] == "failed" and body["attempt"] == 1
    assert body["error"]["title"] == "Out of memory" and "KGAN_WORKER_MEMORY_BYTES" in body["error"]["detail"]
