"""The kgan command, end to end on a tiny run."""

import json

import numpy as np
from PIL import Image

from kgan_core.cli import main


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
    grid = Image.open(tmp_path / "g.png")
    assert grid.mode == "L" and grid.size == (3 * 18 + 2, 3 * 18 + 2)


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", "--data", "ring9", "--out", str(tmp_path / "x")]) == 2
    assert "built-in datasets are" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["train", "--data", "ring8", "--k", "0", "--out", str(tmp_path / "x")]) == 2
    assert "k" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
