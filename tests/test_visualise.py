"""Every visualisation on a tiny trained run: shapes, determinism, labels, numbers, errors."""

import io
import json

import numpy as np
import pytest
import torch
from _runs import one_thread, tiny_points_run_dir, tiny_prior_path, tiny_run_dir
from PIL import Image

from kgan_core.render import labelled_grid, labelled_png_bytes, to_uint8
from kgan_core.run import MemberIndexError, load_run
from kgan_core.visualise import (
    VISUALISATIONS,
    LayerNameError,
    OptionError,
    UnknownVisualisationError,
    VisualisationError,
    visualise,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


FAST = {"activation-max": {"steps": 5}, "medoid": {"n": 32}, "cross-member": {"n": 8},
        "principal-directions": {"n_base": 2}, "channel-atlas": {"steps": 5}}
CASES = [(what, member) for what, entry in VISUALISATIONS.items() for member in ([1] if entry.per_member_only
                                                                                   else [None, 1])]


@pytest.fixture(scope="module")
def run():
    return load_run(tiny_run_dir())


def png_labels(data: bytes) -> dict:
    return json.loads(Image.open(io.BytesIO(data)).text["kgan-labels"])


# --- rendering ---------------------------------------------------------------------------------


def test_labelled_grid_round_trips_through_png():
    images = torch.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 1, 8, 8)
    grid = labelled_grid(images, row_labels=["a", "b"], col_labels=["x", "y", "z"], title="t", scale=1)
    decoded = Image.open(io.BytesIO(labelled_png_bytes(grid)))
    assert decoded.size == grid.size and decoded.mode == "L"
    assert png_labels(labelled_png_bytes(grid)) == {"title": "t", "rows": ["a", "b"], "cols": ["x", "y", "z"],
                                                    "captions": []}
    pixels = torch.from_numpy(np.array(decoded))
    # The last cell, in the bottom row (centred under its column label, and vertically in a row
    # as tall as its label), holds the last 8x8 block, mapped by to_uint8.
    last = to_uint8(images[1, 2])[0]
    height, width = pixels.shape
    assert any(torch.equal(pixels[y:y + 8, x:x + 8], last) for y in range(height - 30, height - 7)
               for x in range(width - 7))


def test_the_same_value_gets_the_same_grey_in_every_panel():
    a = labelled_grid(torch.full((1, 2, 1, 4, 4), 0.5), scale=1, padding=0)
    b = labelled_grid(torch.cat([torch.full((1, 1, 1, 4, 4), 0.5), torch.full((1, 1, 1, 4, 4), -1.0)], 1),
                      scale=1, padding=0)
    assert a.getpixel((0, 0)) == b.getpixel((0, 0)) == int(to_uint8(torch.tensor(0.5)))


def test_labels_put_ink_beside_the_grid():
    images = torch.ones(2, 2, 1, 8, 8)  # white images: only labels can be dark
    bare = labelled_grid(images)
    labelled = labelled_grid(images, row_labels=["member 0", "member 1"], col_labels=["a", "b"], title="title")
    assert np.array(bare).min() == 255
    assert np.array(labelled).min() < 128
    assert labelled.width > bare.width and labelled.height > bare.height


# --- every visualisation --------------------------------------------------------------------


@pytest.mark.parametrize(("what", "member"), CASES)
def test_each_visualisation_is_labelled_deterministic_and_has_json_numbers(run, what, member):
    a = visualise(run, what, member, seed=3, **FAST.get(what, {}))
    b = visualise(run, what, member, seed=3, **FAST.get(what, {}))
    assert a.png() == b.png()
    assert a.numbers == b.numbers
    json.loads(a.json())  # serialisable, no NaN
    assert what.replace("-", " ") in a.title.replace("-", " ") and "seed 3" in a.title
    assert ("member 1 of 3" if member == 1 else "all 3 members") in a.title
    assert png_labels(a.png())["title"] == a.title
    assert a.image.width > 100 and a.image.height > 50


def test_samples_share_z_across_members_and_change_with_the_seed(run):
    every = visualise(run, "samples", seed=1, n=4)
    one = visualise(run, "samples", 2, seed=1, n=4)
    assert png_labels(every.png())["rows"] == ["member 0", "member 1", "member 2"]
    assert every.numbers["members"]["2"]["own_critic_mean"] == one.numbers["members"]["2"]["own_critic_mean"]
    assert visualise(run, "samples", 2, seed=2, n=4).png() != one.png()
    assert torch.allclose(run.sample_members(4, seed=1)[2], run.sample(4, member=2, seed=1), atol=1e-5)


def test_medoid_and_real_tile_numbers_describe_the_member(run):
    med = visualise(run, "medoid", 0, n=16)
    assert png_labels(med.png())["cols"] == ["mean of samples", "medoid sample", "point mass"]
    assert 0 <= med.numbers["members"]["0"]["medoid_index"] < 16
    tile = visualise(run, "real-tile", 1, n=5)
    numbers = tile.numbers["members"]["1"]
    assert numbers["tile_size"] == int((run.assignment == 1).sum())
    assert numbers["tile_share"] == pytest.approx(run.tile_shares[1], abs=1e-5)
    assert numbers["distances_to_point_mass_nearest"] == sorted(numbers["distances_to_point_mass_nearest"])
    assert "member 1 (" in png_labels(tile.png())["rows"][0]


def test_latent_grids_report_effect_per_step(run):
    frozen = visualise(run, "frozen-latent", 0, dims=[1, 2], values=[-1, 1], n=3, judge=False)
    assert [r.split("  ")[0] for r in png_labels(frozen.png())["rows"]] == ["z[1] = -1.0", "z[1] = +1.0",
                                                                            "z[2] = -1.0", "z[2] = +1.0"]
    for d in ("1", "2"):
        assert frozen.numbers["dims"][d]["effect_per_sd"] > 0
        assert frozen.numbers["dims"][d]["frozen_vs_resampled"] > 0
    trav = visualise(run, "traversal", 0, steps=5, judge=False)
    assert len(trav.numbers["dims"]) == 6 and len(png_labels(trav.png())["cols"]) == 5
    # default dims: the ones with the largest effect, largest first
    effects = [v["effect_per_sd"] for v in trav.numbers["dims"].values()]
    assert effects == sorted(effects, reverse=True)


def test_principal_directions_compare_with_random_directions(run):
    vis = visualise(run, "principal-directions", 2, components=3, random=2, shown_random=2, n_base=2, judge=False)
    n = vis.numbers
    assert len(n["principal"]) == 3 and n["random"]["count"] == 2
    assert sum(p["explained_variance"] for p in n["principal"]) <= 1.0
    assert n["principal_over_random"] == pytest.approx(n["mean_effect_principal"] / n["mean_effect_random"], rel=1e-3)
    assert png_labels(vis.png())["rows"][3].startswith("random 1")


def test_cross_member_matrix_is_k_by_k_and_matches_the_critics(run):
    vis = visualise(run, "cross-member", n=8, seed=0)
    fake = torch.tensor(vis.numbers["fake_scores"])
    assert fake.shape == (3, 3)
    samples = run.sample_members(8, seed=0)
    with torch.no_grad():
        d1_on_g2 = run.member(1).critic(samples[2][None])[0].mean()
    assert fake[1, 2] == pytest.approx(float(d1_on_g2), abs=1e-4)


def test_training_curves_cover_the_logged_steps(run):
    vis = visualise(run, "training-curves", 0)
    assert vis.numbers["logged_steps"] == len(run.history)
    assert set(vis.numbers["members"]) == {"0"}


def test_activation_max_reports_reached_and_real_tile_activations(run):
    vis = visualise(run, "activation-max", None, layer="conv2", channel=1, steps=15, prior=tiny_prior_path(),
                    judge=False)
    assert vis.numbers["methods"] == ["pixel", "regularised", "prior"]
    assert png_labels(vis.png())["cols"][6:] == ["pixel", "regularised", "prior", "pixel re-init", "regul re-init",
                                                 "prior re-init"]
    for j in range(3):
        m = vis.numbers["members"][str(j)]["trained"]
        assert m["tile_max"] >= m["tile_mean_value"]
        for method in ("pixel", "regularised", "prior"):
            assert m[method]["reached"] > m[method]["start"], (j, method)
            assert isinstance(m[method]["beats_controls"], bool)


def test_activation_max_covers_every_layer_of_every_member(run):
    vis = visualise(run, "activation-max", None, layer="all", methods=["regularised"], steps=8, controls=False)
    assert list(vis.numbers["layers"]) == ["conv1", "conv2", "score"]
    assert png_labels(vis.png())["rows"][:4] == ["member 0 conv1", "member 1 conv1", "member 2 conv1",
                                                 "member 0 conv2"]
    for layer in vis.numbers["layers"].values():
        for m in layer["members"].values():
            assert m["trained"]["regularised"]["reached"] > m["trained"]["regularised"]["start"]
    with pytest.raises(OptionError, match="layer='all'"):
        visualise(run, "activation-max", 0, layer="all", channel=0)


# --- errors ---------------------------------------------------------------------------------


def test_bad_requests_fail_with_messages_that_say_what_to_do(run):
    with pytest.raises(MemberIndexError, match="numbered 0 to 2"):
        visualise(run, "samples", 3)
    with pytest.raises(UnknownVisualisationError, match="choose one of samples, medoid"):
        visualise(run, "sample")
    with pytest.raises(LayerNameError, match="its layers are conv1, conv2, score"):
        visualise(run, "activation-max", 0, layer="fc1", steps=1)
    with pytest.raises(OptionError, match="its options are n"):
        visualise(run, "samples", 0, layers=3)
    with pytest.raises(OptionError, match="pass a member"):
        visualise(run, "traversal")
    with pytest.raises(OptionError, match="between 1 and 256"):
        visualise(run, "samples", 0, n=0)
    with pytest.raises(OptionError, match="needs a learned prior"):
        visualise(run, "activation-max", 0, methods=["prior"], steps=1)
    with pytest.raises(ValueError):  # every error is a ValueError, so callers can catch one type
        visualise(run, "frozen-latent", 0, dims=[99])


def test_save_writes_png_json_and_npy_or_nothing(run, tmp_path):
    vis = visualise(run, "samples", 0, n=2)
    png, js = vis.save(tmp_path / "out" / "samples.png")
    assert Image.open(png).size == vis.image.size
    assert json.loads(js.read_text())["numbers"] == vis.numbers
    with pytest.raises(OptionError, match=r"\.png"):
        vis.save(tmp_path / "bad.jpg")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "samples.json", "samples.npy", "samples.png"]


def test_point_runs_get_scatter_samples_matrices_and_curves_and_a_clear_no_for_image_views():
    run = load_run(tiny_points_run_dir())
    vis = visualise(run, "samples", None, n=50)
    assert vis.image.mode == "RGB" and vis.image.width > 200
    assert set(vis.numbers["members"]) == {"0", "1", "2"}
    assert len(visualise(run, "cross-member", n=16).numbers["fake_scores"]) == 3
    assert visualise(run, "training-curves").numbers["logged_steps"] == len(run.history)
    with pytest.raises(VisualisationError, match="models 2-D points"):
        visualise(run, "medoid", 0)


def test_real_tile_rows_say_what_they_show_and_the_whole_label_mix(run):
    from kgan_core.visualise.real_tile import _mix

    # A colon between label and share ("1 70%" reads as 170 %), and what the named labels leave.
    mix = {"1": 0.70, "2": 0.08, "7": 0.05, "3": 0.04, "4": 0.03, "9": 0.10}
    assert _mix(mix) == "labels 1: 70%, 2: 8%, 7: 5%, 3: 4%, other 13%"
    assert _mix({"0": 1.0}) == "labels 0: 100%"
    vis = visualise(run, "real-tile", 1, n=5)
    size = vis.numbers["members"]["1"]["tile_size"]
    random_row, nearest_row = png_labels(vis.png())["rows"]
    member, mix, what = random_row.split("\n")
    assert member.startswith("member 1 (") and mix.startswith("labels ") and what == f"5 of its {size:,}, at random"
    assert nearest_row == "nearest to m" and "nearest to its point mass m" in vis.title


def test_cross_member_frames_each_critics_own_generator(run):
    vis = visualise(run, "cross-member", n=8, seed=0)
    pixels = np.asarray(vis.image.convert("RGB")).astype(int)
    black = (pixels.sum(-1) == 0)
    # Text never draws a black line 40 px long; each framed cell has three rows of them on top
    # and three at the bottom.
    runs = 0
    for row in black:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        runs += int(((edges[1::2] - edges[::2]) >= 40).sum())
    assert runs == 6 * run.k
    assert "framed: each critic on its own generator" in vis.title


def test_the_training_curves_legend_fits_ten_members():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from kgan_core.visualise.curves import _legend_within

    fig, ax = plt.subplots(figsize=(7.2, 5.4), dpi=90)
    for j in range(10):
        ax.plot([0, 1], [j, j], label=f"member {j}")
    rows = _legend_within(fig, *ax.get_legend_handles_labels())
    extent = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert rows >= 2 and extent.x0 >= 0 and extent.x1 <= fig.get_window_extent().width
    plt.close(fig)


def test_latent_titles_say_what_an_effect_is_measured_in(run):
    cases = {"frozen-latent": {"dims": [1], "n": 3}, "traversal": {"dims": [1], "steps": 3},
             "principal-directions": {"components": 2, "random": 2, "shown_random": 1, "n_base": 2}}
    for what, options in cases.items():
        vis = visualise(run, what, 0, judge=False, **options)
        assert "in units of the distance between two random samples" in png_labels(vis.png())["title"]
    assert "% var)" in png_labels(vis.png())["rows"][0] and "." in png_labels(vis.png())["rows"][0].split("%")[0]


def test_medoid_prints_how_far_apart_its_images_are(run):
    vis = visualise(run, "medoid", 0, n=16)
    numbers = vis.numbers["members"]["0"]
    assert png_labels(vis.png())["captions"] == [[f"to m {numbers['rms_mean_to_point_mass']:.3f}",
                                                  f"to mean {numbers['rms_medoid_to_mean']:.3f}",
                                                  f"to medoid {numbers['rms_medoid_to_point_mass']:.3f}"]]
