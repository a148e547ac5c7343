"""Principal directions (GANSpace, Härkönen et al. 2020) of one member's generator, against
many random directions.

PCA of the activations of one generator layer over many z. Two ways to move along a
component:
- ``layer=None`` (default): in z. The PCA reads the generator's first normalised layer after
  its ReLU, and each component is carried back to a unit direction in z by linear regression
  of z on the PCA coordinates (as GANSpace does for z-input generators);
- ``layer="<module name>"``: at that layer, as GANSpace edits StyleGAN and BigGAN — a forward
  hook adds offset · σ · v_i to the layer's output, σ the components' mean spread, the same
  distance for every direction (``equal_steps``).

The layer is reached through forward hooks on ``generator.named_modules()``, so any image
generator works, whatever its attribute names. Each direction's effect is the judge-feature
change per σ (``effects``), averaged over several base z; the principal directions are then
ranked among ``random`` (≥ 50 by default) random directions of the same space, each moved by
its own spread (at a layer: directions between random samples' activations, so that the
control stays on the activations' manifold): a percentile, not a ratio to three draws.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_float,
    bounded_int,
    generate,
    member_generator,
    require_images,
    require_member,
    rounded,
    seeded,
    title_for,
)
from kgan_core.visualise.effects import EFFECT_KEY, feature_space, path_effect, percentile, sample_spread
from kgan_core.visualise.errors import LayerNameError


def layer_modules(generator: nn.Module) -> dict[str, nn.Module]:
    """The generator's leaf modules with parameters or buffers, by name, in forward order."""
    return {name: m for name, m in generator.named_modules()
            if name and not list(m.children()) and (list(m.parameters()) or list(m.buffers()))}


def default_layer(generator: nn.Module) -> str:
    """The first normalisation layer (GANSpace's "early layer"), else the first layer."""
    modules = layer_modules(generator)
    for name, m in modules.items():
        if "norm" in type(m).__name__.lower():
            return name
    return next(iter(modules))


def _module(generator: nn.Module, layer: str) -> nn.Module:
    modules = layer_modules(generator)
    if layer not in modules:
        raise LayerNameError(f"the generator has no layer {layer!r}; its layers are {', '.join(modules)}")
    return modules[layer]


def _batch_axis(out: torch.Tensor, n: int) -> int:
    # Member-first stacks give (1, n, ...) for linear layers, grouped (n, 1·C, H, W) for convolutions.
    if out.dim() == 3 and out.shape[0] == 1 and out.shape[1] == n:
        return 1
    if out.shape[0] == n:
        return 0
    raise LayerNameError(f"cannot find the batch of {n} in a layer output of shape {tuple(out.shape)}")


def capture(generator: nn.Module, layer: str, z: torch.Tensor) -> torch.Tensor:
    """(N, latent) -> (N, F): the output of ``layer`` for each z."""
    seen: list[torch.Tensor] = []

    def keep(_module, _inputs, out):
        seen.append(out.detach())

    handle = _module(generator, layer).register_forward_hook(keep)
    try:
        with torch.no_grad():
            generator(z[None])
    finally:
        handle.remove()
    out = seen[0]
    return out.movedim(_batch_axis(out, z.shape[0]), 0).reshape(z.shape[0], -1)


@contextlib.contextmanager
def shifted(generator: nn.Module, layer: str, shift: torch.Tensor, n: int):
    """Inside the block, ``layer``'s output for each of the n images of a batch is moved by ``shift`` (F,)."""

    def add(_module, _inputs, out):
        axis = _batch_axis(out, n)
        moved = out.movedim(axis, 0)
        return (moved + shift.reshape(1, *moved.shape[1:])).movedim(0, axis)

    handle = _module(generator, layer).register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def top_components(x: torch.Tensor, count: int, generator: torch.Generator, power: int = 4) -> torch.Tensor:
    """(count, F) top right singular vectors of x (N, F) by seeded randomised SVD (Halko et al.):
    a full SVD of 2000 x 2048 activations takes seconds on a CPU, this a fraction of one."""
    q = min(count + 16, *x.shape)
    basis = torch.linalg.qr(x @ torch.randn(x.shape[1], q, generator=generator)).Q
    for _ in range(power):
        basis = torch.linalg.qr(x @ (x.T @ basis)).Q
    _, _, vt = torch.linalg.svd(basis.T @ x, full_matrices=False)
    return vt[:count]


def principal_directions_of(generator, latent_dim: int, count: int, seed: int, layer: str | None = None,
                            n_samples: int = 2000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top ``count`` components: (count, D) directions (in z, or at ``layer``), each
    direction's spread over the samples (count,), and explained-variance ratios (count,)."""
    z = torch.randn(n_samples, latent_dim, generator=seeded(seed + 104729))
    h = capture(generator, layer or default_layer(generator), z)
    if layer is None:
        h = torch.relu(h)  # the layer's output as the next layer reads it
    centred = h - h.mean(0)
    vt = top_components(centred, count, seeded(seed + 2))
    coords = centred @ vt.T  # (N, count)
    explained = coords.pow(2).sum(0) / centred.pow(2).sum()
    if layer is not None:
        return vt, coords.std(0), explained
    u = torch.linalg.lstsq(coords, z - z.mean(0)).solution  # (count, latent): z ≈ coords @ u
    return u / u.norm(dim=1, keepdim=True).clamp_min(1e-12), torch.ones(count), explained


def random_directions_at(generator, latent_dim: int, count: int, seed: int, layer: str | None,
                         n_samples: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, D) random unit directions in the same space, and each one's spread.

    In z: isotropic, as z is. At a layer: the direction between two random samples' activations.
    An isotropic direction of a wide layer points off the activations' manifold and, moved by
    its own tiny spread, changes nothing — every principal direction, even an untrained
    generator's, beats such a control, which then says nothing."""
    g = seeded(seed + 15485863)
    if layer is None:
        d = torch.randn(count, latent_dim, generator=g)
        return d / d.norm(dim=1, keepdim=True), torch.ones(count)
    z = torch.randn(n_samples, latent_dim, generator=seeded(seed + 104729))
    h = capture(generator, layer, z)
    pairs = torch.randint(n_samples, (2, count), generator=g)
    d = h[pairs[0]] - h[pairs[1]]
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return d, ((h - h.mean(0)) @ d.T).std(0)


def equal_steps(layer: str | None, pc_spread: torch.Tensor, rand_spread: torch.Tensor):
    """At a layer, every direction is moved by the same distance (the principal components' mean
    spread): moved by its own spread, a principal component — the direction of largest spread by
    definition — travels further than any other, and beats random directions even in an
    untrained generator. In z every direction already has spread 1."""
    if layer is None:
        return pc_spread, rand_spread
    step = pc_spread.mean()
    return torch.full_like(pc_spread, float(step)), torch.full_like(rand_spread, float(step))


def traverse(generator, layer: str | None, base: torch.Tensor, directions: torch.Tensor, spreads: torch.Tensor,
             offsets: torch.Tensor) -> torch.Tensor:
    """Images (B, R, S, C, H, W): base z (B, latent) moved along each direction by offsets · spread."""
    if layer is None:
        z = base[:, None, None, :] + (offsets[None, None, :, None] * spreads[None, :, None, None]
                                      * directions[None, :, None, :])
        return generate(generator, z)
    rows = []
    for direction, spread in zip(directions, spreads, strict=True):
        cols = []
        for offset in offsets:
            with shifted(generator, layer, offset * spread * direction, base.shape[0]):
                cols.append(generate(generator, base))
        rows.append(torch.stack(cols, dim=1))  # (B, S, ...)
    return torch.stack(rows, dim=1)


def principal_directions(run, member: int | None = None, *, seed: int = 0, components: int = 5, random: int = 50,
                         shown_random: int = 3, steps: int = 7, span: float = 3.0, n_base: int = 8,
                         layer: str | None = None, judge: bool | None = None) -> Visualisation:
    require_images(run, "principal-directions")
    member = run.check_member(require_member(member, "principal-directions", run.k))
    components = bounded_int("components", components, 1, 16)
    random = bounded_int("random", random, 1, 500)
    shown_random = bounded_int("shown_random", shown_random, 0, min(random, 16))
    steps = bounded_int("steps", steps, 3, 15)
    span = bounded_float("span", span, 0.1, 10.0)
    n_base = bounded_int("n_base", n_base, 2, 64)
    gen = member_generator(run, member)
    d_latent = run.spec.latent_dim
    if layer is not None:
        _module(gen, layer)
    space = feature_space(run, judge)
    spread = sample_spread(space, gen, d_latent, seed)
    pcs, pc_spread, explained = principal_directions_of(gen, d_latent, components, seed, layer)
    rand, rand_spread = random_directions_at(gen, d_latent, random, seed, layer)
    pc_spread, rand_spread = equal_steps(layer, pc_spread, rand_spread)
    offsets = torch.linspace(-span, span, steps)
    base = torch.cat([run.latent(1, seed).cpu(), torch.randn(n_base - 1, d_latent, generator=seeded(seed + 1))])
    images = traverse(gen, layer, base, torch.cat([pcs, rand]), torch.cat([pc_spread, rand_spread]), offsets)
    effect = path_effect(space, images, offsets, spread).mean(0)  # (R,)
    pc_effect, rand_effect = effect[:components], effect[components:]
    pct = [percentile(float(v), rand_effect) for v in pc_effect]
    top = min(3, components)
    numbers = {
        "offsets": rounded(offsets), "n_base": n_base, "space": space.name, "layer": layer or "z",
        "pca_layer": layer or default_layer(gen), "sample_spread": rounded(spread),
        "principal": [rounded({"component": i, "explained_variance": float(explained[i]),
                               "effect_per_sd": float(pc_effect[i]), "percentile_among_random": pct[i]})
                      for i in range(components)],
        "random": {"count": random, "effect_per_sd": rounded(rand_effect),
                   "percentiles": rounded({str(q): float(torch.quantile(rand_effect, q / 100))
                                           for q in (5, 50, 95)})},
        "mean_effect_principal": rounded(float(pc_effect.mean())),
        "mean_effect_random": rounded(float(rand_effect.mean())),
        "principal_over_random": rounded(float(pc_effect.mean() / rand_effect.mean().clamp_min(1e-12))),
        f"top{top}_above_95th_percentile": all(p >= 95.0 for p in pct[:top]),
    }
    where = f"at {layer}" if layer else f"in z (PCA at {numbers['pca_layer']})"
    title = title_for(run, "principal directions", member, seed,
                      f"{where} vs {random} random; columns -{span:g}..{span:g} sd; {EFFECT_KEY} in {space.name}, "
                      f"over {n_base} base z (the row shows the first); pct: its percentile among the {random} random "
                      "directions' effects")
    # One decimal: at whole percents every component of a flat spectrum printed "2% var".
    rows = [f"PC{i + 1} ({100 * float(explained[i]):.1f}% var)  effect {float(pc_effect[i]):.2f}/sd, "
            f"{pct[i]:.0f}th pct" for i in range(components)]
    rows += [f"random {i + 1}  effect {float(v):.2f}/sd" for i, v in enumerate(rand_effect[:shown_random])]
    grid = images[0, :components + shown_random]
    image = labelled_grid(grid, row_labels=rows, col_labels=[f"{v:+.1f} sd" for v in offsets.tolist()], title=title)
    return Visualisation("principal-directions", member, seed, title, image, numbers, images=grid)
