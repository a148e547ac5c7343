"""Receiving and checking an uploaded archive of images.

The request body is parsed as it arrives and the file part is written straight to disk,
counting bytes, so an upload over the limit stops at the limit instead of filling a temp
folder first. The archive is then checked entry by entry (count, total uncompressed size,
names that would escape a folder, links, images over the pixel limit or not decodable)
before it becomes a dataset. It is never extracted: kgan_core reads images out of it.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from api.errors import Problem
from api.settings import Settings

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_FIELD_BYTES = 4096
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

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
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
    lower = filename.lower()
    for suffix in ARCHIVE_SUFFIXES[::-1]:  # ".tar.gz" before ".gz"-less matches
        if lower.endswith(suffix):
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


def _read_capped(f, declared: int, name: str, budget: int) -> bytes:
    # Never trust a header's size: read at most what it declared (and the budget left) + 1.
    cap = min(declared, budget)
    data = f.read(cap + 1)
    if len(data) > cap:
        raise upload_problem("Archive too large uncompressed", f"Entry {name!r} expands past its declared size or "
                             "past this server's limit on uncompressed data.")
    return data


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


def _tar_entries(path: Path, settings: Settings) -> Iterator[tuple[str, int, object]]:
    with tarfile.open(path, mode="r:*") as archive:
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
    from kgan_core.data.files import IMAGE_SUFFIXES, decode_image

    suffix = archive_suffix(filename)
    entries = _zip_entries(path, settings) if suffix == ".zip" else _tar_entries(path, settings)
    total, n, skipped, sizes, modes, preview = 0, 0, 0, set(), set(), []
    try:
        for name, declared, opener in entries:
            rel = _check_name(name, settings)
            if rel.suffix.lower() not in IMAGE_SUFFIXES or any(p.startswith(".") for p in rel.parts):
                skipped += 1  # READMEs, __MACOSX/ and .DS_Store: not images, not an error
                continue
            budget = settings.max_uncompressed_bytes - total
            if declared > budget:
                raise upload_problem("Archive too large uncompressed",
                                     f"The archive expands past this server's limit of "
                                     f"{settings.max_uncompressed_bytes} uncompressed bytes (at entry {name!r}).")
            with opener() as f:
                data = _read_capped(f, declared, name, budget)
            total += len(data)
            if not data:
                raise upload_problem("Empty image file", f"Entry {name!r} is 0 bytes.")
            try:
                image = decode_image(data, name, settings.max_image_pixels, None)
            except DatasetError as exc:
                raise upload_problem("Unreadable or oversized image", f"{exc}.") from exc
            n += 1
            sizes.add(image.size)
            modes.add(image.mode)
            if len(preview) < PREVIEW_IMAGES:
                preview.append(image)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise upload_problem("Corrupt archive", f"{filename!r} could not be read as {suffix}: {exc}.") from exc
    if n == 0:
        raise upload_problem("No images in the archive", f"{filename!r} holds no images ("
                             f"{', '.join(sorted(IMAGE_SUFFIXES))}); {skipped} other files were ignored.")
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
