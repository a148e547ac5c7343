"""The built-in datasets: the 2-D mixtures (ring8, grid25), MNIST, Stacked MNIST, Fashion-MNIST and LFW.

Built-ins that need files look for them under ``root`` (see each function for the
folders tried) and say exactly which files to put where when they are missing. MNIST's
10,000 test digits ship inside this package (``bundled/mnist``, CC BY-SA 3.0), so ``mnist``
works on a fresh clone with no download; a root holding the full set takes precedence.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from kgan_core.data.arrays import to_uint8
from kgan_core.data.catalogue import BUILTINS
from kgan_core.data.dataset import Dataset, DatasetError
from kgan_core.data.files import image_collection
from kgan_core.data.idx import has_idx, idx_folder
from kgan_core.data.network import reachable

MIXTURES = tuple(d.name for d in BUILTINS.values() if d.points)
# The t10k IDX pair, shipped with the package: a fresh clone (or the Docker image) has MNIST.
BUNDLED_MNIST = Path(__file__).resolve().parent / "bundled" / "mnist"
DIGITS = tuple(str(d) for d in range(10))
# Stacked MNIST's modes: one per (red, green, blue) digit triple, named by the three digits.
STACKED_MNIST_MODES = tuple(f"{m:03d}" for m in range(1000))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
# torchvision's (pinned) download mirror, probed before the slow torchvision import.
FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
IDX_FILES = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
             "t10k-labels-idx1-ubyte.gz (or just the t10k pair; unpacked files work too)")


def mixture(name: str, n: int, seed: int) -> Dataset:
    """ring8: 8 Gaussians on a circle of radius 2 at angles 2πi/8, σ=0.02; grid25: 5×5 at {−4,−2,0,2,4}², σ=0.05.

    Equal mixture weights; labels are each sample's mode; the same seed gives the same points.
    """
    if name == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        centres, sigma = torch.stack([2 * torch.cos(angles), 2 * torch.sin(angles)], 1).float(), 0.02
    else:
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        centres, sigma = torch.cartesian_prod(axis, axis), 0.05
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(centres), (n,), generator=g)
    x = centres[labels] + sigma * torch.randn(n, 2, generator=g)
    return Dataset(name, x, labels, "points", centres, sigma)


def available_offline(name: str, root: Path) -> bool:
    """Whether built-in ``name`` loads from ``root`` (or needs no files) without any download."""
    entry = BUILTINS.get(name)
    if entry is None or entry.files is None:  # unknown, or generated / shipped with the software
        return entry is not None
    finders = {"mnist": mnist_folder, "fashion-mnist": _fashion_folder, "lfw": _lfw_source}
    return finders[name](root) is not None


def mnist_folder(root: Path) -> Path | None:
    """Where MNIST's IDX files are found for ``root`` (the bundled test digits last), or None."""
    return next((f for f in (root / "mnist", root / "MNIST" / "raw", root, BUNDLED_MNIST) if has_idx(f)), None)


def _fashion_folder(root: Path) -> Path | None:
    return next((f for f in (root / "fashion-mnist", root / "FashionMNIST" / "raw", root) if has_idx(f)), None)


def _lfw_source(root: Path) -> Path | None:
    places = [root / "lfw-deepfunneled", root / "lfw-py" / "lfw-deepfunneled"]
    places += [p.with_name(p.name + ".tgz") for p in places]
    return next((p for p in places if p.is_dir() or p.is_file()), None)


def mnist(root: Path) -> Dataset:
    """MNIST's IDX files from root/mnist, root/MNIST/raw (torchvision's layout) or root itself, else the
    10,000 test digits bundled with the package."""
    folder = mnist_folder(root)
    if folder is not None:
        return idx_folder(folder, "mnist", DIGITS)
    raise DatasetError(f"mnist needs its IDX files in {root / 'mnist'} or {root}: {IDX_FILES}, from "
                       "http://yann.lecun.com/exdb/mnist/ or a mirror; or pass the folder holding them as root")


def stacked_mnist(root: Path, n: int, seed: int) -> Dataset:
    """Stacked MNIST (Metz et al. 2017, "Unrolled GANs"): n RGB 28×28 images whose red, green and
    blue channels are three MNIST digits drawn independently and uniformly (with replacement).

    The digits are ``mnist(root)``'s (the bundled 10,000 test digits when root has no MNIST).
    Label = 100·d_R + 10·d_G + d_B, one of 1,000 equally likely modes (class names "000".."999").
    The same digits, n and seed give the same images.
    """
    return stack_digits(mnist(root), n, seed)


def stack_digits(digits: Dataset, n: int, seed: int) -> Dataset:
    """n Stacked MNIST images from these single-channel labelled digits (see stacked_mnist)."""
    rows = torch.randint(digits.n, (n, 3), generator=torch.Generator().manual_seed(seed))
    triples = digits.labels[rows]
    labels = 100 * triples[:, 0] + 10 * triples[:, 1] + triples[:, 2]
    return Dataset("stacked-mnist", digits.x[rows, 0].contiguous(), labels, "images", classes=STACKED_MNIST_MODES)


def fashion_mnist(root: Path) -> Dataset:
    """Fashion-MNIST from root/fashion-mnist, root/FashionMNIST/raw or root; else downloaded by torchvision."""
    local = _fashion_folder(root)
    if local is not None:
        return idx_folder(local, "fashion-mnist", FASHION_CLASSES)
    folder = root / "fashion-mnist"
    help_text = (f"Put Fashion-MNIST's {IDX_FILES} (https://github.com/zalandoresearch/fashion-mnist) in "
                 f"{folder}")
    if not reachable(FASHION_MIRROR):
        raise DatasetError(f"fashion-mnist is not in {folder} and this machine cannot reach {FASHION_MIRROR} to "
                           f"download it. {help_text}")
    from torchvision.datasets import FashionMNIST  # seconds to import: only once a download can work

    try:
        FashionMNIST(str(root), train=False, download=True)  # fetches all four files into root/FashionMNIST/raw
    except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError… for a failed download
        raise DatasetError(f"could not download fashion-mnist into {root} ({exc}). {help_text}") from exc
    return idx_folder(root / "FashionMNIST" / "raw", "fashion-mnist", FASHION_CLASSES)


def lfw(root: Path, *, image_size: int | None, channels: int | None, max_pixels: int,
        limit: int | None) -> Dataset:
    """Deep-funnelled LFW (13,233 RGB 250×250 faces of 5,749 people; label = person) from root.

    Accepts the lfw-deepfunneled/ folder (one sub-folder per person) or lfw-deepfunneled.tgz,
    in root or root/lfw-py (torchvision's layout). torchvision's LFWPeople can no longer
    download LFW and insists on checksummed side files, so the images are read directly.
    Decoding resizes each face at once: 13,233 full-size faces would need 2.5 GB first.
    """
    source = _lfw_source(root)
    if source is not None:
        return image_collection(source, name="lfw", image_size=image_size, channels=channels,
                                max_pixels=max_pixels, limit=limit)
    raise DatasetError(f"lfw is not in {root}: put lfw-deepfunneled.tgz, or the lfw-deepfunneled/ folder it "
                       f"unpacks to (one sub-folder of JPEGs per person), in {root}. It cannot be downloaded "
                       "automatically (torchvision dropped LFW downloads); get it from "
                       "http://vis-www.cs.umass.edu/lfw/ or https://www.kaggle.com/datasets/jessicali9530/lfw-dataset")


def lfw_subset() -> Dataset:
    """scikit-image's 200 grey 25×25 LFW crops, offline: 100 faces (label 0), then 100 non-faces (label 1)."""
    from skimage.data import lfw_subset as skimage_lfw_subset

    crops = skimage_lfw_subset()  # float in [0, 1], (200, 25, 25)
    x = torch.from_numpy(to_uint8(np.asarray(crops), "skimage.data.lfw_subset()"))[:, None]
    labels = torch.cat([torch.zeros(100, dtype=torch.int64), torch.ones(len(crops) - 100, dtype=torch.int64)])
    return Dataset("lfw-subset", x.contiguous(), labels, "images", classes=("face", "non-face"))
