"""The optvis building blocks: parameterisations, transforms, objectives and the ascent loop."""

import pytest
import torch
from _runs import one_thread, tiny_run_dir

from kgan_core.run import load_run
from kgan_core.visualise import LayerNameError, objectives, param, transforms
from kgan_core.visualise.optimise import maximise


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def run():
    return load_run(tiny_run_dir())


def test_pixel_parameterisation_stays_in_the_model_range():
    p = param.pixel((2, 1, 1, 8, 8), torch.Generator().manual_seed(0), sd=5.0)
    p.after_step()
    assert p.image().shape == (2, 1, 1, 8, 8)
    assert p.image().abs().max() <= 1.0


@pytest.mark.parametrize("channels", [1, 3])
def test_fft_parameterisation_is_seeded_and_bounded(channels):
    a = param.fft((2, 1, channels, 16, 16), torch.Generator().manual_seed(3), sd=1.0)
    b = param.fft((2, 1, channels, 16, 16), torch.Generator().manual_seed(3), sd=1.0)
    assert torch.equal(a.image(), b.image())
    assert a.image().shape == (2, 1, channels, 16, 16)
    assert a.image().abs().max() <= 1.0


def test_fft_parameterisation_favours_low_frequencies():
    # Equal-size random spectra: scaled by 1/frequency, neighbouring pixels are correlated.
    img = param.fft((1, 64, 1, 32, 32), torch.Generator().manual_seed(0), sd=1.0).image()[0, :, 0]
    centred = img - img.mean((1, 2), keepdim=True)
    corr = (centred[:, :, 1:] * centred[:, :, :-1]).mean() / centred.pow(2).mean()
    assert corr > 0.5


def test_transforms_keep_the_size_and_follow_the_seed():
    x = torch.randn(3, 1, 16, 16)
    t = transforms.standard(16)
    a = t(x, torch.Generator().manual_seed(1))
    b = t(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    shifted = transforms.jitter(2)(x, torch.Generator().manual_seed(5))
    assert shifted.shape == x.shape
    assert transforms.random_scale([1.0])(x, torch.Generator()).equal(x)


def test_objectives_read_layer_channel_and_unit(run):
    critic = run.member(0).critic
    x = torch.randn(1, 4, *run.item_shape)
    feats = critic.features(x)
    assert torch.allclose(objectives.layer_mean("conv1")(feats), feats["conv1"].flatten(2).mean(2))
    assert torch.allclose(objectives.channel("conv2", 1)(feats), feats["conv2"][:, :, 1].flatten(2).mean(2))
    assert torch.equal(objectives.unit("conv1", 2, (3, 4))(feats), feats["conv1"][:, :, 2, 3, 4])
    assert torch.equal(objectives.layer_mean("score")(feats), feats["score"][..., 0])


def test_resolve_checks_names_and_indices_against_the_critic(run):
    critic = run.member(0).critic
    assert objectives.resolve(critic, run.item_shape).layer == "score"
    assert objectives.resolve(critic, run.item_shape, "conv2", unit=1).position == (2, 2)
    with pytest.raises(LayerNameError, match="its layers are conv1, conv2, score"):
        objectives.resolve(critic, run.item_shape, "conv9")
    with pytest.raises(LayerNameError, match="numbered 0 to 3"):
        objectives.resolve(critic, run.item_shape, "conv1", channel=4)
    with pytest.raises(LayerNameError, match="position must be within"):
        objectives.resolve(critic, run.item_shape, "conv1", unit=0, position=(99, 0))


@pytest.mark.parametrize("kind", ["pixel", "fft"])
def test_maximise_increases_the_target_activation_of_every_member(run, kind):
    objective = objectives.channel("conv1", 0)
    g = torch.Generator().manual_seed(0)
    p = getattr(param, kind)((run.k, 1, *run.item_shape), g)
    result = maximise(run.critic, objective, p, steps=25, lr=0.05, generator=g,
                      transform=transforms.standard(16) if kind == "fft" else None, tv_weight=0.01)
    assert result.images.shape == (run.k, 1, *run.item_shape)
    assert (result.values > result.start).all()
    assert len(result.trace) == 3


def test_total_variation_is_zero_for_flat_images():
    assert objectives.total_variation(torch.zeros(2, 1, 8, 8)).abs().max() == 0
    assert (objectives.total_variation(torch.randn(2, 1, 8, 8)) > 0).all()


def test_prior_code_search_raises_the_objective_and_stays_in_the_real_code_region(run):
    from _runs import tiny_prior_path

    from kgan_core.prior import load_prior

    prior = load_prior(tiny_prior_path())
    g = torch.Generator().manual_seed(0)
    p = param.prior_code(prior, (run.k, 2), g)
    assert p.image().shape == (run.k, 2, *run.item_shape)
    result = maximise(run.critic, objectives.layer_mean("score"), p, steps=10, lr=0.1, generator=g)
    assert (result.values > result.start).all()
    assert prior.region.contains(p.code().reshape(-1, prior.code_dim)).all()
