"""kgan visualise and kgan train-prior through the real kgan command, with this package's
register() plugged into the kgan.commands entry-point group."""

import json

import pytest
from _runs import TINY_PRIOR, one_thread, tiny_prior_path, tiny_run_dir
from PIL import Image

from kgan_core import cli
from kgan_core.visualise.cli import register


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


class _EntryPoint:
    def load(self):
        return register


@pytest.fixture(autouse=True)
def plugged_in(monkeypatch):
    monkeypatch.setattr(cli, "entry_points", lambda group: [_EntryPoint()] if group == "kgan.commands" else [])


def test_visualise_writes_a_png_and_its_numbers(tmp_path, capsys):
    out = tmp_path / "vis" / "medoid.png"
    assert cli.main(["visualise", str(tiny_run_dir()), "--what", "medoid", "--member", "2", "--seed", "4",
                     "--n", "16", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["what"] == "medoid" and saved["member"] == 2 and saved["seed"] == 4
    assert set(saved["numbers"]["members"]) == {"2"}
    image = Image.open(out)
    assert image.text["Title"] == saved["title"]


def test_activation_max_with_a_prior_and_options_from_the_command_line(tmp_path):
    out = tmp_path / "am.png"
    assert cli.main(["visualise", str(tiny_run_dir()), "--what", "activation-max", "--member", "0",
                     "--layer", "conv1", "--unit", "1", "--steps", "3", "--method", "pixel", "--method", "prior",
                     "--prior", str(tiny_prior_path()), "--set", "position=[2, 3]", "--out", str(out)]) == 0
    numbers = json.loads(out.with_suffix(".json").read_text())["numbers"]
    assert numbers["methods"] == ["pixel", "prior"]
    assert numbers["objective"] == {"layer": "conv1", "kind": "unit", "channel": 1, "position": [2, 3],
                                    "name": "conv1 unit 1 at (2, 3)"}


@pytest.mark.parametrize(("extra", "message"), [
    (["--what", "samples", "--member", "7"], "this run has k=3 members, numbered 0 to 2"),
    (["--what", "activation-max", "--layer", "conv3"], "its layers are conv1, conv2, score"),
    (["--what", "samples", "--steps", "4"], "samples does not take steps"),
    (["--what", "traversal"], "pass a member"),
])
def test_bad_requests_exit_2_with_a_message_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "x.png"
    assert cli.main(["visualise", str(tiny_run_dir()), *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_prior_command(tmp_path, capsys):
    out = tmp_path / "prior.safetensors"
    args = ["train-prior", "--data", TINY_PRIOR["dataset"], "--image-size", "16", "--limit", "120", "--steps", "4",
            "--code-dim", "8", "--width", "4", "--set", "holdout=20", "--set", "log_every=2", "--out", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "step      2/4" in printed and "held-out SSIM" in printed
    assert out.is_file()
    assert cli.main(["train-prior", "--encoder", "critic", "--out", str(tmp_path / "c.safetensors")]) == 2
    assert "needs the run" in capsys.readouterr().err
