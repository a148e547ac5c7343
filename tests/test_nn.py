"""The stacked layers are exactly k plain torch layers: member j of a stack, forward and
gradients, equals nn.Linear / nn.Conv2d / nn.ConvTranspose2d holding member j's weights,
on every implementation path (NCHW and channels-last transposed convolutions)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from kgan_core.nn import (
    EnsembleBatchNorm,
    EnsembleConv2d,
    EnsembleLayerNorm,
    EnsembleLinear,
    from_grouped,
    to_grouped,
)

K, B = 3, 5


def test_grouped_layout_round_trips():
    x = torch.randn(K, B, 4, 6, 6)
    assert torch.equal(from_grouped(to_grouped(x), K), x)
    assert torch.equal(to_grouped(x)[:, 4:8], x[1])  # member 1 owns channels 4..7


def test_linear_member_equals_nn_linear():
    torch.manual_seed(0)
    layer = EnsembleLinear(K, 7, 4)
    x = torch.randn(K, B, 7, requires_grad=True)
    y = layer(x)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    for j in range(K):
        plain = nn.Linear(7, 4)
        with torch.no_grad():
            plain.weight.copy_(layer.weight[j].T)
            plain.bias.copy_(layer.bias[j, 0])
        xj = x[j].detach().requires_grad_(True)
        yj = plain(xj)
        assert torch.allclose(yj, y[j], atol=1e-6)
        yj.backward(upstream[j])
        assert torch.allclose(xj.grad, x.grad[j], atol=1e-6)
        assert torch.allclose(plain.weight.grad, layer.weight.grad[j].T, atol=1e-6)
        assert torch.allclose(plain.bias.grad, layer.bias.grad[j, 0], atol=1e-6)


def plain_conv(layer: EnsembleConv2d, j: int) -> nn.Module:
    cls = nn.ConvTranspose2d if layer.transposed else nn.Conv2d
    plain = cls(layer.in_ch, layer.out_ch, layer.kernel, layer.stride, layer.padding)
    rows = layer.in_ch if layer.transposed else layer.out_ch  # member j's slice of dim 0
    with torch.no_grad():
        plain.weight.copy_(layer.weight[j * rows:(j + 1) * rows])
        plain.bias.copy_(layer.bias[j * layer.out_ch:(j + 1) * layer.out_ch])
    return plain


CONVS = [  # (in, out, kernel, stride, padding, transposed, side): the thesis nets' shapes
    (4, 3, 4, 2, 1, False, 8),
    (1, 4, 4, 2, 1, False, 8),
    (4, 3, 4, 2, 1, True, 4),
    (3, 1, 3, 1, 1, True, 8),
]


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels-last", "nchw"])
@pytest.mark.parametrize("shape", CONVS, ids=lambda s: f"{'T' if s[5] else ''}conv{s[0]}-{s[1]}k{s[2]}s{s[3]}")
def test_conv_member_equals_plain_torch_conv(shape, channels_last, monkeypatch):
    monkeypatch.setattr(EnsembleConv2d, "channels_last_transposed", channels_last)
    cin, cout, kernel, stride, padding, transposed, side = shape
    torch.manual_seed(0)
    layer = EnsembleConv2d(K, cin, cout, kernel, stride, padding, transposed=transposed)
    nn.init.normal_(layer.bias)  # the default zero bias would hide a bias mix-up
    x = torch.randn(K, B, cin, side, side, requires_grad=True)
    y = from_grouped(layer(to_grouped(x)), K)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    for j in range(K):
        plain = plain_conv(layer, j)
        xj = x[j].detach().requires_grad_(True)
        yj = plain(xj)
        assert torch.allclose(yj, y[j], atol=1e-5), j
        (yj * upstream[j]).sum().backward()
        rows = cin if transposed else cout
        assert torch.allclose(xj.grad, x.grad[j], atol=1e-5), j
        assert torch.allclose(plain.weight.grad, layer.weight.grad[j * rows:(j + 1) * rows], atol=1e-5), j
        assert torch.allclose(plain.bias.grad, layer.bias.grad[j * cout:(j + 1) * cout], atol=1e-5), j


def member_copy(layer: EnsembleConv2d, j: int) -> EnsembleConv2d:
    single = EnsembleConv2d(1, layer.in_ch, layer.out_ch, layer.kernel, layer.stride, layer.padding,
                            transposed=layer.transposed)
    rows = layer.weight.shape[0] // layer.k
    with torch.no_grad():
        single.weight.copy_(layer.weight[j * rows:(j + 1) * rows])
        single.bias.copy_(layer.bias[j * layer.out_ch:(j + 1) * layer.out_ch])
    return single


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels-last", "nchw"])
def test_gradient_penalty_double_backward_stays_per_member(channels_last, monkeypatch):
    """The critic's penalty differentiates through the input gradient: member j's weight
    gradient of the summed penalty must be its own penalty's gradient, nothing leaked."""
    monkeypatch.setattr(EnsembleConv2d, "channels_last_transposed", channels_last)
    torch.manual_seed(1)
    layers = [EnsembleConv2d(K, 2, 3, 4, 2, 1), EnsembleConv2d(K, 3, 2, 4, 2, 1, transposed=True)]

    def penalty(modules, x, k):
        x = x.requires_grad_(True)
        h = to_grouped(x)
        for m in modules:
            h = torch.tanh(m(h))
        (g,) = torch.autograd.grad(h.square().sum(), x, create_graph=True)
        return ((g.flatten(2).norm(dim=2) - 1) ** 2).mean(1)  # (k,)

    x = torch.randn(K, B, 2, 8, 8)
    penalty(layers, x.clone(), K).sum().backward()
    for j in range(K):
        singles = [member_copy(m, j) for m in layers]
        penalty(singles, x[j:j + 1].clone(), 1).sum().backward()
        for stacked, single in zip(layers, singles, strict=True):
            rows = single.weight.shape[0]
            assert torch.allclose(single.weight.grad, stacked.weight.grad[j * rows:(j + 1) * rows], atol=1e-5)


def test_norms_keep_members_apart():
    torch.manual_seed(2)
    x = torch.randn(B, K * 4, 6, 6)
    x[:, :4] *= 100  # member 0's scale must not reach member 1
    bn, ln = EnsembleBatchNorm(K, 4), EnsembleLayerNorm(K, 4)
    for norm in (bn, ln):
        y = norm(x)
        single = nn.BatchNorm2d(4) if norm is bn else nn.GroupNorm(1, 4)
        assert torch.allclose(single(x[:, 4:8]), y[:, 4:8], atol=1e-5)


@pytest.mark.slow
def test_gpu_script_runs_every_section_on_cpu_with_tiny_sizes(capsys, tmp_path):
    # The script a GPU machine runs (BENCHMARKS.md §GPU), so that it cannot rot between the
    # occasions a GPU is lent: every check must pass on CPU too, every section must print.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu

    assert gpu.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| thesis: batched step = sequential | ok |" in out and "| checkpoint round trip | ok |" in out
    assert all(f"| visualise {what} | ok |" in out for what in gpu.VISUALISATIONS)
    assert "| mlp (points) | bf16 | 2 |" in out and "not measured: peak memory counters exist only on CUDA" in out
    assert "| README: kgan train --data mnist --k 10 |" in out and "every check passed" in out


def test_throughput_breakdown_splits_the_batched_step_into_kernels_and_the_rest(capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import throughput

    assert throughput.main(["--ks", "2", "--nets", "mlp (points)", "--batch", "2", "--n-critic", "1",
                            "--seconds", "0", "--malloc", "default", "--breakdown"]) == 0
    out = capsys.readouterr().out
    assert "malloc: glibc default" in out
    row = next(line for line in out.splitlines() if line.startswith("| mlp (points) | 2 |") and "/" in line)
    kernels, other = (float(x.replace(",", "")) for x in row.split("|")[5].split("/"))
    assert kernels > 0 and other > 0  # the MLP's baddbmm/bmm are kernels; Adam and the rest are not
