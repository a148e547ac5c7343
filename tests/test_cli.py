"""The kgan command, end to end on a tiny run."""

import json

import numpy as np
import pytest
from PIL import Image

from kgan_core.cli import main
from kgan_core.config import TrainConfig


def test_train_sample_info(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", "ring8", "--k", "3", "--steps", "6", "--out", str(run),
            "--set", "n_points=300", "--set", "width=8", "--set", "log_every=3"]
    assert main(args) == 0
    assert "step       3/6" in capsys.readouterr().out
    out = str(tmp_path / "s.npy")
    assert main(["sample", str(run), "--member", "1", "--n", "20", "--seed", "2", "--out", out]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (20, 2)
    assert main(["sample", str(run), "--n", "200", "--out", str(tmp_path / "s.png")]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--member", "3", "--out", str(tmp_path / "m.png")]) == 2
    assert "this run has 3 members, numbered 0 to 2" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()
    assert Image.open(tmp_path / "s.png").size[0] > 100
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["k"] == 3 and sum(info["tile_sizes"]) == 300 and info["step"] == 6


def test_config_file_and_image_grid(tmp_path, mnist_dir):
    config = tmp_path / "run.toml"
    config.write_text(f'dataset = "{mnist_dir}"\nimage_size = 16\nlimit = 60\nk = 2\nwidth = 4\n'
                      'steps = 2\nn_critic = 1\nbatch_size = 8\n')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["sample", str(tmp_path / "run"), "--member", "0", "--n", "9", "--out", str(tmp_path / "g.png")]) == 0
    picture = Image.open(tmp_path / "g.png")
    # the 3 × 3 grid of 16 px samples under a title that says whose samples they are
    assert picture.mode == "L" and picture.height > 3 * 18 + 2 and picture.width >= 3 * 18 + 2
    assert picture.text["Title"] == "member 0 of 2: 9 samples, seed 0, step 2"


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--data", "ring9", "--out", str(tmp_path / "x")]) == 2
    assert "built-in datasets are" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["train", "--data", "ring8", "--k", "0", "--out", str(tmp_path / "x")]) == 2
    assert "k" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_a_refused_setting_is_named_as_typed_with_what_is_allowed(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["train", "--k", "0", "--set", "lrg=1", "--set", "lr_d=fast", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--k 0: input should be greater than or equal to 1" in err
    assert "--set lrg: no such training setting; did you mean lr_g?" in err
    assert "--set lr_d=fast: input should be a valid number" in err
    assert "pydantic" not in err and "TrainConfig\n" not in err  # no library dump
    assert main(["train", "--set", "qqq=1", "--device", "gpu", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--set qqq: no such training setting\n" in err and "n_critic" in err  # no near name: all of them
    assert "--device gpu: must be one of auto, cpu, cuda, cuda:N, mps" in err
    assert not (tmp_path / "x").exists()


def test_sample_refuses_an_unknown_output_type_before_loading_anything(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "no-run"), "--out", str(tmp_path / "s.jpg")]) == 2
    assert "--out must end in .npy (the samples as an array) or .png" in capsys.readouterr().err


def test_the_help_says_what_each_train_flag_does_and_how_to_start(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "The ``kgan`` command" not in top and "kgan train --data ring8 --k 8 --steps 1200" in top
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--k K", "--steps STEPS", "--seed SEED", "--device DEVICE", "--quiet", "--image-size PX"):
        line = text.split(flag, 2)[2] if text.count(flag) > 1 else text.split(flag, 1)[1]
        assert not line.lstrip().startswith("--"), f"{flag} has no help text"
    assert f"(default {TrainConfig.model_fields['k'].default})" in text
    assert f"(default {TrainConfig.model_fields['steps'].default})" in text
