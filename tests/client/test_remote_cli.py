"""`kgan remote train|status|fetch|delete` against the embedded service, through kgan's own entry point."""

from __future__ import annotations

import json

import pytest

from kgan_core.cli import main
from tests._service import RING8_TINY

pytestmark = pytest.mark.slow


def test_train_status_and_fetch_over_http(service, capsys, tmp_path):
    remote = ["remote"]
    auth = ["--url", service.url, "--key", service.key]
    sets = [f"--set={name}={value}" for name, value in RING8_TINY.items() if name not in ("k", "steps")]
    assert main([*remote, "train", *auth, "--data", "ring8", "--k", "2", "--steps", "20", *sets]) == 0
    out, err = capsys.readouterr()
    job_id, model_line = out.split()[0], out.strip().splitlines()[-1]
    assert "20/20 100% succeeded" in err and model_line.startswith("model ")
    model_id = model_line.split()[1]

    assert main([*remote, "status", job_id, *auth, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "succeeded" and status["model_id"] == model_id
    assert main([*remote, "status", *auth]) == 0
    assert any(line.startswith(job_id) and "succeeded" in line for line in capsys.readouterr().out.splitlines())

    # A job id works as well as its model's id.
    assert main([*remote, "fetch", job_id, *auth, "--out", str(tmp_path), "--n", "50"]) == 0
    fetched = {line.rsplit("/", 1)[-1] for line in capsys.readouterr().out.split()}
    assert {"member-0-samples.png", "member-1-samples.png", f"{job_id[:8]}-checkpoint.safetensors"} <= fetched
    assert all((tmp_path / name).stat().st_size > 0 for name in fetched)

    assert main([*remote, "delete", "model", model_id, *auth]) == 0
    assert capsys.readouterr().out.strip() == f"deleted model {model_id}"
    assert main([*remote, "delete", "model", model_id, *auth]) == 2
    assert "404 Model not found" in capsys.readouterr().err


def test_remote_errors_are_one_line_a_person_can_act_on(service, capsys):
    assert main(["remote", "status", "--url", service.url, "--key", "kgan_wrong"]) == 2
    assert "401 Missing or invalid API key" in capsys.readouterr().err
    assert main(["remote", "train", "--url", service.url, "--key", service.key, "--data", "ring8", "--k", "0",
                 "--no-wait"]) == 2
    assert "body.params.k" in capsys.readouterr().err
    assert main(["remote", "status", "--url", "http://127.0.0.1:9", "--key", service.key]) == 2
    assert "is the service running at http://127.0.0.1:9?" in capsys.readouterr().err
