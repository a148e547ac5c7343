"""An upload is checked by the rules training loads it by (kgan_core.data.files), with the
server's pixel limit on both sides: an archive accepted at KGAN_MAX_IMAGE_PIXELS trains, even
above the loader's own default limit, and one over it is refused by both in the same words."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from api.migrate import upgrade
from kgan_core.data import DatasetError
from kgan_core.data.files import DEFAULT_MAX_PIXELS, too_many_pixels
from tests.service.conftest import assert_problem, make_settings, make_user

SIDE = 4200  # 4200² pixels: over the loader's default limit of 4096²
LIMIT = SIDE * SIDE


def grey_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 90).save(buf, format="PNG")  # one colour: a few kilobytes
    return buf.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def stack(tmp_path, request):
    from fastapi.testclient import TestClient

    from api.main import create_app

    settings = make_settings(tmp_path, "embedded", request, max_image_pixels=LIMIT)
    upgrade(settings.db_url)
    with TestClient(create_app(settings)) as client:
        yield settings, client, make_user(settings)


def upload(client, user, archive: bytes):
    return client.post("/v1/datasets", files={"file": ("images.zip", archive, "application/zip")},
                       headers=user.headers)


def test_an_upload_at_the_pixel_limit_trains(stack):
    from worker.runner import JobRunner

    assert LIMIT > DEFAULT_MAX_PIXELS
    settings, client, user = stack
    archive = zip_of({"big.png": grey_png(SIDE, SIDE), "small.png": grey_png(8, 8), "__MACOSX/small.png": b"junk"})
    r = upload(client, user, archive)
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert dataset["n_items"] == 2 and dataset["meta"]["skipped_files"] == 1  # hidden on both sides
    params = {"dataset_id": dataset["id"], "image_size": 8, "k": 1, "steps": 2, "batch_size": 2, "log_every": 1,
              "checkpoint_every": 2, "rounds": 0}
    job = client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=user.headers)
    assert job.status_code == 202, job.text
    assert JobRunner(settings).run(job.json()["id"]) == "succeeded"
    body = client.get(f"/v1/jobs/{job.json()['id']}", headers=user.headers).json()
    assert body["status"] == "succeeded" and body["model_id"], body


def test_an_upload_over_the_pixel_limit_is_refused_by_both_in_the_same_words(stack, tmp_path):
    from worker.runner import JobRunner

    settings, client, user = stack
    archive = zip_of({"big.png": grey_png(SIDE + 1, SIDE), "small.png": grey_png(8, 8)})
    problem = assert_problem(upload(client, user, archive), 422)
    assert too_many_pixels("big.png", SIDE + 1, SIDE, LIMIT) in problem["detail"]
    # The same archive given to training directly (as a run on the worker would load it).
    path = tmp_path / "images.zip"
    path.write_bytes(archive)
    with pytest.raises(DatasetError) as refused:
        JobRunner(settings).load_data(str(path), image_size=8, channels=None, limit=None)
    assert too_many_pixels(f"big.png in {path}", SIDE + 1, SIDE, LIMIT) in str(refused.value)
