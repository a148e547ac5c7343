"""Receiving and checking an uploaded archive of images.

The request body is parsed as it arrives and the file part is written straight to disk,
counting bytes, so an upload over the limit stops at the limit instead of filling a temp
folder first. The archive is then checked entry by entry (count, total uncompressed size,
names that would escape a folder, links, archives inside the archive, images over the pixel
limit or not decodable) before it becomes a dataset. It is never extracted: kgan_core reads
images out of it.

Which names are images, which are hidden, how many bytes one image file may take and how many
pixels one image may have are kgan_core.data.files' rules, the ones training loads the archive
by (with KGAN_MAX_IMAGE_PIXELS as its pixel limit): an archive accepted here loads there.

Memory stays bounded whatever the archive claims: an entry is read only after its first
HEAD_BYTES show an image header, and then at most what an image of that many pixels can
take (``entry_cap``), so a zip bomb costs a few kilobytes of reading before it is refused.
"""

from __future__ import annotations

import io
import lzma
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from api.errors import Problem
from kgan_core.data import files as archive_rules
from kgan_service.settings import Settings

# Entries with these endings are archives (or compressed files) inside the archive: refused,
# not unpacked, so nesting can never multiply a bomb.
NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst", ".7z", ".rar",
                           ".lz", ".lzma", ".z", ".jar", ".cpio")
NESTED_ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"Rar!")
MAX_FIELD_BYTES = 4096
MAX_PART_HEADER_BYTES = 16 * 1024  # all the headers of one multipart part together
MAX_PARTS = 16
HEAD_BYTES = 64 * 1024  # enough for any PNG/GIF/BMP/WebP header and most JPEGs'
PREVIEW_IMAGES = 64


def upload_problem(title: str, detail: str, status: int = 422) -> Problem:
    return Problem(status, title, detail, slug="bad-upload")


@dataclass
class Received:
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    size: int = 0


async def receive_upload(request: Request, dest: Path, max_bytes: int) -> Received:
    """Stream a multipart/form-data body: the part named ``file`` to ``dest``, small text fields kept."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise Problem(415, "Unsupported media type", "Upload an archive as multipart/form-data with a 'file' part "
                      "(curl -F file=@images.zip), or send JSON {\"builtin\": \"<name>\"}.", slug="bad-upload")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise upload_problem("Upload too large", f"The upload is {int(declared)} bytes; this server accepts "
                             f"archives up to {max_bytes} bytes.", 413)

    got = Received()
    state: dict = {"headers": {}, "name": None, "target": None, "buf": bytearray(), "field": b"", "value": b""}
    out = open(dest, "wb")  # noqa: SIM115 - closed in finally, written to by parser callbacks

    def header_bytes(n: int) -> None:
        state["header_bytes"] = state.get("header_bytes", 0) + n
        if state["header_bytes"] > MAX_PART_HEADER_BYTES:
            raise upload_problem("Multipart headers too long", f"A part's headers are over {MAX_PART_HEADER_BYTES} "
                                 "bytes.", 400)

    def on_header_field(data, start, end):
        header_bytes(end - start)
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        header_bytes(end - start)
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        state["header_bytes"] = 0
        state["parts"] = state.get("parts", 0) + 1
        if state["parts"] > MAX_PARTS:
            raise upload_problem("Too many form parts", f"Send one 'file' part and at most a 'name'; this body has "
                                 f"more than {MAX_PARTS} parts.", 400)
        _, disp = parse_options_header(state["headers"].get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == "file":
            if got.filename is not None:
                raise upload_problem("One archive per upload", "Send exactly one 'file' part.")
            got.filename = disp.get(b"filename", b"").decode("utf-8", "replace") or "upload"
            state["target"] = "file"
        else:
            state["target"], state["buf"] = "field", bytearray()

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["target"] == "file":
            got.size += len(chunk)
            if got.size > max_bytes:
                raise upload_problem("Upload too large", f"The archive is over this server's limit of {max_bytes} "
                                     "bytes.", 413)
            out.write(chunk)
        else:
            state["buf"] += chunk
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise upload_problem("Form field too long", f"Field {state['name']!r} is over {MAX_FIELD_BYTES} bytes.")

    def on_part_end():
        if state["target"] == "field":
            got.fields[state["name"]] = state["buf"].decode("utf-8", "replace")
        state["headers"], state["target"] = {}, None

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except Problem:
        raise
    except Exception as exc:  # python-multipart raises several types for malformed bodies
        raise upload_problem("Malformed multipart body", f"The request body could not be parsed: {exc}.", 400) from exc
    finally:
        out.close()
    if got.filename is None:
        raise upload_problem("No file in the upload", "Send the archive as a form part named 'file' "
                             "(curl -F file=@images.zip).")
    return got


# --- checking the archive ------------------------------------------------------------------


@dataclass
class ArchiveReport:
    n_images: int
    uncompressed_bytes: int
    sizes: list[list[int]]
    channels: int
    skipped: int
    preview: list  # up to PREVIEW_IMAGES decoded PIL images


def archive_suffix(filename: str) -> str:
    suffix = archive_rules.archive_suffix(filename)
    if suffix is not None:
        return suffix
    raise upload_problem("Not an archive", f"{filename!r} is not a .zip, .tar, .tar.gz or .tgz archive of images.")


def _check_name(name: str, settings: Settings) -> PurePosixPath:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise upload_problem("Unsafe path in archive", f"Entry {name!r} has an absolute or Windows path; archives "
                             "must hold relative paths only.")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise upload_problem("Unsafe path in archive", f"Entry {name!r} points outside the archive ('..').")
    if len(path.parts) > settings.max_path_depth:
        raise upload_problem("Archive nested too deeply", f"Entry {name!r} is {len(path.parts)} folders deep; "
                             f"the limit is {settings.max_path_depth}.")
    return path


def entry_cap(settings: Settings, pixels: int | None = None) -> int:
    """The most bytes an image file of ``pixels`` pixels (default: the pixel limit) may take."""
    return archive_rules.max_member_bytes(settings.max_image_pixels, pixels)


def _header_size(head: bytes, name: str, settings: Settings) -> tuple[int, int] | None:
    """(width, height) from an image's first bytes, or None if they do not show a whole header."""
    from PIL import Image

    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head), formats=[f for f in archive_rules.FORMATS if f in Image.OPEN]) as image:
                return image.size
    except Image.DecompressionBombError as exc:
        # PIL refuses over 2x its own limit before telling the size: over ours too, unless ours is higher.
        if settings.max_image_pixels < 2 * (Image.MAX_IMAGE_PIXELS or 0):
            raise upload_problem("Unreadable or oversized image", f"{name} is over this server's limit of "
                                 f"max_image_pixels={settings.max_image_pixels} ({exc})") from None
        return None
    except Exception:  # PIL signals unknown or cut-off headers with many exception types
        return None


def _is_nested_archive(name: str, head: bytes = b"") -> bool:
    return name.lower().endswith(NESTED_ARCHIVE_SUFFIXES) or head.startswith(NESTED_ARCHIVE_MAGIC)


def _read_entry(f, declared: int, name: str, settings: Settings) -> bytes:
    """An entry's bytes, read in two steps so that no claim of the archive makes us read much:
    its head (is it an image, how many pixels), then at most what such an image can take.
    The caller has checked ``0 < declared <= min(budget, entry_cap(settings))``."""
    head = f.read(min(HEAD_BYTES, declared + 1))
    if _is_nested_archive(name, head):
        raise nested_archive(name)
    size = _header_size(head, name, settings)
    pixels = size[0] * size[1] if size else None
    if pixels is not None and pixels > settings.max_image_pixels:
        raise upload_problem("Unreadable or oversized image", f"{too_many_pixels(name, *size, settings)}.")
    if size is None and len(head) < declared and not head.startswith((b"\xff\xd8", b"II*\x00", b"MM\x00*")):
        # Only JPEG (EXIF, ICC) and TIFF (IFD anywhere) may put their header past the first bytes.
        raise upload_problem("Unreadable or oversized image", f"{name} is not a readable image (its first bytes are "
                             "no header of a supported image format); remove or replace it.")
    if declared > entry_cap(settings, pixels):
        raise upload_problem("Image file too large", f"Entry {name!r} is {declared} bytes, more than an image of "
                             f"{pixels} pixels can take ({entry_cap(settings, pixels)} bytes).")
    data = head if len(head) > declared else head + f.read(declared - len(head) + 1)
    # Never trust a header's size: what was read may not pass what it declared.
    if len(data) != declared:
        raise upload_problem("Corrupt archive", f"Entry {name!r} holds {'more' if len(data) > declared else 'fewer'} "
                             f"bytes than its header declares ({declared}).")
    return data


def too_many_pixels(name: str, width: int, height: int, settings: Settings) -> str:
    return (f"{archive_rules.too_many_pixels(name, width, height, settings.max_image_pixels)} "
            "(KGAN_MAX_IMAGE_PIXELS; a decompression bomb?)")


def nested_archive(name: str) -> Problem:
    return upload_problem("Archive inside the archive", f"Entry {name!r} is itself an archive or a compressed file; "
                          "nested archives are not unpacked. Put the images themselves into one archive.")


def _zip_entries(path: Path, settings: Settings) -> Iterator[tuple[str, int, object]]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > settings.max_archive_entries:
            raise upload_problem("Too many entries", f"The archive has {len(infos)} entries; the limit is "
                                 f"{settings.max_archive_entries}.")
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise upload_problem("Link in archive", f"Entry {info.filename!r} is a symbolic link; archives of "
                                     "plain files only.")
            if info.is_dir():
                _check_name(info.filename, settings)
                continue
            yield info.filename, info.file_size, (lambda i=info: archive.open(i))


class InflatedBytes(io.RawIOBase):
    """A compressed tar's decompressed stream that counts every byte inflated, whether tarfile
    reads it or seeks past it (skipping a README inflates it all the same), and refuses the
    archive as soon as the count passes ``limit``."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit, self.inflated, self.pos = stream, limit, 0, 0

    def _count(self, n: int) -> None:
        self.inflated += n
        if self.inflated > self.limit:
            raise archive_too_large(self.limit)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self.pos + offset}.get(whence)
        if target is None:
            raise OSError("a compressed tar is read from the start, not from its end")
        # Forward: inflated through; backward: the decompressor starts over from the top.
        self._count(target - self.pos if target >= self.pos else target)
        self.pos = self.stream.seek(target)
        return self.pos

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        self._count(len(data))
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


def archive_too_large(limit: int, name: str | None = None) -> Problem:
    at = f" (at entry {name!r})" if name else ""
    return upload_problem("Archive too large uncompressed", f"The archive expands past this server's limit of "
                          f"{limit} uncompressed bytes{at}; every byte counts, images or not.")


def _open_tar(path: Path, settings: Settings) -> tarfile.TarFile:
    import bz2
    import gzip

    with open(path, "rb") as f:
        magic = f.read(6)
    opener = {b"\x1f\x8b": gzip.GzipFile, b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}
    for prefix, decompressor in opener.items():
        if magic.startswith(prefix):
            inflated = InflatedBytes(decompressor(path, "rb"), settings.max_uncompressed_bytes)
            return tarfile.open(fileobj=inflated, mode="r:")
    return tarfile.open(path, mode="r:")  # plain tar: skipping an entry is a seek, nothing to inflate


def _tar_entries(path: Path, settings: Settings) -> Iterator[tuple[str, int, object]]:
    with _open_tar(path, settings) as archive:
        count = 0
        for member in archive:  # streamed: a bomb is stopped by the limits, not read to the end
            count += 1
            if count > settings.max_archive_entries:
                raise upload_problem("Too many entries", f"The archive has more than {settings.max_archive_entries} "
                                     "entries.")
            if member.issym() or member.islnk():
                raise upload_problem("Link in archive", f"Entry {member.name!r} is a link; archives of plain files "
                                     "only.")
            if member.isdir():
                _check_name(member.name, settings)
                continue
            if not member.isfile():
                raise upload_problem("Special file in archive", f"Entry {member.name!r} is a device or pipe; "
                                     "archives of plain files only.")
            yield member.name, member.size, (lambda m=member: archive.extractfile(m))


def inspect_archive(path: Path, filename: str, settings: Settings) -> ArchiveReport:
    from kgan_core.data import DatasetError

    suffix = archive_suffix(filename)
    if path.stat().st_size == 0:
        raise upload_problem("Empty upload", f"{filename!r} is 0 bytes; send the archive's contents.")
    entries = _zip_entries(path, settings) if suffix == ".zip" else _tar_entries(path, settings)
    total, n, skipped, sizes, modes, preview = 0, 0, 0, set(), set(), []
    try:
        for name, declared, opener in entries:
            _check_name(name, settings)
            if archive_rules.is_hidden(name):
                skipped += 1  # __MACOSX/._x.png and .DS_Store: not images, not an error
                continue
            if _is_nested_archive(name):
                raise nested_archive(name)
            if not archive_rules.is_image_name(name):
                skipped += 1  # READMEs and the like
                continue
            budget = settings.max_uncompressed_bytes - total
            if declared > budget:
                raise archive_too_large(settings.max_uncompressed_bytes, name)
            if declared == 0:
                raise upload_problem("Empty image file", f"Entry {name!r} is 0 bytes.")
            if declared > entry_cap(settings):
                raise upload_problem("Image file too large", f"Entry {name!r} is {declared} bytes uncompressed, more "
                                     f"than any image within this server's pixel limit can take "
                                     f"({entry_cap(settings)} bytes); a zip bomb?")
            with opener() as f:
                data = _read_entry(f, declared, name, settings)
            total += len(data)
            try:
                image = archive_rules.decode_image(data, name, settings.max_image_pixels, None)
            except DatasetError as exc:
                raise upload_problem("Unreadable or oversized image", f"{exc}.") from exc
            n += 1
            sizes.add(image.size)
            modes.add(image.mode)
            if len(preview) < PREVIEW_IMAGES:
                preview.append(image)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise upload_problem("Corrupt archive", f"{filename!r} could not be read as {suffix}: {exc}.") from exc
    except (RuntimeError, NotImplementedError) as exc:  # zipfile: encrypted entries, unsupported compression
        raise upload_problem("Unsupported archive", f"{filename!r} uses a feature this server cannot read ({exc}); "
                             "use an unencrypted .zip (stored or deflated) or a .tar(.gz).") from exc
    if n == 0:
        raise upload_problem("No images in the archive", f"{filename!r} holds no images ("
                             f"{', '.join(sorted(archive_rules.IMAGE_SUFFIXES))}); {skipped} other files were ignored.")
    return ArchiveReport(n_images=n, uncompressed_bytes=total, sizes=[list(s) for s in sorted(sizes)],
                         channels=3 if "RGB" in modes else 1, skipped=skipped, preview=preview)


def preview_png(images: list, side: int = 64) -> bytes:
    """A grid of the first images, each fitted into side×side (mixed sizes preview fine)."""
    import numpy as np
    import torch
    from PIL import Image

    from kgan_core.data import images_to_model
    from kgan_core.render import image_grid, png_bytes

    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    arrays = [np.asarray(im.convert(mode).resize((side, side), Image.Resampling.LANCZOS)) for im in images]
    x = torch.from_numpy(np.stack(arrays))
    x = x[:, None] if mode == "L" else x.permute(0, 3, 1, 2)
    return png_bytes(image_grid(images_to_model(x)))


def safe_remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def sweep_stale_parts(uploads: Path, older_than_s: float) -> int:
    """Remove uploads' ``.part`` files not written to for ``older_than_s`` seconds: what an
    upload leaves when its API process is killed mid-stream. An upload in progress writes its
    part as bytes arrive, so it is never that old. Returns how many were removed."""
    import time

    removed, cutoff = 0, time.time() - older_than_s
    for part in uploads.glob("*.part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed += 1
        except FileNotFoundError:  # finished or swept by another API process meanwhile
            continue
    return removed
