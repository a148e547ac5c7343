"""Stacked members behave exactly like k separate networks."""

import pytest
import torch

from kgan_core.models import (
    ArchitectureError,
    ModelSpec,
    build_critic,
    build_generator,
    default_spec,
    parameter_count,
    width_for_budget,
)
from kgan_core.nn import stack_members, take_member

SPECS = [
    ModelSpec("mlp", (2,), 4, 16),
    ModelSpec("thesis", (1, 28, 28), 8, 4),
    ModelSpec("thesis", (3, 32, 32), 8, 4),
    ModelSpec("resize", (1, 28, 28), 8, 4),
    ModelSpec("dcgan64", (3, 64, 64), 8, 4),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.arch}-{s.item_shape[-1]}")
def test_shapes_and_layer_names(spec):
    k, b = 3, 5
    g, d = build_generator(spec, k), build_critic(spec, k)
    x = g(torch.randn(k, b, spec.latent_dim))
    assert x.shape == (k, b, *spec.item_shape)
    assert d(x).shape == (k, b)
    feats = d.features(x)
    assert list(feats) == list(d.layer_names)
    assert all(f.shape[:2] == (k, b) for f in feats.values())
    if spec.arch != "mlp":
        assert x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.arch}-{s.item_shape[-1]}")
def test_member_j_of_a_stack_is_an_independent_network(spec):
    torch.manual_seed(0)
    k, b = 3, 4
    g, d = build_generator(spec, k).eval(), build_critic(spec, k)
    z = torch.randn(k, b, spec.latent_dim)
    x = torch.randn(k, b, *spec.item_shape)
    with torch.no_grad():
        stacked_g, stacked_d = g(z), d(x)
        for j in range(k):
            gj, dj = take_member(g, j).eval(), take_member(d, j)
            assert torch.allclose(gj(z[j:j + 1])[0], stacked_g[j], atol=1e-5)
            assert torch.allclose(dj(x[j:j + 1])[0], stacked_d[j], atol=1e-5)
    rebuilt = stack_members([take_member(d, j) for j in range(k)])
    for (name, a), (_, b_) in zip(d.state_dict().items(), rebuilt.state_dict().items(), strict=True):
        assert torch.equal(a, b_), name


def test_gradients_do_not_leak_between_members():
    spec = SPECS[1]
    d = build_critic(spec, 3)
    x = torch.randn(3, 4, *spec.item_shape, requires_grad=True)
    d(x)[1].sum().backward()
    assert x.grad[0].abs().max() == 0 and x.grad[2].abs().max() == 0
    assert x.grad[1].abs().max() > 0


def test_auto_architecture_and_bad_shapes():
    assert default_spec((2,)).arch == "mlp"
    assert default_spec((1, 32, 32)).arch == "resize"
    assert default_spec((3, 64, 64)).arch == "dcgan64"
    with pytest.raises(ArchitectureError, match="divisible by 4"):
        default_spec((1, 30, 30), "thesis")
    with pytest.raises(ArchitectureError, match="64 px"):
        default_spec((1, 32, 32), "dcgan64")
    with pytest.raises(ArchitectureError, match="points"):
        default_spec((1, 32, 32), "mlp")


def test_width_for_budget_matches_total_parameters():
    spec = ModelSpec("mlp", (2,), 8, 64)
    k = 8
    total = k * (parameter_count(build_generator(spec, 1)) + parameter_count(build_critic(spec, 1)))
    wide = ModelSpec("mlp", (2,), 8, width_for_budget(spec, k))
    single = parameter_count(build_generator(wide, 1)) + parameter_count(build_critic(wide, 1))
    assert 0.9 * total <= single <= 1.0 * total


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 64, 64)], ids=lambda s: f"{s[-1]}px")
def test_image_default_architecture_builds_with_batch_norm_only_in_the_generator(shape):
    # The critic is trained with a gradient penalty per sample, which batch norm would mix
    # across the batch; the generator needs it to train in a short CPU budget.
    spec = default_spec(shape)
    g, d = build_generator(spec, 2), build_critic(spec, 2)
    x = g(torch.randn(2, 3, spec.latent_dim))
    assert x.shape == (2, 3, *shape) and d(x).shape == (2, 3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())


def test_image_generator_starts_at_its_tiles_mean_image():
    torch.manual_seed(0)
    spec = default_spec((1, 28, 28))
    g = build_generator(spec, 2).eval()
    mean = torch.stack([torch.full((1, 28, 28), -0.8), torch.linspace(-0.9, 0.9, 784).reshape(1, 28, 28)])
    g.set_frame(mean.reshape(2, -1), torch.ones(2))
    with torch.no_grad():
        drawn = g(torch.randn(2, 256, spec.latent_dim)).mean(1)
    assert (drawn - mean).abs().max() < 0.15
    assert drawn[1, 0, -1, -1] - drawn[1, 0, 0, 0] > 1.0  # the anchor's ramp, not a constant


def test_a_generator_saved_before_the_anchor_and_without_norm_biases_loads_as_it_drew():
    # Old generators had no anchor (they drew tanh(net(z))) and a bias before each batch norm.
    torch.manual_seed(0)
    spec = default_spec((1, 28, 28))
    g = build_generator(spec, 2)
    g.train()(torch.randn(2, 16, spec.latent_dim))  # running statistics away from their start
    g.eval()
    old = {name: value for name, value in g.state_dict().items() if name != "anchor"}
    for i in range(len(g.ups)):
        bias = torch.randn(g.norms[i].norm.num_features)
        old[f"ups.{i}.bias"] = bias
        old[f"norms.{i}.norm.running_mean"] = old[f"norms.{i}.norm.running_mean"] + bias
    loaded = build_generator(spec, 2)
    loaded.anchor.fill_(1.0)
    loaded.load_state_dict(old)
    loaded.eval()
    z = torch.randn(2, 4, spec.latent_dim)
    with torch.no_grad():
        assert torch.allclose(loaded(z), g(z), atol=1e-6)
    assert torch.equal(loaded.anchor, torch.zeros_like(loaded.anchor))
