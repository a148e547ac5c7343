"""Load, as issue 6 asks: 50 concurrent clients for 60 s polling a training job and fetching
member PNGs from the service started as `python -m api.serve` (the same scenario as
benchmarks/load.py, whose latencies are in BENCHMARKS.md): no request may fail, and the job
keeps training."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from load import run_load  # noqa: E402


@pytest.mark.slow
def test_fifty_clients_while_a_job_trains(tmp_path):
    report = run_load(tmp_path, clients=50, duration=60)
    assert report.total_errors == 0, report.examples
    assert set(report.latencies) == {"job status", "samples.png", "model"}
    assert report.requests >= 1000, report.rows()  # the clients were served, not stalled
    before, after = report.job_steps
    assert after > before, "the training job made no progress while clients hammered the API"
