"""k-GAN training: it learns, it is deterministic, it resumes exactly, batched == sequential."""

import json

import pytest
import torch

from kgan_core import train as train_module
from kgan_core.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from kgan_core.data import load_dataset
from kgan_core.run import MemberIndexError, load_run
from kgan_core.train import KGANTrainer, TrainConfig, TrainingError, train

TINY = dict(dataset="ring8", n_points=400, k=4, width=16, batch_size=32, n_critic=2, steps=12,
            rounds=2, log_every=4, checkpoint_every=5)


def tiny(**overrides) -> TrainConfig:
    return TrainConfig(**(TINY | overrides))


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir).generator | {f"D.{k}": v for k, v in load_checkpoint(run_dir).critic.items()}


def test_short_ring8_run_learns_each_modes_spread(tmp_path):
    # Members start collapsed at their tile's mean (see MLPGenerator); training must spread each
    # one out toward its mode's σ while keeping every sample on the ring.
    config = TrainConfig(dataset="ring8", n_points=2000, k=8, width=32, steps=300, rounds=1, lr_g=1e-3,
                         lr_d=1e-3, lr_decay="none", n_critic=2, seed=3, log_every=100)
    data = load_dataset("ring8", n_points=2000, seed=3)
    before = KGANTrainer(config, data)
    z = torch.randn(8, 250, before.spec.latent_dim, generator=torch.Generator().manual_seed(0))
    spread_start = before.members.generate(z).std(1).mean()
    train(config, tmp_path / "run", dataset=data)
    run = load_run(tmp_path / "run")
    spread_end = run.sample_members(250, seed=0).std(1).mean()
    assert abs(torch.log(spread_end / data.sigma)) < 0.5 * abs(torch.log(spread_start / data.sigma))
    assert run.metrics["modes_captured"] == 8
    assert run.metrics["high_quality_share"] > 0.5
    assert run.metrics["tile_label_nmi"] > 0.9


def test_progress_callback_reports_and_can_stop(tmp_path):
    seen = []

    def callback(progress):
        seen.append(progress)
        return progress.step < 8  # ask to stop at step 8

    result = train(tiny(), tmp_path / "run", callback=callback)
    assert result.stopped and result.step == 8
    # Every log_every=4 steps, and in between only to tell of a tiling event.
    assert [p.step for p in seen if p.step % 4 == 0] == [4, 8]
    assert all(p.events for p in seen if p.step % 4)
    p = seen[-1]
    assert p.total == 12 and len(p.d_loss) == len(p.wasserstein) == len(p.tile_sizes) == 4
    assert sum(p.tile_sizes) == 400
    assert load_checkpoint(tmp_path / "run").step == 8  # a stop always leaves a checkpoint


def test_should_stop_takes_effect_at_the_next_step_between_reports(tmp_path):
    # log_every=4: a stop asked for after step 6 must not wait for the report at step 8.
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) >= 6

    result = train(tiny(), tmp_path / "run", should_stop=should_stop)
    assert result.stopped and result.step == 6
    assert load_checkpoint(tmp_path / "run").step == 6
    train(tiny(), tmp_path / "run")  # and it resumes from there
    assert load_checkpoint(tmp_path / "run").step == 12


def test_same_seed_same_run(tmp_path):
    train(tiny(), tmp_path / "a")
    train(tiny(), tmp_path / "b")
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    train(tiny(), tmp_path / "straight")
    train(tiny(), tmp_path / "resumed", callback=lambda p: p.step < 8)
    assert load_checkpoint(tmp_path / "resumed").step == 8
    train(tiny(), tmp_path / "resumed")  # same folder: continues from step 8
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert b.step == 12
    for name in a.generator:
        assert torch.equal(a.generator[name], b.generator[name]), name
    for name in a.critic:
        assert torch.equal(a.critic[name], b.critic[name]), name
    assert torch.equal(a.assignment, b.assignment) and torch.equal(a.masses, b.masses)
    assert torch.equal(a.rng_state, b.rng_state)
    for index, state in a.opt_d["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b.opt_d["state"][index][key]))


@pytest.mark.parametrize("arch, dataset_kwargs", [
    ("mlp", {}),
    ("thesis", {"dataset": "mnist", "image_size": 16, "limit": 64, "width": 4}),
    ("resize", {"dataset": "mnist", "image_size": 16, "limit": 64, "width": 4}),
])
def test_batched_step_matches_the_sequential_reference(tmp_path, arch, dataset_kwargs):
    kwargs = {"arch": arch, "steps": 6, "rounds": 1, "k": 3} | dataset_kwargs
    train(tiny(**kwargs), tmp_path / "batched")
    train(tiny(execution="sequential", **kwargs), tmp_path / "sequential")
    a, b = load_checkpoint(tmp_path / "batched"), load_checkpoint(tmp_path / "sequential")
    for name in a.generator:
        assert torch.allclose(a.generator[name], b.generator[name], atol=1e-4, rtol=1e-3), name
    for name in a.critic:
        assert torch.allclose(a.critic[name], b.critic[name], atol=1e-4, rtol=1e-3), name
    assert torch.equal(a.assignment, b.assignment)


@pytest.mark.parametrize("winner", ["batched", "sequential"])
def test_auto_trains_on_the_faster_path_and_the_same_model(tmp_path, monkeypatch, winner):
    # The race is real (both paths timed on this machine); only which one wins is fixed here,
    # so that both switches are exercised whatever this machine's speeds.
    race = train_module.race_executions

    def race_won_by(trainer):
        timings = race(trainer)
        assert set(timings) == {"batched", "sequential"} and all(t > 0 for t in timings.values())
        return timings | {winner: min(timings.values()) / 2}

    monkeypatch.setattr(train_module, "RACE_MIN_STEPS", 1)
    monkeypatch.setattr(train_module, "race_executions", race_won_by)
    kwargs = {"steps": 6, "rounds": 1, "k": 3}
    train(tiny(execution="batched", **kwargs), tmp_path / "batched")
    train(tiny(execution="auto", **kwargs), tmp_path / "auto", callback=lambda p: p.step < 4)  # stops at 4
    train(tiny(execution="auto", **kwargs), tmp_path / "auto")  # a resume races again
    a, b = load_checkpoint(tmp_path / "batched"), load_checkpoint(tmp_path / "auto")
    for name in a.generator:
        assert torch.allclose(a.generator[name], b.generator[name], atol=1e-4, rtol=1e-3), name
    for name in a.critic:
        assert torch.allclose(a.critic[name], b.critic[name], atol=1e-4, rtol=1e-3), name
    summary = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert summary["execution"]["execution"] == winner
    assert set(summary["execution"]["seconds_per_step"]) == {"batched", "sequential"}
    races = [e for e in summary["events"] if "ms/step" in e]
    assert len(races) == 2 and all(f"training {winner}" in e for e in races)  # the start and the resume


def test_auto_skips_the_race_where_it_cannot_pay(tmp_path):
    train(tiny(execution="auto"), tmp_path / "short")  # 12 steps
    train(tiny(execution="auto", k=1, steps=200), tmp_path / "single")
    for run, reason in (("short", "steps to go"), ("single", "k=1")):
        summary = json.loads((tmp_path / run / "run.json").read_text())
        assert summary["execution"]["execution"] == "batched" and reason in summary["execution"]["reason"]
        assert not any("ms/step" in e for e in summary["events"])


@pytest.mark.parametrize("assignment", ["balanced", "none"])
def test_other_assignments(tmp_path, assignment):
    train(tiny(assignment=assignment), tmp_path / "run")
    run = load_run(tmp_path / "run")
    if assignment == "balanced":
        assert max(run.tile_sizes) - min(run.tile_sizes) <= 1
    else:
        assert run.tile_sizes == [400] * 4 and run.tile_shares == [0.25] * 4


def test_weight_clipping_keeps_critic_weights_in_range(tmp_path):
    train(tiny(loss="wgan-clip", clip_value=0.05), tmp_path / "run")
    critic = load_checkpoint(tmp_path / "run").critic
    assert max(float(v.abs().max()) for k, v in critic.items() if k.startswith("layers")) <= 0.05 + 1e-7


def test_run_samples_per_member_and_for_the_ensemble(tmp_path):
    train(tiny(), tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.sample(10, member=2, seed=1).shape == (10, 2)
    assert torch.equal(run.sample(10, member=2, seed=1), run.sample(10, member=2, seed=1))
    assert torch.allclose(run.sample(10, member=2, seed=1), run.sample_members(10, seed=1)[2], atol=1e-6)
    assert run.sample(33, seed=0).shape == (33, 2)
    with pytest.raises(MemberIndexError, match="numbered 0 to 3"):
        run.sample(1, member=4)
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["step"] == 12 and summary["config"]["k"] == 4


def test_k_larger_than_the_data_fails_before_writing(tmp_path):
    with pytest.raises(TrainingError, match="k=20"):
        train(tiny(n_points=10, k=20), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_k_below_one_is_rejected():
    with pytest.raises(ValueError, match="k"):
        tiny(k=0)


def test_checkpoint_from_another_architecture_is_refused(tmp_path):
    train(tiny(), tmp_path / "run")
    before = (tmp_path / "run" / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(CheckpointError, match="width"):
        train(tiny(width=8), tmp_path / "run")
    assert (tmp_path / "run" / CHECKPOINT_FILE).read_bytes() == before


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable kgan checkpoint"):
        load_run(tmp_path / "run")


def test_unset_optimiser_fields_take_defaults_by_data_shape():
    from kgan_core.config import IMAGE_DEFAULTS, POINT_DEFAULTS, with_data_defaults

    points = with_data_defaults(TrainConfig(), (2,))
    assert {name: getattr(points, name) for name in POINT_DEFAULTS} == POINT_DEFAULTS
    images = with_data_defaults(TrainConfig(dataset="mnist", n_critic=3), (1, 28, 28))
    assert images.n_critic == 3  # what the user set wins
    assert {name: getattr(images, name) for name in IMAGE_DEFAULTS if name != "n_critic"} == {
        name: value for name, value in IMAGE_DEFAULTS.items() if name != "n_critic"}


def test_a_run_started_with_data_defaults_resumes_with_them(tmp_path):
    from kgan_core.config import IMAGE_DEFAULTS

    # A run saved with other values for the data-chosen fields (an older default) must resume
    # with those, not fail on the difference nor switch values midway.
    saved_with = {name: value * 2 if isinstance(value, float) else value + 1
                  for name, value in IMAGE_DEFAULTS.items() if name != "beta1"}
    base = dict(dataset="mnist", image_size=16, limit=64, width=4, k=2, steps=4, rounds=0, log_every=1)
    train(TrainConfig(**base, **saved_with), tmp_path / "run", callback=lambda p: p.step < 2)
    train(TrainConfig(**base), tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["step"] == 4
    assert {name: run["config"][name] for name in saved_with} == saved_with
