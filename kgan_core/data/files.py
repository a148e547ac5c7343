"""Datasets from the user's own files: folders and archives of images, numpy arrays.

Archives are read in memory member by member (never extracted to disk), links are
refused, and every image is fully decoded inside a try so a truncated or fake file is
reported by name instead of failing later in training.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from kgan_core.data.dataset import Dataset, DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _wanted(name: str) -> bool:
    p = PurePosixPath(name)
    return p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.parts)


def decode_image(data: bytes, where: str, max_pixels: int, size: int | None) -> Image.Image:
    """Decode fully (catching truncation), refuse decompression bombs, optionally resize."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise DatasetError(f"{where} is {im.width}×{im.height} pixels, over the limit of {max_pixels}")
            im.load()
            image = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
    except DatasetError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise DatasetError(f"{where} is not a readable image: {exc}") from exc
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def folder_members(folder: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not path.is_symlink() and _wanted(rel):
            try:
                yield rel, path.read_bytes()
            except OSError as exc:
                raise DatasetError(f"cannot read {path}: {exc}") from exc


def zip_members(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if not info.is_dir() and _wanted(info.filename):
                    yield info.filename, archive.read(info)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path} is not a readable zip archive: {exc}") from exc


def tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as archive:
            for member in sorted(archive.getmembers(), key=lambda m: m.name):
                if member.issym() or member.islnk():
                    raise DatasetError(f"{path} contains a link ({member.name}); archives of plain files only")
                if member.isfile() and _wanted(member.name):
                    f = archive.extractfile(member)
                    if f is not None:
                        yield member.name, f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable tar archive: {exc}") from exc


def image_collection(path: Path, *, image_size: int | None, max_pixels: int, limit: int | None) -> Dataset:
    """Images from a folder or archive; images in sub-folders get the sub-folder as label."""
    if path.is_dir():
        members = folder_members(path)
    elif path.name.lower().endswith(".zip"):
        members = zip_members(path)
    else:
        members = tar_members(path)
    images, groups = [], []
    for name, data in members:
        images.append(decode_image(data, f"{path.name}:{name}" if not path.is_dir() else str(path / name),
                                   max_pixels, image_size))
        parts = PurePosixPath(name).parts
        groups.append(parts[-2] if len(parts) > 1 else None)
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise DatasetError(f"{path} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        seen = ", ".join(f"{w}×{h}" for w, h in sorted(sizes)[:4])
        raise DatasetError(f"the images in {path} have different sizes ({seen}…); set image_size to resize them all")
    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    arrays = [np.asarray(im.convert(mode)) for im in images]
    x = torch.from_numpy(np.stack(arrays))
    x = x[:, None] if mode == "L" else x.permute(0, 3, 1, 2)
    labels = None
    if all(g is not None for g in groups):
        names = sorted(set(groups))
        labels = torch.tensor([names.index(g) for g in groups], dtype=torch.long)
    return Dataset(path.name, x.contiguous(), labels, "images")


def array_file(path: Path, *, limit: int | None) -> Dataset:
    """A .npy array, or a .npz with x/images/points (else its first array) and optional labels/y.

    2-D arrays are points (float32). 3-D (N, H, W) and 4-D (N, H, W, C) or (N, C, H, W)
    arrays are images: uint8 as is; floats in [0, 1] scale by 255, floats in [-1, 1] map
    linearly to 0..255.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {path} as a numpy array: {exc}") from exc
    labels = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if not keys:
                raise DatasetError(f"{path} holds no arrays")
            key = next((k for k in ("x", "images", "points") if k in keys), keys[0])
            array = loaded[key]
            label_key = next((k for k in ("labels", "y") if k in keys), None)
            if label_key is not None:
                labels = torch.from_numpy(loaded[label_key].astype(np.int64)).reshape(-1)
    else:
        array = loaded
    if limit is not None:
        array = array[:limit]
        labels = labels[:limit] if labels is not None else None
    if array.shape[0] == 0:
        raise DatasetError(f"{path} holds an empty array")
    if labels is not None and labels.shape[0] != array.shape[0]:
        raise DatasetError(f"{path} has {labels.shape[0]} labels for {array.shape[0]} items")
    if array.ndim == 2:
        if not np.issubdtype(array.dtype, np.number):
            raise DatasetError(f"{path} holds {array.dtype} values; points must be numbers")
        return Dataset(path.name, torch.from_numpy(array.astype(np.float32)), labels, "points")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.ndim != 4:
        raise DatasetError(f"{path} holds an array of rank {array.ndim} (shape {array.shape}); expected (N, D) "
                           "points or (N, H, W), (N, H, W, C), (N, C, H, W) images")
    if array.shape[1] not in (1, 3):
        raise DatasetError(f"{path}: images must have 1 or 3 channels, found shape {array.shape}")
    if array.dtype != np.uint8:
        a = array.astype(np.float32)
        a = (a + 1) * 127.5 if a.min() < 0 else a * 255.0
        array = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return Dataset(path.name, torch.from_numpy(np.ascontiguousarray(array)), labels, "images")
