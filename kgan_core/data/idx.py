"""MNIST's IDX format (also Fashion-MNIST's), parsed with numpy, gzipped or not.

A folder holds up to two (images, labels) pairs, ``train-images-idx3-ubyte`` +
``train-labels-idx1-ubyte`` and ``t10k-…``, each optionally ``.gz``; all present pairs are
used, train first. Labels are used only when every pair has its labels file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from kgan_core.data.dataset import Dataset, DatasetError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLITS = ("train", "t10k")


def read_idx(path: Path) -> np.ndarray:
    """One IDX file as an array; a corrupt or truncated file raises DatasetError naming it."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read {path} ({exc}); replace it with an intact copy") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number); replace it with an intact copy")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its header; replace it with an intact copy")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(f"{path} is truncated or corrupt: shape {shape} needs {expected} data bytes, found "
                           f"{len(raw) - header}; replace it with an intact copy")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    # The unpacked file first: torchvision leaves both, and it is faster to read.
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx(folder: Path) -> bool:
    return folder.is_dir() and any(_find(folder, f"{split}-images-idx3-ubyte") for split in SPLITS)


def is_idx_images_file(path: Path) -> bool:
    return path.is_file() and path.name.removesuffix(".gz").endswith("-images-idx3-ubyte")


def _pair(images: Path, labels: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = read_idx(images)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DatasetError(f"{images} holds {x.dtype} of shape {x.shape}; expected uint8 (N, H, W) images")
    y = None
    if labels is not None:
        raw = read_idx(labels)
        if raw.shape != (x.shape[0],) or not np.issubdtype(raw.dtype, np.integer):
            raise DatasetError(f"{labels} holds {raw.dtype} of shape {raw.shape} but {images} has {x.shape[0]} "
                               "images; expected one integer label per image")
        y = torch.from_numpy(raw.astype(np.int64))
    return torch.from_numpy(x.copy())[:, None], y


def idx_dataset(pairs: list[tuple[Path, Path | None]], name: str,
                classes: tuple[str, ...] | None = None) -> Dataset:
    loaded = [_pair(images, labels) for images, labels in pairs]
    x = torch.cat([p[0] for p in loaded])
    ys = [p[1] for p in loaded]
    y = torch.cat(ys) if all(t is not None for t in ys) else None
    if classes is not None and y is not None and int(y.max()) >= len(classes):
        classes = None  # not the set the caller had in mind; the labels alone stay meaningful
    return Dataset(name, x, y, "images", classes=classes if y is not None else None)


def idx_folder(folder: Path, name: str, classes: tuple[str, ...] | None = None) -> Dataset:
    """Every (images, labels) IDX pair in ``folder``: train first, then t10k."""
    pairs = []
    for split in SPLITS:
        images = _find(folder, f"{split}-images-idx3-ubyte")
        if images is not None:
            pairs.append((images, _find(folder, f"{split}-labels-idx1-ubyte")))
    if not pairs:
        raise DatasetError(f"no IDX image files in {folder}: expected t10k-images-idx3-ubyte(.gz) with "
                           "t10k-labels-idx1-ubyte(.gz), and/or the train-… pair")
    return idx_dataset(pairs, name, classes)


def idx_file(images: Path, classes: tuple[str, ...] | None = None) -> Dataset:
    """One IDX images file, with its labels file beside it when present."""
    stem = images.name.removesuffix(".gz").removesuffix("-images-idx3-ubyte")
    labels = _find(images.parent, f"{stem}-labels-idx1-ubyte")
    return idx_dataset([(images, labels)], images.name, classes)
