"""Uploads and built-in datasets: good archives become datasets; each kind of bad archive is
a 4xx problem naming the problem, and leaves no row and no file behind."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from PIL import Image
from sqlalchemy import func, select

from api.db import Database
from api.models import Dataset
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


def tar_of(entries: dict[str, bytes], link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            t.addfile(info)
    return buf.getvalue()


def digits(n: int = 12, side: int = 8) -> dict[str, bytes]:
    return {f"digits/{i % 2}/img{i:03d}.png": png(side, 20 * i % 256) for i in range(n)}


def upload(client, user, data: bytes, filename: str = "images.zip", **fields):
    return client.post("/v1/datasets", files={"file": (filename, data, "application/octet-stream")},
                       data=fields, headers=user.headers)


def leftovers(settings) -> tuple[int, list[str]]:
    db = Database(settings)
    try:
        with db.session() as s:
            rows = s.scalar(select(func.count()).select_from(Dataset))
    finally:
        db.dispose()
    files = [p.name for sub in ("datasets", "uploads") for p in (settings.artifacts / sub).iterdir()]
    return rows, files


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


def test_a_job_whose_data_vanished_fails_with_a_reason(client, alice, settings):
    from worker.runner import JobRunner

    d = upload(client, alice, zip_of(digits(4))).json()
    params = {"dataset_id": d["id"], "k": 2, "steps": 2, "batch_size": 2, "n_critic": 1, "width": 4}
    job = client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=alice.headers).json()
    for f in (settings.artifacts / "datasets" / d["id"]).glob("images.*"):
        f.write_bytes(b"gone")
    assert JobRunner(settings).run(job["id"]) == "failed"
    body = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert body["status"] == "failed" and body["error"]["title"] and "zip" in body["error"]["detail"]
