"""Datasets as whole tensors (``load_dataset``), from built-in names or the user's files.

Images are stored uint8 (N, C, H, W) and mapped to the model's [-1, 1] per batch with
``Dataset.to_model``; points are float32 (N, D). Everything a user can get wrong raises
``DatasetError`` with a message that names the offending name or file and what to do.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kgan_core.data import builtin
from kgan_core.data.arrays import array_file
from kgan_core.data.catalogue import BUILTIN_NAMES
from kgan_core.data.dataset import Dataset, DatasetError, images_from_model, images_to_model
from kgan_core.data.files import DEFAULT_MAX_PIXELS, image_collection, is_archive
from kgan_core.data.idx import has_idx, idx_file, idx_folder, is_idx_images_file
from kgan_core.data.preprocess import resize, set_channels

__all__ = ["BUILTIN_DATASETS", "DEFAULT_ROOT", "Dataset", "DatasetError", "images_from_model", "images_to_model",
           "load_dataset"]

BUILTIN_DATASETS: tuple[str, ...] = BUILTIN_NAMES  # the catalogue's: one list of built-ins
DEFAULT_ROOT = Path.home() / ".cache" / "kgan" / "datasets"


def load_dataset(spec: str | os.PathLike, *, root: str | os.PathLike | None = None,
                 image_size: int | None = None, channels: int | None = None,
                 n_points: int = 10_000, seed: int = 0, limit: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """Load a built-in dataset by name, or a folder / archive / array file by path.

    spec: one of ``BUILTIN_DATASETS`` (a name wins over a same-named relative path; write
        ``./mnist`` for the folder), or a path to a folder or .zip/.tar/.tar.gz/.tgz of
        images, a .npy/.npz array, a folder of MNIST-style IDX files, or an IDX images file.
    root: where built-ins that need files live or are downloaded to (default ``DEFAULT_ROOT``).
    image_size: centre-crop non-square images to a square and resize to image_size x image_size
        (antialiased). channels: 1 (grey) or 3 (RGB); None keeps the data's own (a collection
        with any colour image becomes RGB). Both are ignored for point data.
    n_points, seed: size and seed of ring8 / grid25 / stacked-mnist (the same seed gives the same items).
    limit: keep the first ``limit`` items (sorted path order for image files).
    max_pixels: refuse any image with more pixels (decompression-bomb guard).
    """
    _check_options(image_size, channels, n_points, limit, max_pixels)
    name = os.fspath(spec) if isinstance(spec, str | os.PathLike) else None
    if not isinstance(name, str) or not name:
        raise DatasetError(f"a dataset is a built-in name ({', '.join(BUILTIN_DATASETS)}) or a path, got {spec!r}")
    root_dir = Path(root).expanduser() if root is not None else DEFAULT_ROOT
    image_options = {"image_size": image_size, "channels": channels, "max_pixels": max_pixels, "limit": limit}
    loader = LOADERS.get(name)
    if loader is not None:
        data = loader(name, root_dir, n_points, seed, image_options)
    else:
        data = _from_path(Path(name).expanduser(), **image_options)
    return _finish(data, image_size=image_size, channels=channels, limit=limit)


# How each built-in of the catalogue loads: (name, root, n_points, seed, image options) -> Dataset.
LOADERS: dict[str, Callable[[str, Path, int, int, dict], Dataset]] = {
    "ring8": lambda name, root, n, seed, opts: builtin.mixture(name, n, seed),
    "grid25": lambda name, root, n, seed, opts: builtin.mixture(name, n, seed),
    "mnist": lambda name, root, n, seed, opts: builtin.mnist(root),
    "stacked-mnist": lambda name, root, n, seed, opts: builtin.stacked_mnist(root, n, seed),
    "fashion-mnist": lambda name, root, n, seed, opts: builtin.fashion_mnist(root),
    "lfw": lambda name, root, n, seed, opts: builtin.lfw(root, **opts),
    "lfw-subset": lambda name, root, n, seed, opts: builtin.lfw_subset(),
}


def _check_options(image_size: int | None, channels: int | None, n_points: int, limit: int | None,
                   max_pixels: int) -> None:
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if image_size is not None and not (isinstance(image_size, int) and image_size >= 1):
        raise DatasetError(f"image_size must be a positive number of pixels, got {image_size!r}")
    if limit is not None and not (isinstance(limit, int) and limit >= 1):
        raise DatasetError(f"limit must be at least 1, got {limit!r}")
    if not (isinstance(n_points, int) and n_points >= 1):
        raise DatasetError(f"n_points must be at least 1, got {n_points!r}")
    if not (isinstance(max_pixels, int) and max_pixels >= 1):
        raise DatasetError(f"max_pixels must be at least 1, got {max_pixels!r}")


def _from_path(path: Path, **image_options) -> Dataset:
    if not path.exists():
        raise DatasetError(_not_found(path))
    if path.is_dir() and has_idx(path):
        return idx_folder(path, path.name)
    if is_idx_images_file(path):
        return idx_file(path)
    if path.name.lower().endswith((".npy", ".npz")):
        return array_file(path, limit=image_options["limit"])
    if path.is_dir() or is_archive(path):
        return image_collection(path, **image_options)
    raise DatasetError(f"{path} is not a dataset kgan can read: use a folder, .zip, .tar, .tar.gz or .tgz of "
                       "images, a .npy / .npz array, or MNIST-style IDX files")


def _not_found(path: Path) -> str:
    message = f"no dataset {str(path)!r}: it is neither a built-in name nor an existing file or folder"
    if len(path.parts) == 1 and not path.suffix:
        close = difflib.get_close_matches(str(path).lower(), BUILTIN_DATASETS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message += f"; {hint}built-in datasets are {', '.join(BUILTIN_DATASETS)}"
    return message


def _finish(data: Dataset, *, image_size: int | None, channels: int | None, limit: int | None) -> Dataset:
    """Cut to limit first (less to convert), then channels, then size; no-ops when done already."""
    if limit is not None and data.n > limit:
        data = replace(data, x=data.x[:limit].contiguous(),
                       labels=data.labels[:limit] if data.labels is not None else None)
    if data.kind == "images":
        x = resize(set_channels(data.x, channels), image_size)
        if x is not data.x:
            data = replace(data, x=x)
    return data
