"""Built-in datasets: the 2-D mixtures of DESIGN §5, MNIST-format IDX files, LFW."""

from __future__ import annotations

import gzip
import math
import socket
from pathlib import Path

import numpy as np
import torch

from kgan_core.data.dataset import Dataset, DatasetError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def mixture(name: str, n: int, seed: int) -> Dataset:
    """ring8: 8 Gaussians on a circle of radius 2, σ=0.02; grid25: 5×5 at {−4..4}², σ=0.05."""
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


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: its header is incomplete")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(f"{path} is truncated or corrupt: expected {expected} data bytes for shape {shape}, "
                           f"found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*-images-idx3-ubyte*"))


def idx_folder(folder: Path, name: str) -> Dataset:
    """Every (images, labels) IDX pair in the folder: train first, then t10k."""
    images, labels = [], []
    for split in ("train", "t10k"):
        img = find_idx(folder, f"{split}-images-idx3-ubyte")
        if img is None:
            continue
        lab = find_idx(folder, f"{split}-labels-idx1-ubyte")
        x = read_idx(img)
        if x.ndim != 3:
            raise DatasetError(f"{img} holds an array of shape {x.shape}; expected (N, H, W) images")
        images.append(torch.from_numpy(x.astype(np.uint8, copy=True))[:, None])
        if lab is not None:
            y = read_idx(lab)
            if y.shape != (x.shape[0],):
                raise DatasetError(f"{lab} has {y.shape[0] if y.ndim else 0} labels for {x.shape[0]} images in {img}")
            labels.append(torch.from_numpy(y.astype(np.int64)))
    if not images:
        raise DatasetError(f"no IDX image files in {folder}: expected e.g. t10k-images-idx3-ubyte.gz and "
                           "t10k-labels-idx1-ubyte.gz (or the train-… pair)")
    y_all = torch.cat(labels) if len(labels) == len(images) else None
    return Dataset(name, torch.cat(images), y_all, "images")


def network_reachable(host: str, timeout: float = 2.0) -> bool:
    """Cheap check before a download, so an offline machine fails in seconds, not minutes."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def fashion_mnist(root: Path) -> Dataset:
    folder = root / "fashion-mnist"
    for candidate in (folder, root, root / "FashionMNIST" / "raw"):
        if has_idx(candidate):
            return idx_folder(candidate, "fashion-mnist")
    if network_reachable("github.com"):
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
            return idx_folder(root / "FashionMNIST" / "raw", "fashion-mnist")
        except Exception as exc:  # any download failure becomes the same actionable message
            raise DatasetError(f"could not download fashion-mnist into {root}: {exc}. {fashion_help(folder)}") from exc
    raise DatasetError(f"fashion-mnist is not in {folder} and the network is unreachable. {fashion_help(folder)}")


def fashion_help(folder: Path) -> str:
    return (f"Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
            f"t10k-labels-idx1-ubyte.gz from Zalando's Fashion-MNIST release in {folder}")


def lfw(root: Path, image_size: int | None = None) -> Dataset:
    """Deep-funnelled LFW via torchvision, from the cache folder or downloaded into it."""
    from torchvision.datasets import LFWPeople

    folder = root / "lfw-py"
    help_text = (f"Put lfw-deepfunneled.tgz (and lfw-names.txt, peopleDevTrain.txt, peopleDevTest.txt) from "
                 f"the LFW site in {folder}, or run once with network access")
    if not (folder / "lfw-deepfunneled").is_dir() and not network_reachable("vis-www.cs.umass.edu"):
        raise DatasetError(f"lfw is not in {folder} and the network is unreachable. {help_text}")
    try:
        people = LFWPeople(str(root), split="10fold", image_set="deepfunneled", download=True)
    except Exception as exc:  # torchvision raises several types for missing/corrupt files
        raise DatasetError(f"could not load lfw from {folder}: {exc}. {help_text}") from exc
    # Resize while decoding: 13,000 full-size 250×250 RGB faces would need 2.5 GB first.
    size = (image_size, image_size) if image_size else None
    images = [np.asarray(_fit(people[i][0].convert("RGB"), size)) for i in range(len(people))]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return Dataset("lfw", x, torch.tensor(people.targets, dtype=torch.long), "images")


def lfw_subset() -> Dataset:
    """The 200 25×25 grey LFW crops shipped with scikit-image (offline)."""
    from skimage.data import lfw_subset as skimage_lfw

    faces = skimage_lfw()  # float in [0, 1], (200, 25, 25)
    x = torch.from_numpy(np.round(faces * 255).astype(np.uint8))[:, None]
    return Dataset("lfw-subset", x.contiguous(), None, "images")


def _fit(image, size):
    from PIL import Image

    return image if size is None or image.size == size else image.resize(size, Image.Resampling.LANCZOS)
