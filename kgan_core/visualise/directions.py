"""Principal directions (GANSpace, Härkönen et al. 2020) of one member's generator.

PCA of the generator's first-layer activations over many z; each principal component is
carried back to a direction in z by linear regression of z on the PCA coordinates (as
GANSpace does for z-input generators), normalised to unit length so one step is one σ of z.
Rows traverse the top components, then random unit directions as the control; each row
reports the image change per unit step, averaged over several base z.
"""

from __future__ import annotations

import torch

from kgan_core.render import labelled_grid
from kgan_core.visualise.base import (
    Visualisation,
    bounded_float,
    bounded_int,
    change_per_unit,
    generate,
    member_generator,
    require_images,
    require_member,
    rounded,
    seeded,
    title_for,
)


def first_layer(generator, z: torch.Tensor) -> torch.Tensor:
    """(N, latent) -> (N, F) activations of the generator's first layer: its linear projection
    followed by its normalisation and ReLU, as GANSpace reads a layer's output (before the
    non-linearity the PCA would only recover the projection's singular vectors)."""
    with torch.no_grad():
        if hasattr(generator, "project"):  # conv generators: project -> feature map -> norm -> ReLU
            n = z.shape[0]
            h = generator.project(z[None])[0].reshape(n, generator.widths[0], generator.base, generator.base)
            return torch.relu(generator.project_norm(h)).flatten(1)
        return torch.relu(generator.layers[0](z[None])[0])


def principal_directions_of(generator, latent_dim: int, count: int, seed: int,
                            n_samples: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, latent) unit directions in z and the explained-variance ratio of each component."""
    z = torch.randn(n_samples, latent_dim, generator=seeded(seed + 104729))
    h = first_layer(generator, z)
    centred = h - h.mean(0)
    vt = top_components(centred, count, seeded(seed + 2))
    coords = centred @ vt.T  # (N, count)
    u = torch.linalg.lstsq(coords, z - z.mean(0)).solution  # (count, latent): z ≈ coords @ u
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return u, coords.pow(2).sum(0) / centred.pow(2).sum()


def top_components(x: torch.Tensor, count: int, generator: torch.Generator, power: int = 4) -> torch.Tensor:
    """(count, F) top right singular vectors of x (N, F) by seeded randomised SVD (Halko et al.):
    a full SVD of 2000 x 2048 activations takes seconds on a CPU, this a fraction of one."""
    q = min(count + 16, *x.shape)
    basis = torch.linalg.qr(x @ torch.randn(x.shape[1], q, generator=generator)).Q
    for _ in range(power):
        basis = torch.linalg.qr(x @ (x.T @ basis)).Q
    _, _, vt = torch.linalg.svd(basis.T @ x, full_matrices=False)
    return vt[:count]


def principal_directions(run, member: int | None = None, *, seed: int = 0, components: int = 5, random: int = 3,
                         steps: int = 7, span: float = 3.0, n_base: int = 8) -> Visualisation:
    require_images(run, "principal-directions")
    member = run.check_member(require_member(member, "principal-directions", run.k))
    components = bounded_int("components", components, 1, 16)
    random = bounded_int("random", random, 1, 16)
    steps = bounded_int("steps", steps, 3, 15)
    span = bounded_float("span", span, 0.1, 10.0)
    n_base = bounded_int("n_base", n_base, 1, 64)
    gen = member_generator(run, member)
    d_latent = run.spec.latent_dim
    pcs, explained = principal_directions_of(gen, d_latent, components, seed)
    rand = torch.randn(random, d_latent, generator=seeded(seed + 15485863))
    rand = rand / rand.norm(dim=1, keepdim=True)
    directions = torch.cat([pcs, rand])  # (R, latent)
    offsets = torch.linspace(-span, span, steps)
    base = torch.cat([run.latent(1, seed).cpu(), torch.randn(n_base - 1, d_latent, generator=seeded(seed + 1))])
    z = base[:, None, None, :] + offsets[None, None, :, None] * directions[None, :, None, :]  # (B, R, S, latent)
    images = generate(gen, z)
    per_unit = change_per_unit(images, offsets).mean(0)  # (R,)
    pc_change, rand_change = per_unit[:components], per_unit[components:]
    numbers = {
        "offsets": rounded(offsets), "n_base": n_base,
        "principal": [rounded({"component": i, "explained_variance": float(explained[i]),
                               "change_per_unit": float(pc_change[i])}) for i in range(components)],
        "random": [rounded({"change_per_unit": float(v)}) for v in rand_change],
        "mean_change_principal": rounded(float(pc_change.mean())),
        "mean_change_random": rounded(float(rand_change.mean())),
        "principal_over_random": rounded(float(pc_change.mean() / rand_change.mean().clamp_min(1e-12))),
    }
    title = title_for(run, "principal directions", member, seed,
                      f"PCA of the first layer vs random; columns -{span:g}..{span:g} sd")
    rows = [f"PC{i + 1} ({100 * float(explained[i]):.0f}%)  change/sd {float(pc_change[i]):.3f}"
            for i in range(components)]
    rows += [f"random {i + 1}  change/sd {float(v):.3f}" for i, v in enumerate(rand_change)]
    image = labelled_grid(images[0], row_labels=rows, col_labels=[f"{v:+.1f} sd" for v in offsets.tolist()],
                          title=title)
    return Visualisation("principal-directions", member, seed, title, image, numbers)
