"""Uploads and built-in datasets: good archives become datasets; each kind of bad archive is
a 4xx problem naming the problem, and leaves no row and no file behind."""

from __future__ import annotations

import functools
import io
import os
import random
import struct
import tarfile
import zipfile
import zlib

import pytest
from PIL import Image
from sqlalchemy import func, select

from kgan_service.db import Database
from kgan_service.models import Dataset
from kgan_service.store import LocalObjects, open_store
from tests.service.conftest import assert_problem, make_settings


def png(side: int = 8, colour: int = 128, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (side, side), colour).save(buf, format="PNG")
    return buf.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_of(entries: dict[str, bytes], link: str | None = None, link_type: bytes = tarfile.SYMTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = link_type, "/etc/passwd"
            t.addfile(info)
    return buf.getvalue()


def zip_with_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.png", png())
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (0o120777 << 16)  # S_IFLNK: what `zip --symlinks` writes
        z.writestr(info, "/etc/passwd")
    return buf.getvalue()


class Zeros(io.RawIOBase):
    """n zero bytes, read in chunks: builds a bomb without holding it in memory."""

    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


@functools.cache
def zip_bomb(name: str = "a.png", gib: float = 0.5, head: bytes = b"") -> bytes:
    """One deflated entry of ``gib`` GiB (``head`` then zeros): a 2,000:1 zip bomb."""
    buf = io.BytesIO()
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w") as z, z.open(info, "w", force_zip64=True) as out:
        out.write(head)
        chunk, left = bytes(1 << 20), int(gib * 2**30) - len(head)
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return buf.getvalue()


@functools.cache
def tar_bomb(gib: float = 0.5) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as t:
        info = tarfile.TarInfo("a.png")
        info.size = int(gib * 2**30)
        t.addfile(info, io.BufferedReader(Zeros(info.size), 1 << 20))
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width×height grey pixels, with a first row of data: refused on
    its header alone, before any pixel is decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(width + 1)))
            + png_chunk(b"IEND", b""))


def jpeg(side: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((side, side)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def nested(depth: int) -> bytes:
    data = zip_of(digits(2))
    for i in range(depth):
        data = zip_of({f"level{i}.zip": data})
    return data


def digits(n: int = 12, side: int = 8) -> dict[str, bytes]:
    return {f"digits/{i % 2}/img{i:03d}.png": png(side, 20 * i % 256) for i in range(n)}


def upload(client, user, data: bytes, filename: str = "images.zip", **fields):
    return client.post("/v1/datasets", files={"file": (filename, data, "application/octet-stream")},
                       data=fields, headers=user.headers)


def leftovers(settings) -> tuple[int, list[str]]:
    """Dataset rows, and what is stored for datasets or staged for uploads."""
    db = Database(settings)
    try:
        with db.session() as s:
            rows = s.scalar(select(func.count()).select_from(Dataset))
    finally:
        db.dispose()
    staged = [p.name for p in (settings.artifacts / "uploads").iterdir()]
    return rows, sorted(info.key for info in open_store(settings.artifact_store_url).list("datasets")) + staged


def test_upload_a_zip_of_images(client, alice):
    r = upload(client, alice, zip_of({**digits(), "README.txt": b"hello", "__MACOSX/._x.png": b"junk"}),
               name="my digits")
    assert r.status_code == 201, r.text
    d = r.json()
    assert r.headers["Location"] == f"/v1/datasets/{d['id']}"
    assert (d["name"], d["kind"], d["n_items"], d["item_shape"]) == ("my digits", "images", 12, [1, 8, 8])
    assert d["meta"]["skipped_files"] == 2
    preview = client.get(d["links"]["preview"], headers=alice.headers)
    assert preview.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(preview.content)).size == (4 * 66 + 2, 3 * 66 + 2)  # 12 images of 64 px


def test_upload_a_tar_gz(client, alice):
    r = upload(client, alice, tar_of(digits(5)), filename="faces.tar.gz")
    assert r.status_code == 201, r.text
    assert r.json()["n_items"] == 5


def test_builtin_dataset_rows_and_previews(client, alice):
    for name, kind, shape in (("ring8", "points", [2]), ("mnist", "images", [1, 28, 28])):
        r = client.post("/v1/datasets", json={"builtin": name}, headers=alice.headers)
        assert r.status_code == 201, r.text
        assert (r.json()["kind"], r.json()["item_shape"]) == (kind, shape)
        preview = client.get(r.json()["links"]["preview"], headers=alice.headers)
        assert Image.open(io.BytesIO(preview.content)).format == "PNG"
    assert_problem(client.post("/v1/datasets", json={"builtin": "imagenet"}, headers=alice.headers), 422)
    assert_problem(client.post("/v1/datasets", json={"builtin": "ring8", "x": 1}, headers=alice.headers), 422)


@functools.cache
def bomb_png() -> bytes:
    # 20000×20000 pixels of one colour compress to a few kilobytes.
    buf = io.BytesIO()
    Image.new("L", (20000, 20000), 0).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def truncated_png() -> bytes:
    data = png(64, 7)
    return data[: len(data) // 2]


BAD_UPLOADS = [
    ("path escape", lambda: zip_of({"../../evil.png": png()}), "images.zip", "outside"),
    ("absolute path", lambda: zip_of({"/etc/evil.png": png()}), "images.zip", "absolute"),
    ("symlink in tar", lambda: tar_of(digits(2), link="digits/link.png"), "images.tgz", "link"),
    ("decompression bomb", bomb_png, "images.zip", "pixels"),
    ("truncated image", lambda: zip_of({"a.png": truncated_png()}), "images.zip", "a.png"),
    ("empty file", lambda: zip_of({"a.png": b""}), "images.zip", "0 bytes"),
    ("not an image", lambda: zip_of({"a.png": b"this is text, not a PNG"}), "images.zip", "a.png"),
    ("no images", lambda: zip_of({"notes.txt": b"hi"}), "images.zip", "no images"),
    ("not an archive", lambda: b"just bytes", "images.rar", ".zip"),
    ("corrupt zip", lambda: b"PK\x03\x04 broken", "images.zip", "could not be read"),
    ("deep nesting", lambda: zip_of({"/".join(["d"] * 40) + "/a.png": png()}), "images.zip", "deep"),
    ("tar path escape", lambda: tar_of({"digits/../../../evil.png": png()}), "images.tar.gz", "outside"),
    ("tar absolute path", lambda: tar_of({"/tmp/evil.png": png()}), "images.tgz", "absolute"),
    ("windows path", lambda: zip_of({"C:\\evil.png": png()}), "images.zip", "windows"),
    ("hard link in tar", lambda: tar_of(digits(2), link="digits/h.png", link_type=tarfile.LNKTYPE), "i.tgz", "link"),
    ("symlink in zip", zip_with_symlink, "images.zip", "symbolic link"),
    ("nested archive", lambda: nested(1), "images.zip", "is itself an archive"),
    ("deeply nested archive", lambda: nested(8), "images.zip", "nested archives are not unpacked"),
    ("gzip inside", lambda: zip_of({**digits(2), "more.png.gz": zlib.compress(png())}), "images.zip", "archive"),
    ("zip posing as an image", lambda: zip_of({"a.png": zip_of(digits(2))}), "images.zip", "archive"),
    ("zip bomb", zip_bomb, "images.zip", "zip bomb"),
    ("tar bomb", tar_bomb, "images.tar.gz", "zip bomb"),
    ("bomb under the size cap", lambda: zip_bomb(gib=0.1), "images.zip", "not a readable image"),
    ("bomb behind a PNG header", lambda: zip_bomb(gib=0.1, head=png(64)), "images.zip",
     "more than an image"),
    ("decompression bomb header", lambda: zip_of({"a.png": header_bomb()}), "images.zip", "10000000000 pixels"),
    ("truncated JPEG", lambda: zip_of({"a.jpg": jpeg()[:300]}), "images.zip", "a.jpg"),
    ("text as JPEG", lambda: zip_of({"photo.jpg": b"<html>not a photo</html>" * 100}), "images.zip", "photo.jpg"),
    ("empty upload", lambda: b"", "images.zip", "0 bytes"),
    ("empty tar entry", lambda: tar_of({"a.png": b""}), "images.tgz", "0 bytes"),
]


@pytest.mark.parametrize("case", BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_bad_uploads_are_refused_and_leave_nothing(client, alice, settings, case):
    _, make, filename, words = case
    data = make() if callable(make) else make
    if case[0] == "decompression bomb":
        data = zip_of({"big.png": data})
    before = leftovers(settings)
    r = upload(client, alice, data, filename=filename)
    problem = assert_problem(r, 422)
    assert words.lower() in problem["detail"].lower(), problem
    assert leftovers(settings) == before


def files_under(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_nothing_is_written_outside_the_datasets_folder(client, alice, settings, objects):
    """Uploads are never extracted: hostile names create nothing anywhere, and a good upload
    adds exactly its archive and preview, in its own folder."""
    root = settings.data_dir.parent  # the test's whole temporary tree, not just the service's data
    before = files_under(root)
    for make, filename in ((lambda: zip_of({"../../evil.png": png(), "/tmp/evil-abs.png": png()}), "images.zip"),
                           (lambda: tar_of({"../evil.png": png()}, link="evil-link.png"), "images.tgz")):
        assert_problem(upload(client, alice, make(), filename=filename), 422)
    assert files_under(root) == before
    assert not [p for p in ("/tmp/evil-abs.png", "/evil.png", "/tmp/evil.png") if os.path.exists(p)]
    r = upload(client, alice, zip_of({"deep/er/a.png": png(), "b.png": png()}))
    assert r.status_code == 201, r.text
    added = files_under(root) - before - {os.path.relpath(settings.data_dir / "kgan.db-journal", root)}
    folder = f"datasets/{r.json()['id']}"
    assert {info.key for info in objects.list(folder)} == {f"{folder}/images.zip", f"{folder}/preview.png"}
    # On the local folder store those are the only new files; on S3 nothing stays on this machine.
    local = {os.path.relpath(objects.path(f"{folder}/{name}"), root) for name in ("images.zip", "preview.png")} \
        if isinstance(objects, LocalObjects) else set()
    assert added == local, added


def corrupted(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    how = rng.choice(["flip", "cut", "splice"])
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif how == "cut":
        del out[rng.randrange(1, len(out)):]
    else:
        at = rng.randrange(len(out))
        out[at:at] = rng.randbytes(rng.randint(1, 64))
    return bytes(out)


def test_corrupted_archives_are_4xx_never_5xx(client, alice):
    """Archives damaged at random (deterministic seed): a 201 if the damage missed everything
    that matters, otherwise a 4xx problem; never a server error."""
    rng = random.Random(6)
    good = {"images.zip": zip_of({**digits(4), "c.jpg": jpeg()}), "images.tgz": tar_of(digits(4)),
            "images.tar": b""}
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as t:
        for name, data in digits(3).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    good["images.tar"] = plain.getvalue()
    statuses = []
    for filename, data in good.items():
        for _ in range(25):
            r = upload(client, alice, corrupted(data, rng), filename=filename)
            statuses.append(r.status_code)
            if r.status_code != 201:
                assert_problem(r, r.status_code)
                assert 400 <= r.status_code < 500, r.text
    assert statuses.count(201) < len(statuses) / 2, statuses  # the damage did damage


def test_limits_on_size_entries_and_uncompressed_bytes(tmp_path, request, backend):
    from fastapi.testclient import TestClient

    from api.keys import new_key
    from api.main import create_app
    from api.migrate import upgrade

    tight = make_settings(tmp_path, backend, request, max_upload_bytes=20_000, max_archive_entries=5,
                          max_uncompressed_bytes=3_000)
    if backend == "postgres":  # the shared session database already has its schema
        tight = tight.model_copy(update={"database_url": None})
    upgrade(tight.db_url)
    key = new_key(tight, "limits").token

    class User:
        headers = {"Authorization": f"Bearer {key}"}

    with TestClient(create_app(tight)) as c:
        big = zip_of({f"{i}.png": bytes(range(256)) * 40 for i in range(3)})  # stored, ~30 kB
        assert "limit" in assert_problem(upload(c, User, big), 413)["detail"]
        many = zip_of({f"{i}.png": png(4) for i in range(6)})
        assert "6 entries" in assert_problem(upload(c, User, many), 422)["detail"]
        roomy = zip_of({"a.png": b"\0" * 4000})
        assert "uncompressed" in assert_problem(upload(c, User, roomy), 422)["detail"]
        r = c.post("/v1/datasets", content=b"raw", headers={**User.headers, "Content-Type": "application/zip"})
        assert_problem(r, 415)
        assert leftovers(tight) == (0, [])


def test_train_on_an_uploaded_dataset_and_render_members(client, alice, settings):
    from worker.runner import JobRunner

    d = upload(client, alice, zip_of(digits(16))).json()
    params = {"dataset_id": d["id"], "k": 2, "steps": 3, "batch_size": 4, "n_critic": 1, "width": 4, "rounds": 1,
              "log_every": 1}
    job = client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=alice.headers)
    assert job.status_code == 202, job.text
    assert JobRunner(settings).run(job.json()["id"]) == "succeeded"
    model_id = client.get(f"/v1/jobs/{job.json()['id']}", headers=alice.headers).json()["model_id"]
    model = client.get(f"/v1/models/{model_id}", headers=alice.headers).json()
    assert model["dataset_kind"] == "images" and model["item_shape"] == [1, 8, 8]
    for member in model["members"]:
        grid = client.get(member["links"]["samples"] + "?n=6&seed=3", headers=alice.headers)
        assert Image.open(io.BytesIO(grid.content)).size == (3 * 10 + 2, 2 * 10 + 2)  # 6 images, 8 px, 2 px pad
        for what in ("medoid", "frozen-latent", "traversal", "real-tile"):
            r = client.get(member["links"][what], headers=alice.headers)
            assert r.status_code == 200, (what, r.text)
            image = Image.open(io.BytesIO(r.content))
            assert image.format == "PNG" and image.width > 8 and image.height > 8, what
        again = client.get(member["links"]["samples"] + "?n=6&seed=3",
                           headers={**alice.headers, "If-None-Match": grid.headers["etag"]})
        assert again.status_code == 304
    assert_problem(client.get(f"/v1/models/{model_id}/members/2/samples.png", headers=alice.headers), 404)
    assert_problem(client.get(f"/v1/models/{model_id}/members/0/samples.png?n=0", headers=alice.headers), 422)
    bad_dim = assert_problem(client.get(f"/v1/models/{model_id}/members/0/traversal.png?dims=9999",
                                        headers=alice.headers), 422)
    assert "9999" in bad_dim["detail"]


def test_a_job_whose_data_vanished_fails_with_a_reason(client, alice, settings, objects):
    from worker.runner import JobRunner

    d = upload(client, alice, zip_of(digits(4))).json()
    params = {"dataset_id": d["id"], "k": 2, "steps": 2, "batch_size": 2, "n_critic": 1, "width": 4}
    job = client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=alice.headers).json()
    for info in objects.list(f"datasets/{d['id']}"):
        if info.key.rsplit("/", 1)[1].startswith("images."):
            objects.put_bytes(info.key, b"gone")
    assert JobRunner(settings).run(job["id"]) == "failed"
    body = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert body["status"] == "failed" and body["error"]["title"] and "zip" in body["error"]["detail"]
