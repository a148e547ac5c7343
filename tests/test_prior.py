"""The learned image prior: it learns to reconstruct, saves and loads, and refuses bad input."""

import pytest
import torch
from _runs import TINY_PRIOR, one_thread, tiny_prior_path, tiny_run_dir

from kgan_core.prior import (
    EncoderWeightsMissing,
    PriorConfig,
    PriorError,
    PriorMismatchError,
    feature_nn_ratio,
    load_prior,
    load_vgg16_encoder,
    train_prior,
)
from kgan_core.run import load_run
from kgan_core.visualise import LayerNameError, visualise


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def prior():
    return load_prior(tiny_prior_path())


def test_training_lowers_the_held_out_reconstruction_error(prior):
    history = prior.info["history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == TINY_PRIOR["steps"]
    assert history[-1]["heldout_mse"] < 0.7 * history[0]["heldout_mse"]
    metrics = prior.info["metrics"]
    assert {"heldout_ssim", "heldout_psnr", "heldout_images"} <= set(metrics)
    assert metrics["heldout_images"] == TINY_PRIOR["holdout"]


def test_a_loaded_prior_decodes_exactly_as_trained_and_knows_its_code_range(prior, tmp_path):
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    h = prior.encode(x)
    assert h.shape == (4, TINY_PRIOR["code_dim"])
    assert (prior.code_lo <= prior.code_mean).all() and (prior.code_mean <= prior.code_hi).all()
    prior.save(tmp_path / "again.safetensors")
    again = load_prior(tmp_path / "again.safetensors")
    assert torch.equal(again.decode(h), prior.decode(h))
    assert again.info["metrics"] == prior.info["metrics"]


def test_real_digits_are_nearer_real_digits_than_noise_in_feature_space(prior):
    from kgan_core.data import load_dataset

    data = load_dataset("mnist", image_size=16, limit=200)
    real = data.to_model(data.x)
    noise = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    held = torch.tensor(feature_nn_ratio(prior, real[150:160], real[:150]))
    far = torch.tensor(feature_nn_ratio(prior, noise, real[:150]))
    assert held.mean() < far.mean()


def test_a_prior_of_another_size_or_encoder_is_refused(prior, tmp_path):
    run = load_run(tiny_run_dir())
    with pytest.raises(PriorMismatchError, match="1x32x32 images"):
        prior.check_compatible((1, 32, 32))
    with pytest.raises(PriorMismatchError, match="--encoder vgg16"):
        prior.check_compatible((1, 16, 16), encoder="vgg16")
    small = train_prior(PriorConfig(**TINY_PRIOR | {"image_size": 20, "steps": 2, "holdout": 5}),
                        tmp_path / "p20.safetensors").path
    with pytest.raises(PriorMismatchError, match="the run makes 1x16x16 images"):
        visualise(run, "activation-max", 0, prior=small, steps=1)
    with pytest.raises(PriorMismatchError, match="trained with the small encoder, not vgg16"):
        load_prior(small, expect_encoder="vgg16")


def test_the_critic_of_a_member_can_be_the_encoder(tmp_path):
    cfg = PriorConfig(**TINY_PRIOR | {"encoder": "critic", "run": str(tiny_run_dir()), "member": 1,
                                      "steps": 3, "holdout": 10})
    result = train_prior(cfg, tmp_path / "critic.safetensors")
    loaded = load_prior(result.path)
    assert loaded.encoder_kind == "critic" and loaded.info["critic_layer"] == "conv2"
    assert loaded.code_dim == 8 * 4 * 4  # conv2 of a width-4 critic on 16 px: 8 channels of 4x4
    critic = load_run(tiny_run_dir()).member(1).critic
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.allclose(loaded.encode(x), critic.features(x[None], upto="conv2")["conv2"][0].flatten(1))
    with pytest.raises(LayerNameError, match="its layers are conv1, conv2, score"):
        train_prior(PriorConfig(**cfg.model_dump() | {"layer": "fc"}), tmp_path / "x.safetensors")


def test_missing_vgg_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EncoderWeightsMissing) as info:
        load_vgg16_encoder()
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert "--vgg-weights" in message and "encoder='small'" in message
    with pytest.raises(EncoderWeightsMissing, match="nowhere.pth does not exist"):
        train_prior(PriorConfig(**TINY_PRIOR | {"encoder": "vgg16", "vgg_weights": str(tmp_path / "nowhere.pth")}),
                    tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()


def test_vgg16_weights_from_a_local_file_give_conv5_3_features(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["D"])  # VGG-16's convolutions, random weights (no download in tests)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    encoder = load_vgg16_encoder(path, input_size=32)
    out = encoder(torch.zeros(2, 1, 16, 16))
    assert out.shape == (2, 512 * 2 * 2)  # conv5_3 at 32 px input: 512 x 2 x 2
    # a whole prior on that encoder: trained, saved without VGG's weights, reloaded from the file
    cfg = PriorConfig(**TINY_PRIOR | {"encoder": "vgg16", "vgg_weights": str(path), "vgg_input_size": 32,
                                      "steps": 1, "limit": 12, "holdout": 4, "batch_size": 4, "log_every": 1})
    result = train_prior(cfg, tmp_path / "vgg-prior.safetensors")
    assert (tmp_path / "vgg-prior.safetensors").stat().st_size < path.stat().st_size / 4
    loaded = load_prior(result.path, vgg_weights=path)
    assert loaded.encoder_kind == "vgg16" and loaded.code_dim == 2048
    path.rename(tmp_path / "moved.pth")
    with pytest.raises(EncoderWeightsMissing, match="vgg16.pth does not exist"):
        load_prior(result.path)
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(PriorError, match="does not hold VGG-16 weights"):
        load_vgg16_encoder(tmp_path / "other.pth")


def test_bad_prior_requests_fail_before_training(tmp_path):
    with pytest.raises(PriorError, match=r"\.safetensors"):
        train_prior(PriorConfig(**TINY_PRIOR), tmp_path / "prior.pt")
    with pytest.raises(PriorError, match="points"):
        train_prior(PriorConfig(dataset="ring8", steps=1), tmp_path / "ring.safetensors")
    with pytest.raises(PriorError, match="encoder='critic' needs the run"):
        train_prior(PriorConfig(**TINY_PRIOR | {"encoder": "critic"}), tmp_path / "c.safetensors")
    with pytest.raises(PriorError, match="no prior at"):
        load_prior(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a prior")
    with pytest.raises(PriorError, match="not a readable prior"):
        load_prior(tmp_path / "junk.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.safetensors"]
