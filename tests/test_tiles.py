"""Point masses and tiles: the k-medoids half of k-GAN training."""

import torch

from kgan_core.tiles import (
    Tiles,
    assign_balanced,
    assign_voronoi,
    descend,
    kmeans,
    kmeans_plus_plus,
    medoid,
    split_empty_tiles,
    squared_distances,
    tiling_cost,
)


def blobs(n_per: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    x = centres.repeat_interleave(n_per, 0) + 0.1 * torch.randn(4 * n_per, 2, generator=g)
    return x, centres


def test_voronoi_assignment_equals_brute_force_argmin():
    g = torch.Generator().manual_seed(1)
    x, masses = torch.randn(300, 7, generator=g), torch.randn(6, 7, generator=g)
    brute = torch.tensor([min(range(6), key=lambda j, xi=xi: float(((xi - masses[j]) ** 2).sum()))
                          for xi in x])
    assert torch.equal(assign_voronoi(x, masses), brute)


def test_squared_distances_match_cdist_in_chunks():
    g = torch.Generator().manual_seed(2)
    x, c = torch.randn(1000, 5, generator=g), torch.randn(9, 5, generator=g)
    assert torch.allclose(squared_distances(x, c, chunk=64), torch.cdist(x, c) ** 2, atol=1e-4)


def test_kmeans_plus_plus_is_deterministic_and_picks_data_points():
    x, _ = blobs()
    a = kmeans_plus_plus(x, 4, torch.Generator().manual_seed(3))
    b = kmeans_plus_plus(x, 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert all(any(torch.equal(c, xi) for xi in x) for c in a)


def test_kmeans_finds_one_centre_per_blob():
    x, centres = blobs()
    found = kmeans(x, 4, torch.Generator().manual_seed(0))
    assert torch.cdist(centres, found).min(1).values.max() < 0.1


def test_descend_takes_only_the_moves_that_lower_the_tiling_cost():
    x, centres = blobs()
    start = centres + 0.5  # every mass off its blob's centre by (0.5, 0.5)
    proposed = start.clone()
    proposed[0] = centres[0]  # a good move: onto its blob
    proposed[2] = torch.tensor([2.5, 2.5])  # a bad move: between the blobs
    moved, changes = descend(x, start, proposed)
    assert torch.equal(moved[0], centres[0]) and torch.equal(moved[2], start[2])
    assert changes[0] < 0 < changes[2]
    assert tiling_cost(x, moved) < tiling_cost(x, start)
    # From a k-means optimum no move can help, so nothing moves.
    best = kmeans(x, 4, torch.Generator().manual_seed(0))
    kept, _ = descend(x, best, best + torch.randn(4, 2, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(kept, best)


def test_balanced_tiles_differ_by_at_most_one_point():
    g = torch.Generator().manual_seed(4)
    # Unequal blobs: a Voronoi tiling would give 150/30/20 points.
    x = torch.cat([torch.randn(150, 2, generator=g), torch.randn(30, 2, generator=g) + 6,
                   torch.randn(21, 2, generator=g) - 6])
    masses = torch.tensor([[0.0, 0.0], [6.0, 6.0], [-6.0, -6.0]])
    sizes = torch.bincount(assign_balanced(x, masses), minlength=3)
    assert int(sizes.sum()) == 201
    assert int(sizes.max() - sizes.min()) <= 1


def test_balanced_tiles_keep_points_near_their_mass_when_already_balanced():
    x, centres = blobs()
    assignment = assign_balanced(x, centres)
    assert torch.equal(assignment, assign_voronoi(x, centres))


def test_medoid_mean_and_true_medoid():
    samples = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
    assert torch.allclose(medoid(samples, "mean"), torch.tensor([2.75, 2.75]))
    # The true medoid is a sample, the one with least total squared distance to the others.
    assert torch.equal(medoid(samples, "sample"), torch.tensor([1.0, 0.0])) or torch.equal(
        medoid(samples, "sample"), torch.tensor([0.0, 1.0]))


def test_empty_tile_is_reseeded_by_splitting_the_largest():
    x, _ = blobs()
    # Member 2's mass is far from all data: its tile is empty.
    masses = torch.tensor([[0.0, 0.0], [5.0, 2.5], [100.0, 100.0]])
    assignment = assign_voronoi(x, masses)
    assert int((assignment == 2).sum()) == 0
    new_masses, events = split_empty_tiles(x, masses, assignment, torch.Generator().manual_seed(0))
    sizes = torch.bincount(assign_voronoi(x, new_masses), minlength=3)
    assert (sizes > 0).all()
    assert len(events) == 1 and "member 2" in events[0]


def test_tiles_sample_rows_only_from_each_members_tile():
    x, centres = blobs()
    assignment = assign_voronoi(x, centres)
    tiles = Tiles.from_assignment(assignment, 4)
    rows = tiles.sample_rows(500, torch.Generator().manual_seed(0))
    assert rows.shape == (4, 500)
    for j in range(4):
        assert (assignment[rows[j]] == j).all()
    assert tiles.shares == [0.25] * 4


def test_shared_tiles_let_every_member_see_all_data():
    tiles = Tiles.shared(10, 3, torch.device("cpu"))
    rows = tiles.sample_rows(1000, torch.Generator().manual_seed(0))
    assert set(rows[2].tolist()) == set(range(10))
    assert tiles.shares == [1 / 3] * 3
