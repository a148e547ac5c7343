"""Image collections: a folder (recursively), a .zip, or a .tar / .tar.gz / .tgz of image files.

Archives are read in memory (never extracted, so no path in them can escape anywhere),
links and special members are refused, and every image is fully decoded inside a try so a
truncated or fake file is reported by name at load time rather than mid-training.

The archive rules here (which names are images, which are hidden, how many bytes one image
file may take, how many pixels one image may have) are also what the service checks an upload
against (api/uploads.py), so an archive the service accepts is one training loads.

Labels: when every image sits in a sub-folder (below any folders all of them share, so
``faces/cats/x.png`` and ``faces/dogs/y.png`` count), the label is the index of that
first sub-folder in sorted order and ``classes`` holds the names; otherwise no labels.
Colour: ``channels`` converts everything; without it a collection that holds any colour
image becomes RGB, else grey.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps

from kgan_core.data.dataset import Dataset, DatasetError
from kgan_core.data.preprocess import fit_square

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
DEFAULT_MAX_PIXELS = 4096 * 4096  # per image: the decompression-bomb guard, unless a caller sets its own
BYTES_PER_PIXEL = 16  # no image file needs more per pixel (4 channels of 32-bit float)
FILE_SLACK_BYTES = 8 * 1024 * 1024  # metadata (EXIF, ICC profiles, extra frames) an image file may carry
# Only the decoders these suffixes need: PIL's rarer formats are a needless attack surface.
# (Multi-picture JPEGs from phones open through the JPEG plugin; older Pillows name it MPO.)
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "DIB", "GIF", "WEBP", "TIFF")
GREY_MODES = {"1", "L", "LA", "La"}
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}

# PIL's decompression-bomb limit is process-wide; hold it only while a header is parsed.
_PIL_LIMIT = threading.Lock()

Members = list[tuple[str, Callable[[], bytes]]]


def is_archive(path: Path) -> bool:
    return archive_suffix(path.name) is not None


def archive_suffix(filename: str) -> str | None:
    """The archive kind a file name says (".tar.gz" before ".gz"-less matches), or None."""
    lower = filename.lower()
    return next((suffix for suffix in ARCHIVE_SUFFIXES[::-1] if lower.endswith(suffix)), None)


def _parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name).parts if p != "/")


def is_hidden(name: str) -> bool:
    """A member that is skipped, not loaded: any part of its path starts with a dot (.DS_Store,
    "..") or is macOS' __MACOSX folder of resource forks."""
    return any(part.startswith(".") or part == "__MACOSX" for part in _parts(name))


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def max_member_bytes(max_pixels: int, pixels: int | None = None) -> int:
    """The largest file an image of ``pixels`` pixels (default: ``max_pixels``, and never more)
    may take: every pixel at its widest plus metadata."""
    return min(pixels if pixels is not None else max_pixels, max_pixels) * BYTES_PER_PIXEL + FILE_SLACK_BYTES


def too_many_pixels(where: str, width: int, height: int, max_pixels: int) -> str:
    """What is said of an image over the pixel limit, by the loader and by the upload check alike."""
    return f"{where} is {width}x{height} = {width * height} pixels, over the limit of max_pixels={max_pixels}"


def _too_big(where: str, size: int, limit: int) -> DatasetError:
    return DatasetError(f"{where} is {size} bytes, more than any image within max_pixels needs ({limit}); "
                        "remove it or raise max_pixels if it is a genuine image")


# --- listing members --------------------------------------------------------------------------


@contextmanager
def open_members(path: Path, max_bytes: int) -> Iterator[tuple[Members, list[str]]]:
    """Sorted (name, read) pairs of the image files in a folder or archive, and the names skipped."""
    if path.is_dir():
        yield _folder_members(path, max_bytes)
    elif path.name.lower().endswith(".zip"):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"{path} is not a readable zip archive ({exc}); re-create it") from exc
        with archive:
            yield _zip_members(path, archive, max_bytes)
    else:
        yield _tar_members(path, max_bytes)


def _folder_members(folder: Path, max_bytes: int) -> tuple[Members, list[str]]:
    members, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for filename in filenames:
            path = Path(dirpath) / filename
            rel = path.relative_to(folder).as_posix()
            if is_hidden(filename):
                continue
            if not is_image_name(rel) or not path.is_file():
                skipped.append(rel)
                continue
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise DatasetError(f"cannot read {path}: {exc}") from exc
            if size > max_bytes:
                raise _too_big(str(path), size, max_bytes)
            members.append((rel, _file_reader(path)))
    return sorted(members, key=lambda m: m[0]), sorted(skipped)


def _file_reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"cannot read {path}: {exc}") from exc
    return read


def _zip_members(path: Path, archive: zipfile.ZipFile, max_bytes: int) -> tuple[Members, list[str]]:
    members, skipped = {}, []
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or is_hidden(name):
            continue
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DatasetError(f"{name} in {path} is a symbolic link; archives must hold plain image files")
        if not is_image_name(name):
            skipped.append(name)
            continue
        if info.file_size > max_bytes:
            raise _too_big(f"{name} in {path}", info.file_size, max_bytes)
        members[name] = _zip_reader(path, archive, info)
    return sorted(members.items()), sorted(skipped)


def _zip_reader(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return archive.read(info)
        # Encrypted (RuntimeError), bad CRC (BadZipFile), corrupt stream (zlib.error), odd compression.
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise DatasetError(f"cannot read {info.filename} in {path}: {exc}") from exc
    return read


def _tar_members(path: Path, max_bytes: int) -> tuple[Members, list[str]]:
    # One streaming pass in archive order: sorted random access into a .tar.gz would
    # decompress from the start for every member.
    data, skipped, current = {}, [], None
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                current = member.name
                if member.isdir() or is_hidden(member.name):
                    continue
                if member.issym() or member.islnk():
                    raise DatasetError(f"{member.name} in {path} is a link; archives must hold plain image files")
                if not member.isfile():
                    raise DatasetError(f"{member.name} in {path} is not a regular file; archives must hold "
                                       "plain image files")
                if not is_image_name(member.name):
                    skipped.append(member.name)
                    continue
                if member.size > max_bytes:
                    raise _too_big(f"{member.name} in {path}", member.size, max_bytes)
                stream = archive.extractfile(member)
                data[member.name] = stream.read() if stream is not None else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        where = f"{path} (at member {current})" if current else str(path)
        raise DatasetError(f"{where} is not a readable tar archive ({exc}); it may be truncated, re-create it") \
            from exc
    return sorted((name, _constant(blob)) for name, blob in data.items()), sorted(skipped)


def _constant(blob: bytes) -> Callable[[], bytes]:
    return lambda: blob


# --- decoding ---------------------------------------------------------------------------------


@functools.cache
def _formats() -> tuple[str, ...]:
    Image.init()  # registers every plugin; open(formats=...) fails on a name that is not registered
    return tuple(f for f in FORMATS if f in Image.OPEN)


def _open(data: bytes, where: str, max_pixels: int) -> Image.Image:
    with _PIL_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                # Between max_pixels and 2x PIL only warns; the explicit check below refuses.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data), formats=_formats())
        except Image.DecompressionBombError as exc:
            raise DatasetError(f"{where} is over the limit of max_pixels={max_pixels} ({exc}); raise max_pixels "
                               "if it is a genuine image") from exc
        except Exception as exc:  # PIL signals unknown or mangled headers with many exception types
            raise DatasetError(f"{where} is not a readable image ({exc}); remove or replace it") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    w, h = image.size
    if w * h > max_pixels:
        raise DatasetError(f"{too_many_pixels(where, w, h, max_pixels)}; raise max_pixels if it is a genuine image")
    return image


def _grey_from_wide(image: Image.Image, where: str) -> Image.Image:
    """16-bit / integer / float grey -> 8-bit (PIL's own conversion clips everything above 255)."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or not np.isfinite(hi) or hi > 65535:
        raise DatasetError(f"{where} has pixel values in [{lo}, {hi}]; expected 8- or 16-bit grey levels")
    if image.mode.startswith("I;16") or hi > 255:
        a = a / 257.0
    return Image.fromarray(np.round(a).astype(np.uint8))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a mangled EXIF block is no reason to refuse good pixels."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _native_mode(image: Image.Image) -> str:
    if image.mode in GREY_MODES or image.mode in WIDE_MODES:
        return "L"
    if image.mode in ("P", "PA"):
        rgb = np.asarray(image.convert("RGB"))
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        return "L" if grey else "RGB"
    return "RGB"


def decode_image(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS, size: int | None = None,
                 mode: str | None = None) -> Image.Image:
    """Bytes -> a fully decoded PIL image in ``mode`` ("L"/"RGB"; None: the image's own, grey or colour).

    ``where`` names the file in errors; ``size`` centre-crops and resizes to size x size.
    Alpha is dropped (PIL's convert), 16-bit grey is scaled to 8 bits, EXIF orientation is
    applied, and a GIF/TIFF gives its first frame. Any failure is a DatasetError naming ``where``.
    """
    image = _open(data, where, max_pixels)
    try:
        image.load()
        image = _upright(image)
        target = mode or _native_mode(image)
        if image.mode in WIDE_MODES:
            image = _grey_from_wide(image, where)
        if image.mode != target:
            image = image.convert(target)
        image = fit_square(image, size)
        image.load()
    except DatasetError:
        raise
    except Exception as exc:  # truncated data surfaces as OSError, mangled data as almost anything
        raise DatasetError(f"{where} is not a readable image ({exc}); remove or replace it") from exc
    return image


def _pixels(image: Image.Image) -> np.ndarray:
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], -1)  # (H, W, C)


def labels_from_names(names: list[str]) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """Index of each name's first sub-folder below the folders all names share."""
    parts = [_parts(n) for n in names]
    depth = 0
    while all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    if not all(len(p) > depth + 1 for p in parts):
        return None, None
    classes = tuple(sorted({p[depth] for p in parts}))
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[p[depth]] for p in parts], dtype=torch.int64), classes


def image_collection(path: Path, *, name: str | None = None, image_size: int | None = None,
                     channels: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                     limit: int | None = None) -> Dataset:
    """Every image file in a folder or archive, in sorted path order, as one uint8 tensor."""
    mode = {None: None, 1: "L", 3: "RGB"}[channels]
    with open_members(path, max_member_bytes(max_pixels)) as (members, skipped):
        if not members:
            seen = f"; it holds {len(skipped)} other files, e.g. {', '.join(skipped[:3])}" if skipped else ""
            raise DatasetError(f"{path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)} files, "
                               f"ignoring hidden ones){seen}")
        # Labels come from every name, so a class keeps its index whatever limit is.
        labels, classes = labels_from_names([m[0] for m in members])
        members = members[:limit] if limit is not None else members
        arrays: list[np.ndarray | None] = []
        for member, read in members:
            where = str(path / member) if path.is_dir() else f"{member} in {path}"
            array = _pixels(decode_image(read(), where, max_pixels, image_size, mode))
            if arrays and array.shape[:2] != arrays[0].shape[:2]:
                (h, w), first = arrays[0].shape[:2], members[0][0]
                raise DatasetError(f"images in {path} differ in size: {first} is {w}x{h}, {member} is "
                                   f"{array.shape[1]}x{array.shape[0]}; pass image_size to resize them all")
            arrays.append(array)
    # Copied straight into the final layout (grey broadcast to RGB when any image has colour),
    # freeing each decoded image: peak memory is twice the dataset, not three times.
    h, w = arrays[0].shape[:2]
    x = torch.empty((len(arrays), max(a.shape[2] for a in arrays), h, w), dtype=torch.uint8)
    out = x.numpy()
    for i, array in enumerate(arrays):
        out[i] = array.transpose(2, 0, 1)
        arrays[i] = None
    if labels is not None:
        labels = labels[: x.shape[0]]
    return Dataset(name or path.name, x, labels, "images", classes=classes)
