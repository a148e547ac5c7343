"""How good a prior is, measured outside the prior.

- Reconstruction: SSIM and PSNR of G_prior(E(x)) against held-out x (an autoencoder's
  number: PCA gets close, so it says nothing about whether the prior is a prior).
- Realism, from the independent judge (``kgan_core.judge``), never from the prior's own
  encoder (which rated an all-black image as close to the digits as real digits are): an
  image is *data-like* when its judge features fall inside the real images' k-NN manifold
  (Kynkäänniemi et al. 2019), nearer some real image than an all-black or all-white one, and,
  for labelled data, the judge names a class with confidence ≥ 0.9. Each condition rejects a
  control the others let through on MNIST: the manifold alone admits blank images (a
  classifier's features put them beside the thinnest 1s) and the data's mean image, the
  confidence alone admits noise. The share of random codes that decode to data-like images is
  what makes a prior a prior; a PCA decoder sampled from the same kind of region is its baseline.
"""

from __future__ import annotations

import torch

from kgan_core.prior.region import CodeRegion

MANIFOLD_K = 3  # neighbours that set each real image's ball (Kynkäänniemi et al. use 3)
MIN_CONFIDENCE = 0.9  # a labelled judge must give the winning class at least this probability


def ssim_psnr(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean SSIM and PSNR of uint8 renderings of model-range images (N, C, H, W)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from kgan_core.render import to_uint8

    a, b = to_uint8(x).numpy(), to_uint8(y).numpy()
    ssim = [structural_similarity(p, q, channel_axis=0, data_range=255) for p, q in zip(a, b, strict=True)]
    mse = float(((a.astype("float64") - b.astype("float64")) ** 2).mean())
    psnr = float("inf") if mse == 0 else float(peak_signal_noise_ratio(a, b, data_range=255))
    return float(sum(ssim) / len(ssim)), psnr


def code_psnr_ssim(prior, images: torch.Tensor) -> tuple[float, float]:
    """(PSNR, SSIM) of decode(encode(x)) against x for model-range images (N, C, H, W)."""
    with torch.no_grad():
        rec = prior.decode(prior.encode(images))
    ssim, psnr = ssim_psnr(rec, images)
    return psnr, ssim


class PCADecoder:
    """The linear baseline: codes are the data's top principal components, decoded linearly.

    It offers what a Prior offers for comparison (encode, decode, a code region, random images),
    so both are sampled the same way: per dimension from the codes' spread, moved into the region.
    """

    def __init__(self, images: torch.Tensor, components: int = 128):
        flat = images.flatten(1).double()
        self.item_shape = tuple(images.shape[1:])
        self.mean = flat.mean(0)
        _, _, vh = torch.linalg.svd(flat - self.mean, full_matrices=False)
        self.components = vh[: min(components, vh.shape[0])]
        self.region = CodeRegion.of(self.encode(images))

    @property
    def code_dim(self) -> int:
        return self.components.shape[0]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.flatten(1).double() - self.mean) @ self.components.T).float()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        flat = self.mean + codes.double() @ self.components
        return flat.clamp(-1, 1).float().reshape(-1, *self.item_shape)

    def random_images(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.decode(self.region.sample(n, generator))


class JudgeRealism:
    """Realism of images in the independent judge's terms, against a set of real images.

    ``data_like``: inside the real k-NN manifold, not ``blank_like`` and, for a labelled judge,
    confidently classified — the realism criterion. ``blank_like``: nearer an all-black or
    all-white image than any real image, in judge features. ``nn_ratio``: distance to the
    nearest real image in judge features over the median real-to-real nearest-neighbour
    distance (about 1 for real images); reported, but no criterion alone: an all-black image
    sits nearer some real digit in an MNIST classifier's features than real digits sit to one
    another (0.93 vs 1.01 at 32 px).
    Real features and radii are computed once.
    """

    def __init__(self, judge, real: torch.Tensor, k: int = MANIFOLD_K):
        self.judge = judge
        self.real = judge.features(real).double()
        d = torch.cdist(self.real, self.real)
        d.fill_diagonal_(float("inf"))
        self.scale = float(d.min(1).values.median().clamp_min(1e-12))
        self.radii = d.kthvalue(min(k, len(self.real) - 1), dim=1).values
        # The half of the balls with the smallest radii (Kynkäänniemi et al.'s pruning for their
        # realism score): outliers' wide balls take in the data's blurred mean image at 28 px.
        self.core = self.radii <= self.radii.median()

    def _distances(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cdist(self.judge.features(images).double(), self.real)

    def blank_like(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) bool: nearer (judge features) to an all-black or all-white image than to any real image."""
        blanks = torch.stack([torch.full(images.shape[1:], -1.0), torch.full(images.shape[1:], 1.0)])
        feats = self.judge.features(images).double()
        to_blank = torch.cdist(feats, self.judge.features(blanks).double()).min(1).values
        return to_blank < torch.cdist(feats, self.real).min(1).values

    def inside(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) bool: inside some real image's k-NN ball (the real manifold)."""
        return (self._distances(images) <= self.radii[None]).any(1)

    def inside_core(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) bool: inside the ball of a real image whose radius is at most the median (the dense
        part of the manifold); real images score about one half, a blur or a blank none."""
        return (self._distances(images)[:, self.core] <= self.radii[self.core][None]).any(1)

    def nn_ratio(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) nearest-real distance in judge features, in units of real-to-real distances."""
        return self._distances(images).min(1).values / self.scale

    def confidence(self, images: torch.Tensor) -> torch.Tensor | None:
        """(N,) the judge's winning class probability; None for a judge of unlabelled data."""
        if not self.judge.labelled:
            return None
        return self.judge.predict_proba(images).max(1).values

    def data_like(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) bool: inside the real manifold, not blank-like, and (labelled judge) confidently one class."""
        like = self.inside(images) & ~self.blank_like(images)
        confidence = self.confidence(images)
        return like if confidence is None else like & (confidence >= MIN_CONFIDENCE)

    def summary(self, images: torch.Tensor) -> dict[str, float]:
        """Shares data-like, inside the manifold, blank-like and (labelled judge) confident; the
        median NN ratio and confidence — each condition apart, so a table shows which rejects what."""
        share = lambda flags: float(flags.double().mean())  # noqa: E731
        out = {"data_like_share": share(self.data_like(images)), "inside_share": share(self.inside(images)),
               "inside_core_share": share(self.inside_core(images)),
               "blank_like_share": share(self.blank_like(images)),
               "median_nn_ratio": float(self.nn_ratio(images).median())}
        confidence = self.confidence(images)
        if confidence is not None:
            out["confident_share"] = share(confidence >= MIN_CONFIDENCE)
            out["median_confidence"] = float(confidence.median())
        return out
