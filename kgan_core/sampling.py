"""Drawing samples from a whole ensemble, member by member in proportion to tile shares."""

from __future__ import annotations

from collections.abc import Callable

import torch


def sample_ensemble(generate: Callable[[torch.Tensor], torch.Tensor], shares: list[float], latent_dim: int,
                    n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """n samples from the whole ensemble: member j chosen with probability = its tile share.

    ``generate`` maps z of shape (k, m, latent) to (k, m, ...). Draws are seeded, so the same
    seed gives the same samples.
    """
    g = torch.Generator(device).manual_seed(seed)
    k = len(shares)
    weights = torch.tensor(shares, dtype=torch.float64, device=device)
    members = torch.multinomial(weights, n, replacement=True, generator=g)
    z = torch.randn(n, latent_dim, generator=g, device=device)
    counts = torch.bincount(members, minlength=k)
    per = int(counts.max())
    zk = torch.zeros(k, per, latent_dim, device=device)
    slot = torch.zeros(n, dtype=torch.long, device=device)
    order = torch.argsort(members, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot[order] = torch.arange(n, device=device) - starts[members[order]]
    zk[members, slot] = z
    out = generate(zk)
    return out[members, slot]
