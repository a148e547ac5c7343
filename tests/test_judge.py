"""The independent judge: it recognises real digits, and every metric stands beside controls
that real images beat (noise, blanks) or that show the metric cannot tell (the tile mean)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kgan_core.data import Dataset, load_dataset
from kgan_core.judge import (
    BAD_CONTROLS,
    JudgeError,
    class_histogram,
    frechet_distance,
    is_informative,
    judge_for,
    precision_recall,
    scores_with_controls,
    train_judge,
)
from kgan_core.judge import judge as judge_module
from kgan_core.models import build_generator, default_spec

JUDGE_DIGITS = 2500  # the judge trains on the first 2,500 digits (80 %) ...
UNSEEN = slice(5000, 10000)  # ... and is tested on digits it never saw


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return load_dataset("mnist")


@pytest.fixture(scope="session")
def judge_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("judges"))


@pytest.fixture(scope="session")
def judge(mnist, judge_cache):
    small = replace(mnist, x=mnist.x[:JUDGE_DIGITS], labels=mnist.labels[:JUDGE_DIGITS])
    with torch.random.fork_rng(devices=[]):
        return judge_for(small, cache_dir=judge_cache)


def unseen_digit(mnist: Dataset, digit: int) -> torch.Tensor:
    x, labels = mnist.x[UNSEEN], mnist.labels[UNSEEN]
    return x[labels == digit]


def test_judge_recognises_digits_it_never_saw(judge, mnist):
    assert judge.labelled and judge.class_names == tuple(str(d) for d in range(10))
    assert judge.held_out_accuracy >= 0.93
    probs = judge.predict_proba(mnist.to_model(mnist.x[UNSEEN]))
    assert probs.shape == (5000, 10)
    assert float((probs.argmax(1) == mnist.labels[UNSEEN]).float().mean()) >= 0.93
    assert class_histogram(probs)["confidence_median"] >= 0.9


def test_judge_takes_any_size_and_channels(judge, mnist):
    digits = mnist.to_model(mnist.x[UNSEEN][:16])
    at_32 = torch.nn.functional.interpolate(digits, size=32, mode="bilinear")
    as_rgb = digits.expand(-1, 3, -1, -1)
    for images in (digits, at_32, as_rgb):
        assert judge.features(images).shape == (16, 64)
        assert (judge.predict_proba(images).argmax(1) == mnist.labels[UNSEEN][:16]).float().mean() >= 0.8


def test_real_digits_beat_noise_and_blanks_on_every_metric(judge, mnist):
    threes = unseen_digit(mnist, 3)
    real_as_samples = mnist.to_model(threes[:200])
    scores = scores_with_controls(real_as_samples, threes[200:], judge)
    assert scores.reference_majority == 3
    for metric in scores.metrics.values():
        for control in ("noise", "blank_black", "blank_white"):
            assert metric.values["real"] != metric.values[control]
            real_wins = (metric.values["real"] < metric.values[control] if metric.better == "lower"
                         else metric.values["real"] > metric.values[control])
            assert real_wins, (metric.name, control, metric.values)
        assert metric.beats_bad_controls or not metric.informative, metric
    # The tile's mean image is a blur no one would call a digit, and FD and recall say so ...
    for name in ("fd", "recall", "precision_core"):
        assert scores.metrics[name].informative, scores.table()
        assert scores.metrics[name].beats_bad_controls
    # ... but the classifier calls it a 3 as surely as a real 3: the share classified as the
    # tile's digit is reported as uninformative, never as met.
    assert scores.metrics["majority_share"].values["tile_mean"] >= 0.9
    assert not scores.metrics["majority_share"].informative
    assert "majority_share (uninformative)" in scores.table()


def test_untrained_generator_scores_far_worse_than_real(judge, mnist):
    threes = unseen_digit(mnist, 3)
    spec = default_spec((1, 28, 28), "thesis")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = build_generator(spec, 1).eval()
        with torch.no_grad():
            samples = untrained(torch.randn(1, 300, spec.latent_dim))[0]
    scores = scores_with_controls(samples, threes, judge)
    fd, recall, share = (scores.metrics[m].values for m in ("fd", "recall", "majority_share"))
    assert fd["samples"] > 10 * fd["real"]
    assert recall["samples"] < 0.1 < recall["real"]
    assert share["samples"] < share["real"] - 0.5


def test_second_use_loads_the_cached_judge(judge, mnist, judge_cache, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("the judge was trained again instead of loaded from the cache")

    monkeypatch.setattr(judge_module, "train_judge", must_not_train)
    small = replace(mnist, x=mnist.x[:JUDGE_DIGITS], labels=mnist.labels[:JUDGE_DIGITS])
    again = judge_for(small, cache_dir=judge_cache)
    assert again.fingerprint == judge.fingerprint and again.held_out_accuracy == judge.held_out_accuracy
    digits = mnist.to_model(mnist.x[UNSEEN][:32])
    assert torch.equal(again.features(digits), judge.features(digits))
    # Other pixels are other data: nothing cached for them, and train=False says so.
    other = replace(small, x=255 - small.x)
    assert judge_for(other, cache_dir=judge_cache, train=False) is None


def test_unlabelled_data_gets_an_autoencoder(mnist):
    unlabelled = Dataset("digits-unlabelled", mnist.x[:256], None, "images")
    judge = train_judge(unlabelled, updates=20)
    assert not judge.labelled and judge.held_out_error is not None and judge.held_out_accuracy is None
    assert judge.features(mnist.to_model(mnist.x[:5])).shape == (5, 64)
    with pytest.raises(JudgeError, match="autoencoder"):
        judge.predict_proba(mnist.to_model(mnist.x[:5]))


def test_point_data_has_no_judge(tmp_path):
    with pytest.raises(JudgeError, match="point data"):
        judge_for(load_dataset("ring8", n_points=100), cache_dir=tmp_path)


def test_frechet_distance_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    shift = torch.tensor([3.0, 0.0, 4.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means 5 apart: FD = 25 (up to sampling noise).
    assert frechet_distance(a, torch.randn(4000, 3, generator=g) + shift) == pytest.approx(25.0, rel=0.02)
    # Scaled by 2: FD = sum (1 - 2)^2 over 3 dimensions = 3.
    assert frechet_distance(a, 2 * torch.randn(4000, 3, generator=g)) == pytest.approx(3.0, rel=0.1)
    # A constant set (a collapsed member) has a finite distance: the data's own spread.
    assert frechet_distance(torch.zeros(100, 3), a) == pytest.approx(3.0, rel=0.1)


def test_precision_recall_see_collapse_and_disjoint_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 2, generator=g)
    same = precision_recall(real, torch.randn(500, 2, generator=g))
    assert same["precision"] > 0.95 and same["recall"] > 0.95 and 0.3 < same["precision_core"] < 0.7
    collapsed = torch.zeros(500, 2) + 0.01 * torch.randn(500, 2, generator=g)
    pr = precision_recall(real, collapsed)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.05
    assert precision_recall(real, real + 100.0) == {"precision": 0.0, "precision_core": 0.0, "recall": 0.0}
    # A blob far out, next to one outlier of the real set: the outlier's wide ball takes it in,
    # the core of the manifold does not.
    with_outlier = torch.cat([real, torch.tensor([[6.0, 6.0], [9.0, 9.0], [12.0, 12.0], [15.0, 15.0]])])
    blob = torch.tensor([[8.0, 8.0]]) + 0.01 * torch.randn(200, 2, generator=g)
    pr = precision_recall(with_outlier, blob)
    assert pr["precision"] == 1.0 and pr["precision_core"] == 0.0


def test_a_metric_is_informative_only_when_real_beats_every_bad_control():
    good = {"real": 10.0, **{c: 100.0 for c in BAD_CONTROLS}}
    assert is_informative("fd", good)
    assert not is_informative("fd", {**good, "tile_mean": 15.0})
    assert is_informative("recall", {"real": 0.8, **{c: 0.0 for c in BAD_CONTROLS}})
    assert not is_informative("recall", {"real": 0.8, **{c: 0.0 for c in BAD_CONTROLS}, "noise": 0.7})
