"""Datasets saved as numpy arrays: ``.npy``, or ``.npz`` with optional labels.

Which array: a ``.npz``'s ``x``, ``images`` or ``points`` (in that order), else its first
array that is not labels; labels come from ``labels`` or ``y``.

Ranks: (N, D) is points (stored float32). (N, H, W) is grey images; (N, H, W, C) and
(N, C, H, W) with C = 1 or 3 are images (channels-first wins when both would fit).

Pixel values (see ``to_uint8``): uint8 as is; other integers must lie in 0..255; bool is
0 / 255; floats in [0, 1] are scaled by 255, floats with negatives in [-1, 1] (the model's
range) map by (x + 1) * 127.5, floats above 1 within [0, 255] are taken as 8-bit levels,
and anything else is refused rather than guessed. Because only the range decides, a [-1, 1]
array that happens to hold no negative value is read as [0, 1].
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from kgan_core.data.dataset import Dataset, DatasetError

DATA_KEYS = ("x", "images", "points")
LABEL_KEYS = ("labels", "y")


def to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """Pixel values in any of the documented ranges -> uint8 0..255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise DatasetError(f"{where}: integer pixel values must lie in 0..255, found {lo}..{hi}")
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{where}: images must hold numbers, found dtype {array.dtype}")
    a = array.astype(np.float32)
    if not np.isfinite(a).all():
        raise DatasetError(f"{where} holds NaN or infinite pixel values")
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0 and hi <= 1:
        a = a * 255.0
    elif lo >= -1 and hi <= 1:
        a = (a + 1.0) * 127.5
    elif not (lo >= 0 and hi <= 255):
        raise DatasetError(f"{where}: float pixel values must lie in [0, 1], [-1, 1] or [0, 255], "
                           f"found [{lo:g}, {hi:g}]; rescale them before saving")
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read {path} as a numpy .npy/.npz file ({exc}); save it with numpy.save / "
                           "numpy.savez and plain numeric arrays") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded, None
    with loaded:
        keys = list(loaded.files)
        data_keys = [k for k in keys if k not in LABEL_KEYS]
        if not data_keys:
            raise DatasetError(f"{path} holds no data array (keys: {', '.join(keys) or 'none'}); store the "
                               f"items under one of {', '.join(DATA_KEYS)}")
        key = next((k for k in DATA_KEYS if k in keys), data_keys[0])
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        try:
            return loaded[key], (loaded[label_key] if label_key else None)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"cannot read the arrays in {path} ({exc}); store plain numeric arrays "
                               "(object arrays would need pickle, which is refused)") from exc


def _labels(raw: np.ndarray, n: int, path: Path) -> torch.Tensor:
    if raw.ndim != 1 or raw.shape[0] != n:
        raise DatasetError(f"{path}: labels must be one integer per item, shape ({n},); found shape {raw.shape}")
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise DatasetError(f"{path}: labels must be integers, found dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating) and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise DatasetError(f"{path}: labels must be whole numbers (class indices)")
    labels = raw.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DatasetError(f"{path}: labels must be class indices >= 0, found {labels.min()}")
    return torch.from_numpy(labels)


def _channels_first(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3:
        return array[:, None]
    if array.shape[1] in (1, 3):
        return array
    if array.shape[3] in (1, 3):
        return array.transpose(0, 3, 1, 2)
    raise DatasetError(f"{path}: images must have 1 or 3 channels, first or last; found shape {array.shape}")


def array_file(path: Path, *, limit: int | None = None) -> Dataset:
    array, raw_labels = _read(path)
    if array.ndim not in (2, 3, 4):
        raise DatasetError(f"{path} holds an array of rank {array.ndim} (shape {array.shape}); expected (N, D) "
                           "points or (N, H, W), (N, H, W, C), (N, C, H, W) images")
    if array.shape[0] == 0 or array.size == 0:
        raise DatasetError(f"{path} holds an empty array of shape {array.shape}")
    labels = _labels(raw_labels, array.shape[0], path) if raw_labels is not None else None
    if limit is not None:
        array = array[:limit]
        labels = labels[:limit] if labels is not None else None
    if array.ndim == 2:
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise DatasetError(f"{path}: points must be numbers, found dtype {array.dtype}")
        points = array.astype(np.float32)
        if not np.isfinite(points).all():
            raise DatasetError(f"{path} holds NaN or infinite coordinates (or values beyond float32)")
        return Dataset(path.name, torch.from_numpy(points), labels, "points")
    images = to_uint8(_channels_first(array, path), str(path))
    return Dataset(path.name, torch.from_numpy(np.ascontiguousarray(images)), labels, "images")
