"""Point masses and the tiles they cut the data into (docs/architecture.md §3).

All functions take the data flattened to ``(N, F)`` float tensors on the training device
and work on whole tensors; nothing loops over data points in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def squared_distances(x: torch.Tensor, centres: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """||x_i - c_j||² for every pair, (N, F) × (k, F) -> (N, k), in chunks to bound memory."""
    c_norm = (centres * centres).sum(1)
    out = []
    for start in range(0, x.shape[0], chunk):
        xs = x[start:start + chunk]
        d = (xs * xs).sum(1, keepdim=True) - 2.0 * xs @ centres.T + c_norm
        out.append(d.clamp_min_(0.0))
    return torch.cat(out)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability ∝ D(x)² (Arthur & Vassilvitskii)."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device=x.device)
    centres = [x[first[0]]]
    closest = squared_distances(x, centres[0][None])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        # When every point coincides with a centre, any point will do.
        probs = torch.ones_like(closest) if total <= 0 else closest / total
        idx = torch.multinomial(probs, 1, generator=generator)[0]
        centres.append(x[idx])
        closest = torch.minimum(closest, squared_distances(x, x[idx][None])[:, 0])
    return torch.stack(centres)


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, restarts: int = 4,
           iterations: int = 25) -> torch.Tensor:
    """k-means++ seeding refined by Lloyd iterations; the best of ``restarts`` by inertia.

    Restarts matter: a single k-means++ draw on 25 well-separated modes leaves two centres
    in one mode often enough to cost a member its mode.
    """
    best, best_inertia = None, float("inf")
    for _ in range(restarts):
        centres = kmeans_plus_plus(x, k, generator)
        for _ in range(iterations):
            assignment = squared_distances(x, centres).argmin(1)
            new = centres.clone()
            sums = torch.zeros_like(centres).index_add_(0, assignment, x)
            counts = torch.bincount(assignment, minlength=k)
            filled = counts > 0
            new[filled] = sums[filled] / counts[filled, None].to(x.dtype)
            if torch.equal(new, centres):
                break
            centres = new
        inertia = squared_distances(x, centres).min(1).values.sum().item()
        if inertia < best_inertia:
            best, best_inertia = centres, inertia
    assert best is not None
    return best


def tiling_cost(x: torch.Tensor, masses: torch.Tensor) -> float:
    """Σ_i min_j ||x_i - m_j||²: what Voronoi tiles minimise for fixed masses (k-means' inertia)."""
    return squared_distances(x, masses).min(1).values.sum().item()


def descend(x: torch.Tensor, masses: torch.Tensor, proposed: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """Take each proposed move m_j -> p_j only where it lowers the tiling cost (k-medoids' rule).

    Members are tried in order, each against the masses as they stand after the earlier
    moves, so the cost never rises. Returns the new masses and, per member, the relative
    change in cost its move would have made (negative: taken).
    """
    d = squared_distances(x, masses)
    d_new = squared_distances(x, proposed)
    cost = d.min(1).values.sum()
    masses, changes = masses.clone(), []
    for j in range(masses.shape[0]):
        trial = d.clone()
        trial[:, j] = d_new[:, j]
        trial_cost = trial.min(1).values.sum()
        changes.append((trial_cost / cost - 1.0).item() if cost > 0 else 0.0)
        if trial_cost < cost:
            d, cost, masses[j] = trial, trial_cost, proposed[j]
    return masses, changes


def assign_voronoi(x: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Tile of each point: argmin_j ||x - m_j||² (ties go to the lower index)."""
    return squared_distances(x, masses).argmin(1)


def balanced_capacities(n: int, k: int, preference: torch.Tensor) -> torch.Tensor:
    """Tile sizes n//k or n//k + 1 summing to n; the +1s go to the most wanted tiles."""
    caps = torch.full((k,), n // k, dtype=torch.long, device=preference.device)
    extra = n - int(caps.sum())
    if extra:
        caps[torch.argsort(preference, descending=True, stable=True)[:extra]] += 1
    return caps


def assign_balanced(x: torch.Tensor, masses: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """Equal-mass tiles: semi-discrete optimal transport onto k equal point masses.

    The Laguerre cells argmin_j ||x - m_j||² - w_j with weights w found by dual (sub)gradient
    ascent get within a few points of equal sizes; a final capacity-constrained pass makes
    the sizes differ by at most one, moving the points that lose least by moving.
    """
    n, k = x.shape[0], masses.shape[0]
    cost = squared_distances(x, masses)
    scale = cost.mean().clamp_min(1e-12)
    weights = torch.zeros(k, device=x.device, dtype=x.dtype)
    target = n / k
    for t in range(iterations):
        counts = torch.bincount((cost - weights).argmin(1), minlength=k).to(x.dtype)
        if (counts - target).abs().max() <= 1:
            break
        # Raise the weight of under-full cells: the dual gradient is (target - count) / n.
        weights += scale * (target - counts) / n * (2.0 / (1.0 + t) ** 0.5)
    return _fill_to_capacity(cost - weights, balanced_capacities(n, k, -weights))


def _fill_to_capacity(cost: torch.Tensor, capacity: torch.Tensor) -> torch.Tensor:
    n, k = cost.shape
    assignment = torch.full((n,), -1, dtype=torch.long, device=cost.device)
    full = torch.zeros(k, dtype=torch.bool, device=cost.device)
    filled = torch.zeros(k, dtype=torch.long, device=cost.device)
    inf = torch.tensor(float("inf"), dtype=cost.dtype, device=cost.device)
    while True:
        pending = (assignment < 0).nonzero().squeeze(1)
        if pending.numel() == 0:
            return assignment
        c = torch.where(full, inf, cost[pending])
        two = c.topk(min(2, int((~full).sum())), dim=1, largest=False)
        best = two.indices[:, 0]
        regret = two.values[:, 1] - two.values[:, 0] if two.values.shape[1] > 1 else two.values[:, 0]
        for j in torch.unique(best).tolist():
            wanting = pending[best == j]
            room = int(capacity[j] - filled[j])
            if wanting.numel() > room:
                # Keep the points that would lose most by going elsewhere.
                keep = torch.argsort(regret[best == j], descending=True, stable=True)[:room]
                wanting = wanting[keep]
            assignment[wanting] = j
            filled[j] += wanting.numel()
            full[j] = filled[j] >= capacity[j]


def split_empty_tiles(x: torch.Tensor, masses: torch.Tensor, assignment: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """Give every member with an empty tile half of the largest tile.

    The empty member's point mass moves to a point of the largest tile drawn with
    probability ∝ its squared distance from that tile's mass (a k-means++ step inside the
    tile), so the largest tile splits along its widest direction. Returns the new masses
    and one message per re-seeded member for the training log.
    """
    masses = masses.clone()
    events = []
    k = masses.shape[0]
    for _ in range(k):
        counts = torch.bincount(assignment, minlength=k)
        empty = (counts == 0).nonzero().squeeze(1)
        if empty.numel() == 0:
            break
        j = int(empty[0])
        largest = int(counts.argmax())
        members = (assignment == largest).nonzero().squeeze(1)
        d = squared_distances(x[members], masses[largest][None])[:, 0]
        probs = d / d.sum() if d.sum() > 0 else torch.ones_like(d) / d.numel()
        pick = members[torch.multinomial(probs, 1, generator=generator)[0]]
        masses[j] = x[pick]
        assignment = assign_voronoi(x, masses)
        events.append(f"member {j} had an empty tile: re-seeded by splitting member {largest}'s "
                      f"tile of {int(counts[largest])} points")
    return masses, events


def medoid(samples: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Centre of one generator's samples (flattened, (n, F)).

    ``mean``: the mean image (what the thesis calls the medoid). ``sample``: the true
    medoid, the sample with the least total squared distance to all the others.
    """
    if how == "mean":
        return samples.mean(0)
    if how == "sample":
        return samples[squared_distances(samples, samples).sum(1).argmin()]
    raise ValueError(f"unknown medoid {how!r}; use 'mean' or 'sample'")


@dataclass
class Tiles:
    """Which data rows each member trains on, as index tensors for on-device gathering.

    Member j's rows are ``order[starts[j] : starts[j] + sizes[j]]``.
    """

    assignment: torch.Tensor  # (N,) tile of each row; for assignment="none", all zeros
    order: torch.Tensor       # (N,) rows sorted by tile
    starts: torch.Tensor      # (k,)
    sizes: torch.Tensor       # (k,)

    @classmethod
    def from_assignment(cls, assignment: torch.Tensor, k: int) -> Tiles:
        order = torch.argsort(assignment, stable=True)
        sizes = torch.bincount(assignment, minlength=k)
        starts = torch.cumsum(sizes, 0) - sizes
        return cls(assignment, order, starts, sizes)

    @classmethod
    def shared(cls, n: int, k: int, device: torch.device) -> Tiles:
        """Every member sees all the data (the thesis' k-independent-GANs baseline)."""
        zeros = torch.zeros(k, dtype=torch.long, device=device)
        return cls(torch.zeros(n, dtype=torch.long, device=device), torch.arange(n, device=device),
                   zeros, torch.full((k,), n, dtype=torch.long, device=device))

    def sample_rows(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(k, batch) row indices, each member's drawn uniformly (with replacement) from its tile."""
        k = self.sizes.shape[0]
        u = torch.rand(k, batch, generator=generator, device=self.order.device)
        offsets = (u * self.sizes[:, None]).long().clamp_max_(self.sizes[:, None] - 1)
        return self.order[self.starts[:, None] + offsets]

    @property
    def shares(self) -> list[float]:
        # With assignment="none" every size is N, so shares come out equal, as they should.
        total = int(self.sizes.sum())
        return [int(s) / total for s in self.sizes]
