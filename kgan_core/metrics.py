"""Metric definitions from docs/architecture.md §5, shared by training logs, tests and benchmarks."""

from __future__ import annotations

import torch


def mode_metrics(samples: torch.Tensor, centres: torch.Tensor, sigma: float) -> dict[str, float]:
    """PacGAN/VEEGAN protocol for 2-D mixtures.

    A sample is high quality within 3σ of its nearest centre; a mode is captured when it
    has at least one high-quality sample; reverse KL is KL(p_model ‖ p_data) over modes with
    p_model the share of *all* samples whose nearest centre is that mode (uniform p_data).
    """
    samples, centres = samples.double().cpu(), centres.double().cpu()
    d = torch.cdist(samples, centres)
    nearest_d, nearest = d.min(1)
    high_quality = nearest_d <= 3.0 * sigma
    m = centres.shape[0]
    captured = torch.bincount(nearest[high_quality], minlength=m) > 0
    p_model = torch.bincount(nearest, minlength=m).double() / samples.shape[0]
    present = p_model > 0
    reverse_kl = float((p_model[present] * torch.log(p_model[present] * m)).sum())
    return {
        "modes_captured": int(captured.sum()),
        "modes_total": m,
        "high_quality_share": float(high_quality.double().mean()),
        "reverse_kl": reverse_kl,
    }


def normalized_mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """NMI with arithmetic-mean normalisation (scikit-learn's default), for label vectors."""
    a, b = a.long().cpu(), b.long().cpu()
    _, a = torch.unique(a, return_inverse=True)
    _, b = torch.unique(b, return_inverse=True)
    n = a.numel()
    joint = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(n, dtype=torch.float64), accumulate=True)
    joint /= n
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * torch.log(joint[nz] / (pa[:, None] * pb[None, :])[nz])).sum())
    ha = -float((pa[pa > 0] * torch.log(pa[pa > 0])).sum())
    hb = -float((pb[pb > 0] * torch.log(pb[pb > 0])).sum())
    if ha == 0.0 and hb == 0.0:
        return 1.0
    return mi / ((ha + hb) / 2) if ha + hb > 0 else 0.0


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(histogram ‖ uniform) in nats; 0 when every class is equally frequent."""
    p = counts.double() / counts.sum()
    nz = p > 0
    return float((p[nz] * torch.log(p[nz] * counts.numel())).sum())
