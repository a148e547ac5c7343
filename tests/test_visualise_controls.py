"""Visualisations that prove what they show: controls, selectivity, raw images beside the
picture, honest tiles and matrices, latent effects, composed objectives, channel atlases."""

import io
import json

import numpy as np
import pytest
import torch
from _runs import one_thread, tiny_run_dir
from PIL import Image
from torch import nn

from kgan_core.render import to_uint8
from kgan_core.run import load_run
from kgan_core.visualise import OptionError, objectives, visualise
from kgan_core.visualise.activation import (
    CONTROLS,
    reinitialised_critic,
    row_leads,
    selectivity_verdict,
    trivial_control_warnings,
)
from kgan_core.visualise.cli import cmd_visualise


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


@pytest.fixture
def run():
    return load_run(tiny_run_dir())  # a fresh load per test: some tests swap the networks


def labels(vis) -> dict:
    return json.loads(Image.open(io.BytesIO(vis.png())).text["kgan-labels"])


# --- activation maximisation: controls and selectivity -------------------------------------------


def test_activation_max_sets_every_search_beside_its_controls_and_a_reinitialised_critic(run):
    vis = visualise(run, "activation-max", 1, layer="conv1", channel=0, methods=["pixel"], steps=10, judge=False)
    entry = vis.numbers["members"]["1"]
    for critic in ("trained", "reinit"):
        block = entry[critic]
        assert set(block["controls_z"]) == set(CONTROLS)
        best = max(block["controls_z"].values())
        assert block["pixel"]["margin_over_best_control"] == pytest.approx(block["pixel"]["z"] - best, abs=1e-3)
        assert block["pixel"]["beats_controls"] == (block["pixel"]["margin_over_best_control"] >= 1.0)
    # the best real image is the tile's maximum, so its z matches the tile max in z units
    trained = entry["trained"]
    expected = (trained["tile_max"] - trained["tile_mean_value"]) / trained["tile_spread"]
    assert trained["controls_z"]["best_real"] == pytest.approx(expected, rel=1e-3)
    assert labels(vis)["cols"] == ["best real", "tile mean", "mean, bin.", "black", "white", "noise", "pixel",
                                   "pixel re-init"]
    assert vis.numbers["headline"]["pixel"]["members"] == 1
    # a warning for exactly the blank or noise controls rated above the best real image
    z = trained["controls_z"]
    above = [c for c in ("blank_black", "blank_white", "noise") if z[c] > z["best_real"]]
    assert len(vis.numbers["warnings"]) == len(above)
    assert ("WARNING" in vis.title) == bool(above)


def test_a_blank_image_rated_above_real_data_is_a_warning_not_a_failed_search():
    z = {"best_real": 2.75, "tile_mean": -2.7, "tile_mean_binarised": 0.8, "blank_black": 5.36, "blank_white": -17.7,
         "noise": -17.7}
    (warning,) = trivial_control_warnings(0, "mean(conv1)", z)
    assert warning.startswith("member 0: mean(conv1) rates the black image above its best real tile image")
    assert "+5.4 against +2.8" in warning
    assert trivial_control_warnings(0, "mean(conv1)", z | {"blank_black": 1.0}) == []


def test_an_untrained_critics_activation_max_does_not_pass_the_selectivity_bar(run):
    run.critic = reinitialised_critic(run.critic, seed=12345)  # untrained, and not the control's weights
    vis = visualise(run, "activation-max", None, layer="conv2", methods=["pixel"], steps=20, judge=False)
    sel = vis.numbers["selectivity"]["pixel"]
    # Every search climbs its own critic, so an untrained critic's row is led by its diagonal too:
    # which is why the bar is relative to the re-initialised control, not "diagonal is largest".
    assert len(sel["trained"]["matrix_z"]) == run.k
    assert sel["passes"] is False
    assert vis.numbers["headline"]["pixel"]["passes_selectivity"] is False


def test_the_selectivity_bar_is_relative_to_the_reinitialised_critics():
    assert row_leads(torch.tensor([[3.0, 1.0], [0.0, 2.0]])).tolist() == [2.0, 2.0]
    assert selectivity_verdict([5.0, 6.0, 7.0], [1.0, 1.0, 2.0])["passes"] is True
    assert selectivity_verdict([5.0, 6.0, 7.0], [4.0, 4.0, 4.0])["passes"] is False  # no better than chance
    assert selectivity_verdict([-1.0, 6.0, 7.0], [0.0, 0.0, 0.0])["selective_rows"] == 2


# --- raw images beside the picture ---------------------------------------------------------------


@pytest.mark.parametrize("what, member, options", [
    ("samples", None, {"n": 3}), ("real-tile", 1, {"n": 4}), ("traversal", 0, {"steps": 3}),
    ("activation-max", None, {"steps": 2, "methods": ["pixel"], "judge": False}),
    ("channel-atlas", None, {"steps": 2}),
])
def test_the_npy_holds_the_images_the_picture_shows(run, tmp_path, what, member, options):
    vis = visualise(run, what, member, **options)
    png, _ = vis.save(tmp_path / "x.png")
    shown = np.load(tmp_path / "x.npy")
    rows, cols = len(labels(vis)["rows"]), len(labels(vis)["cols"])
    assert shown.shape == (rows, cols, *run.item_shape) and shown.dtype == np.float32
    assert shown.min() >= -1 and shown.max() <= 1
    # the last cell of the picture is the last image of the array, mapped to grey levels as drawn
    pixels = torch.from_numpy(np.array(Image.open(png)))
    h, w = run.item_shape[-2:]
    scale = max(1, -(-64 // w))
    cell = to_uint8(torch.from_numpy(shown[-1, -1]))[0]
    cell = cell.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    found = pixels.unfold(0, h * scale, 1).unfold(1, w * scale, 1)
    assert (found == cell).flatten(2).all(2).any()


def test_the_cli_writes_the_npy_beside_the_png_and_pictures_without_images_get_none(tmp_path, capsys):
    import argparse

    out = tmp_path / "tile.png"
    args = argparse.Namespace(run=str(tiny_run_dir()), what="real-tile", member=0, seed=0, out=str(out), n=3,
                              layer=None, channel=None, unit=None, steps=None, prior=None, vgg_weights=None,
                              method=None, set=None)
    assert cmd_visualise(args) == 0
    assert np.load(tmp_path / "tile.npy").shape == (2, 3, *load_run(tiny_run_dir()).item_shape)
    assert "tile.npy" in capsys.readouterr().out
    matrix = visualise(load_run(tiny_run_dir()), "cross-member", n=4)
    assert matrix.images is None
    matrix.save(out)  # a matrix over an earlier picture: the stale images go
    assert not (tmp_path / "tile.npy").exists()


# --- real tile and cross-member ------------------------------------------------------------------


def test_real_tile_shows_a_random_sample_beside_the_nearest_and_the_label_mix(run):
    vis = visualise(run, "real-tile", 1, n=5, seed=3)
    rows = labels(vis)["rows"]
    assert rows[0].startswith("member 1 (") and rows[0].endswith("random") and rows[1] == "nearest to m"
    numbers = vis.numbers["members"]["1"]
    tile = torch.nonzero(run.assignment == 1).flatten()
    truth = torch.bincount(run.dataset.labels[tile], minlength=10).float() / tile.numel()
    assert numbers["label_histogram"] == pytest.approx({str(c): float(truth[c]) for c in range(10) if truth[c] > 0},
                                                       abs=1e-4)
    assert numbers["distances_to_point_mass_nearest"] == sorted(numbers["distances_to_point_mass_nearest"])
    nearest = numbers["distances_to_point_mass_nearest"]
    for d in numbers["distances_to_point_mass_random"]:  # the nearest are the tile's n smallest distances
        assert d >= max(nearest) - 1e-4 or min(abs(d - e) for e in nearest) < 1e-4
    assert vis.numbers["members"]["1"]["random_indices_in_tile"] != visualise(
        run, "real-tile", 1, n=5, seed=4).numbers["members"]["1"]["random_indices_in_tile"]


class Brightness(nn.Module):
    """A stand-in critic stack: every member scores an image by its mean pixel (times sign)."""

    def __init__(self, k: int, sign: float):
        super().__init__()
        self.k, self.sign = k, sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sign * x.flatten(2).mean(2)


def test_cross_member_warns_when_a_critic_prefers_its_generators_samples_to_its_real_tile(run):
    white = torch.ones(run.k, 6, *run.item_shape)
    run.sample_members = lambda n, seed=0: white[:, :n]  # generators of white squares
    run.critic = Brightness(run.k, +1.0)  # critics that like bright images: white beats real digits
    vis = visualise(run, "cross-member", n=6)
    assert vis.numbers["critics_preferring_own_samples_to_real_tile"] == [0, 1, 2]
    assert len(vis.numbers["warnings"]) == 3 and "WARNING" in vis.title
    run.critic = Brightness(run.k, -1.0)  # critics that dislike bright images: no warning
    vis = visualise(run, "cross-member", n=6)
    assert vis.numbers["warnings"] == [] and "WARNING" not in vis.title
    relative = torch.tensor(vis.numbers["relative_to_own_real_tile_in_spreads"])
    assert (relative < 0).all()
    row_first = [int(torch.argmax(r)) == i for i, r in enumerate(relative)]
    assert vis.numbers["critic_ranks_own_generator_first"] == row_first


def test_cross_member_colours_use_the_whole_scale_and_never_white():
    from kgan_core.visualise.cross_member import fitted_colours

    negative, legend = fitted_colours(torch.tensor([[-3.0, -0.01], [-1.0, -2.0]]))
    rgb = (negative[..., 0, 0] + 1) / 2
    assert legend.startswith("pale") and rgb.min() >= 0 and (rgb < 0.99).any(-1).all()
    assert not torch.allclose(rgb[0, 0], rgb[0, 1])  # the two ends differ: the scale spans the values
    mixed, legend = fitted_colours(torch.tensor([[-4.0, 0.5]]))
    assert legend.startswith("blue") and mixed[0, 1, 0, 0, 0] > mixed[0, 1, 2, 0, 0]  # +0.5 is fully red


# --- latent tools --------------------------------------------------------------------------------


def test_latent_tools_pick_the_dims_with_the_largest_effect_and_print_it(run):
    trav = visualise(run, "traversal", 0, steps=3, judge=False)
    effects = [d["effect_per_sd"] for d in trav.numbers["dims"].values()]
    assert effects == sorted(effects, reverse=True)
    assert all("effect" in row for row in labels(trav)["rows"])
    frozen = visualise(run, "frozen-latent", 0, dims=[1, 2], values=[-1, 1], n=3, judge=False)
    rows = labels(frozen)["rows"]
    assert rows[0].startswith("z[1] = -1.0  effect") and rows[1] == "z[1] = +1.0"
    assert frozen.numbers["dims"]["1"]["frozen_vs_resampled"] > 0


def test_principal_directions_are_ranked_among_many_random_ones(run):
    vis = visualise(run, "principal-directions", 2, components=3, random=50, n_base=2, judge=False)
    n = vis.numbers
    assert n["random"]["count"] == 50 and len(n["random"]["effect_per_sd"]) == 50
    for pc in n["principal"]:
        below = sum(v < pc["effect_per_sd"] for v in n["random"]["effect_per_sd"])
        assert pc["percentile_among_random"] == pytest.approx(2 * below, abs=1e-3)
    assert n["top3_above_95th_percentile"] == all(p["percentile_among_random"] >= 95 for p in n["principal"])
    assert labels(vis)["rows"][3].startswith("random 1")


def test_principal_directions_can_edit_an_intermediate_layer_of_the_generator(run):
    from kgan_core.visualise.directions import layer_modules

    layer = [name for name in layer_modules(run.member(0).generator) if name != "project"][1]
    vis = visualise(run, "principal-directions", 0, components=2, random=5, shown_random=1, n_base=2, layer=layer,
                    judge=False)
    assert vis.numbers["layer"] == layer
    images = vis.images  # (rows, steps, C, H, W): moving along a component at the layer changes the image
    assert (images[0, 0] - images[0, -1]).abs().max() > 0
    with pytest.raises(ValueError, match="its layers are"):
        visualise(run, "principal-directions", 0, layer="no-such-layer", judge=False)


# --- objectives compose --------------------------------------------------------------------------


def test_objectives_compose_like_lucents(run):
    critic = run.member(0).critic
    x = torch.rand(1, 4, *run.item_shape) * 2 - 1
    a, b = objectives.channel("conv1", 0), objectives.layer_mean("score")
    acts = objectives.activations(critic, x, a + b)
    va, vb, tv = a(acts), b(acts), objectives.total_variation(x)
    assert torch.allclose((a + b)(acts), va + vb)
    assert torch.allclose((a - 0.5 * objectives.tv())(acts), va - 0.5 * tv)
    assert torch.allclose((2 * a * b)(acts), 2 * va * vb)
    assert torch.allclose(sum([a, b, objectives.tv()])(acts), va + vb + tv)
    assert torch.allclose((-a / 4)(acts), -va / 4)
    assert (a + b).layers == ("conv1", "score")
    assert set(objectives.activations(critic, x, a)) == {"conv1", "input"}  # no deeper than needed
    with pytest.raises(TypeError):
        a / b


def test_channel_per_image_and_diversity(run):
    critic = run.member(0).critic
    x = torch.rand(1, 8, *run.item_shape) * 2 - 1
    acts = objectives.activations(critic, x, objectives.channel_per_image("conv1", 2))
    per_image = objectives.channel_per_image("conv1", 2)(acts)
    assert torch.allclose(per_image[0, 5], acts["conv1"][0, 5, 2].mean())  # image 5 -> channel 5 // 2
    same = objectives.activations(critic, x[:, :1].expand(1, 4, *run.item_shape), objectives.diversity("conv1", 2))
    assert torch.allclose(objectives.diversity("conv1", 2)(same), torch.full((1, 4), -1.0), atol=1e-5)
    assert (objectives.diversity("conv1", 2)(acts) > -1.0).all()


# --- channel atlas -------------------------------------------------------------------------------


def test_channel_atlas_has_a_row_per_member_and_a_column_per_channel(run):
    vis = visualise(run, "channel-atlas", None, layer="conv1", steps=5)
    channels = vis.numbers["channels"]
    assert labels(vis)["cols"] == [f"ch {c}" for c in range(channels)]
    assert labels(vis)["rows"] == [f"member {j}" for j in range(run.k)]
    for m in vis.numbers["members"].values():
        assert len(m["z"]) == channels
    one = visualise(run, "channel-atlas", 1, layer="conv2", steps=5, n=2, diversity=1.0)
    assert one.numbers["n_per_channel"] == 2 and one.images.shape[0] * one.images.shape[1] >= 2 * one.numbers[
        "channels"]
    with pytest.raises(OptionError, match="n of 2 or more"):
        visualise(run, "channel-atlas", 0, diversity=1.0)
