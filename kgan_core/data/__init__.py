"""Datasets as whole tensors (``load_dataset``), from built-in names or the user's files."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from kgan_core.data import builtin, files
from kgan_core.data.dataset import Dataset, DatasetError, images_from_model, images_to_model
from kgan_core.data.preprocess import resize, set_channels

__all__ = ["BUILTIN_DATASETS", "Dataset", "DatasetError", "images_from_model", "images_to_model", "load_dataset"]

BUILTIN_DATASETS: tuple[str, ...] = ("ring8", "grid25", "mnist", "fashion-mnist", "lfw", "lfw-subset")
DEFAULT_ROOT = Path.home() / ".cache" / "kgan" / "datasets"


def load_dataset(spec: str | os.PathLike, *, root: str | os.PathLike | None = None,
                 image_size: int | None = None, channels: int | None = None,
                 n_points: int = 10_000, seed: int = 0, limit: int | None = None,
                 max_pixels: int = 4096 * 4096) -> Dataset:
    """Load a built-in dataset by name, or a folder / archive / array file by path.

    ``root`` is where built-ins that need files live (MNIST's IDX files, downloads).
    Images come back as uint8 (N, C, H, W), resized to ``image_size`` and converted to
    ``channels`` when given; points as float32 (N, D).
    """
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be at least 1, got {limit}")
    root_dir = Path(root) if root is not None else DEFAULT_ROOT
    name = str(spec)
    if name in ("ring8", "grid25"):
        data = builtin.mixture(name, n_points, seed)
    elif name == "mnist":
        for candidate in (root_dir / "mnist", root_dir):
            if builtin.has_idx(candidate):
                data = builtin.idx_folder(candidate, "mnist")
                break
        else:
            raise DatasetError(f"mnist needs its IDX files (e.g. t10k-images-idx3-ubyte.gz and "
                               f"t10k-labels-idx1-ubyte.gz) in {root_dir / 'mnist'} or {root_dir}; "
                               "pass that folder as root / data_root")
    elif name == "fashion-mnist":
        data = builtin.fashion_mnist(root_dir)
    elif name == "lfw":
        data = builtin.lfw(root_dir, image_size)
    elif name == "lfw-subset":
        data = builtin.lfw_subset()
    else:
        data = _from_path(Path(name), image_size=image_size, max_pixels=max_pixels, limit=limit)
    if limit is not None and data.n > limit:
        data = replace(data, x=data.x[:limit].contiguous(),
                       labels=data.labels[:limit] if data.labels is not None else None)
    if data.kind == "images":
        data = replace(data, x=resize(set_channels(data.x, channels), image_size).contiguous())
    return data


def _from_path(path: Path, *, image_size: int | None, max_pixels: int, limit: int | None) -> Dataset:
    if not path.exists():
        hint = "" if os.sep in str(path) or path.suffix else f"; built-in datasets are {', '.join(BUILTIN_DATASETS)}"
        raise DatasetError(f"no dataset called {str(path)!r}: it is neither a built-in name nor an existing "
                           f"file or folder{hint}")
    if path.is_dir() and builtin.has_idx(path):
        return builtin.idx_folder(path, path.name)
    if path.suffix.lower() in (".npy", ".npz"):
        return files.array_file(path, limit=limit)
    if path.is_dir() or files.is_archive(path):
        return files.image_collection(path, image_size=image_size, max_pixels=max_pixels, limit=limit)
    raise DatasetError(f"{path} is not a dataset kgan can read: use a folder, .zip, .tar, .tar.gz or .tgz of "
                       "images, or a .npy / .npz array")
