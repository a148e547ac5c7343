"""Member health: collapsed, untrained and striped members are flagged; real images are not."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import torch

from kgan_core.cli import main as kgan
from kgan_core.data import load_dataset
from kgan_core.health import member_checks, wasserstein_check
from kgan_core.judge import train_judge
from kgan_core.models import build_critic, build_generator, default_spec
from kgan_core.train import TrainConfig, train

HEALTHY_W = [2.0 * math.exp(-i / 10) + 0.3 for i in range(40)]


@pytest.fixture(scope="module")
def digits():
    mnist = load_dataset("mnist")
    return mnist, mnist.to_model(mnist.x[mnist.labels == 3])


@pytest.fixture(scope="module")
def small_judge(digits):
    # Health needs the judge's features, not its accuracy: a quick one keeps this module fast.
    mnist, _ = digits
    with torch.random.fork_rng(devices=[]):
        return train_judge(replace(mnist, x=mnist.x[:1000], labels=mnist.labels[:1000]), updates=150)


def untrained_critic_scores(samples: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)
        critic = build_critic(default_spec(tuple(real.shape[1:]), "thesis"), 1)
        return critic(samples[None])[0], critic(real[None])[0]


def checks_for(samples, real, judge, critic_scores=None, wasserstein=HEALTHY_W):
    fake_scores, real_scores = critic_scores or untrained_critic_scores(samples, real)
    return member_checks(samples, real, fake_scores=fake_scores, real_scores=real_scores, wasserstein=wasserstein,
                         judge=judge, kind="images")


def flags(checks) -> set[str]:
    return {name for name, check in checks.items() if check["flagged"]}


@pytest.mark.parametrize("use_judge", [True, False], ids=["judge-features", "pixels"])
def test_real_images_as_samples_are_healthy(digits, small_judge, use_judge):
    _, threes = digits
    checks = checks_for(threes[:256], threes[256:512], small_judge if use_judge else None)
    assert set(checks) == {"collapse", "critic_inversion", "wasserstein", "hf_artefacts", "saturation"}
    assert flags(checks) == set(), checks
    assert 0.8 < checks["collapse"]["value"] < 1.25


@pytest.mark.parametrize("use_judge", [True, False], ids=["judge-features", "pixels"])
def test_a_generator_that_ignores_z_is_flagged_collapsed(digits, small_judge, use_judge):
    _, threes = digits
    g = torch.Generator().manual_seed(0)
    one_digit = threes[600:601].expand(256, -1, -1, -1) + 0.01 * torch.randn(256, 1, 28, 28, generator=g)
    checks = checks_for(one_digit.clamp(-1, 1), threes[:256], small_judge if use_judge else None)
    assert "collapse" in flags(checks)
    assert checks["collapse"]["value"] < 0.1


def test_an_untrained_member_is_flagged(digits, small_judge):
    _, threes = digits
    spec = default_spec((1, 28, 28), "thesis")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        samples = build_generator(spec, 1).eval()(torch.randn(1, 256, spec.latent_dim))[0]
    for judge in (small_judge, None):
        checks = checks_for(samples, threes[:256], judge, wasserstein=[])
        assert "collapse" in flags(checks), checks
        assert checks["wasserstein"]["value"] is None and not checks["wasserstein"]["flagged"]


def test_diverse_stripes_its_critic_prefers_are_flagged(digits, small_judge):
    """The issue's member 9: diagonal stripes, varied enough to pass for diverse, and rated
    by its own critic above real digits."""
    _, threes = digits
    g = torch.Generator().manual_seed(0)
    phase = torch.rand(256, 1, 1, 1, generator=g) * 6.3
    period = 2 + 2 * torch.rand(256, 1, 1, 1, generator=g)
    i = torch.arange(28.0)
    stripes = torch.sin((i[:, None] + i[None, :]) * (6.283 / period) + phase)
    real = threes[:256]

    def rough_critic(images):  # a critic that has learnt to reward pixel-to-pixel change
        return images.flatten(1).diff(dim=1).abs().mean(1)

    checks = checks_for(stripes, real, small_judge, critic_scores=(rough_critic(stripes), rough_critic(real)))
    assert {"hf_artefacts", "critic_inversion"} <= flags(checks), checks
    assert checks["hf_artefacts"]["value"] > 2.0


def test_saturated_output_is_flagged(digits):
    _, threes = digits
    all_black = torch.full((256, 1, 28, 28), -1.0)
    checks = checks_for(all_black, threes[:256], None)
    assert {"saturation", "collapse"} <= flags(checks)


def test_wasserstein_estimates():
    assert not wasserstein_check(HEALTHY_W)["flagged"]
    negative = wasserstein_check([1.0] * 10 + [-0.5] * 30)
    assert negative["flagged"] and negative["value"] < 0 and "negative" in negative["detail"]
    diverging = wasserstein_check([0.5] * 20 + [0.5 + 0.2 * i for i in range(20)])
    assert diverging["flagged"] and "diverging" in diverging["detail"]
    # A member that matches its tile: an estimate around 0, noisy, slightly negative on average.
    rng = torch.Generator().manual_seed(0)
    near_zero = [1.0] * 10 + (0.15 * torch.randn(30, generator=rng) - 0.02).tolist()
    assert not wasserstein_check(near_zero)["flagged"]
    short = wasserstein_check([1.0, -1.0])
    assert short["value"] is None and not short["flagged"]


def test_training_stores_health_and_kgan_health_recomputes_it(tmp_path, capsys):
    run_dir = tmp_path / "ring8"
    train(TrainConfig(dataset="ring8", k=2, steps=40, log_every=4, n_points=400), run_dir)
    health = json.loads((run_dir / "run.json").read_text())["metrics"]["health"]
    assert health["feature_space"] == "data" and set(health["skipped"]) == {"hf_artefacts", "saturation"}
    assert [m["member"] for m in health["members"]] == [0, 1]
    for member in health["members"]:
        assert {"collapse", "critic_inversion", "wasserstein"} == set(member["checks"])
        assert member["flags"] == [name for name, c in member["checks"].items() if c["flagged"]]
    assert health["flagged_members"] == [m["member"] for m in health["members"] if m["flags"]]

    (run_dir / "run.json").write_text(json.dumps({"metrics": {}}))  # the stored health is gone ...
    assert kgan(["health", str(run_dir)]) == 0
    assert "member   0:" in capsys.readouterr().out
    again = json.loads((run_dir / "run.json").read_text())["metrics"]["health"]
    assert again == health  # ... and comes back the same: same seed, same samples

    assert kgan(["info", str(run_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["health"]["flags"] == {str(m["member"]): m["flags"] for m in health["members"]}


def test_an_image_run_without_a_cached_judge_measures_collapse_in_pixels(tmp_path, monkeypatch):
    monkeypatch.setenv("KGAN_CACHE_DIR", str(tmp_path / "cache"))
    train(TrainConfig(dataset="mnist", limit=64, k=2, steps=3, batch_size=8, n_critic=1), tmp_path / "run")
    health = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["health"]
    assert health["feature_space"] == "pixels" and health["judge"] is None and "kgan health" in health["note"]
    assert set(health["members"][0]["checks"]) == {"collapse", "critic_inversion", "wasserstein", "hf_artefacts",
                                                   "saturation"}
    assert not (tmp_path / "cache").exists()  # no judge was trained during training


def test_the_api_returns_each_members_health():
    from api.routes.models import model_out
    from kgan_service.models import Model

    check = {"value": 0.1, "threshold": 0.5, "flagged": True, "detail": "sample diversity / tile diversity"}
    health = {"feature_space": "pixels", "members": [{"member": 0, "flags": ["collapse"],
                                                      "checks": {"collapse": check}},
                                                     {"member": 1, "flags": [], "checks": {}}]}
    row = Model(id="m", job_id="j", attempt=1, run_path="r", k=3, step=1, dataset_kind="images",
                item_shape=[1, 28, 28], config={}, spec={}, tile_sizes=[1, 1, 1], tile_shares=[0.3, 0.3, 0.4],
                metrics={"health": health}, created_at=datetime.now(UTC))
    members = model_out(row).model_dump()["members"]
    assert members[0]["health"]["flags"] == ["collapse"] and members[0]["health"]["checks"]["collapse"] == check
    assert members[0]["health"]["feature_space"] == "pixels"
    assert members[1]["health"]["flags"] == []
    assert members[2]["health"] is None  # a member without stored health (an older model)
