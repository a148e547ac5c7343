"""Hostile uploads against the API as a real process: every one is refused with a 4xx problem
naming it, and the process's peak memory (VmHWM, which only grows) barely moves while it
refuses half-gigabyte bombs, a 10-gigapixel PNG and a 200 MB body."""

from __future__ import annotations

import zipfile

import httpx
import pytest

from tests._service import embedded_service
from tests.security.conftest import peak_rss
from tests.service.test_datasets import (
    bomb_png,
    digits,
    header_bomb,
    nested,
    png,
    tar_bomb,
    zip_bomb,
    zip_of,
)

MiB = 1024**2
# Allowed growth of the peak: well below any bomb here (the smallest expands to 100 MiB).
MAX_GROWTH = 48 * MiB


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with embedded_service(tmp_path_factory.mktemp("memory"), worker=False) as live:
        yield live


def test_hostile_uploads_keep_the_servers_memory_bounded(live, tmp_path):
    big_body = tmp_path / "big.zip"
    with zipfile.ZipFile(big_body, "w") as z, z.open("blob.bin", "w", force_zip64=True) as out:
        chunk = bytes(MiB)
        for _ in range(200):
            out.write(chunk)
    hostile = [
        ("images.zip", zip_bomb(), "zip bomb"),
        ("images.tgz", tar_bomb(), "zip bomb"),
        ("images.zip", zip_bomb(gib=0.1), "not a readable image"),
        ("images.zip", zip_bomb(gib=0.1, head=png(64)), "more than an image"),
        ("images.zip", zip_of({"a.png": header_bomb()}), "pixels"),
        ("images.zip", zip_of({"big.png": bomb_png()}), "pixels"),
        ("images.zip", nested(8), "nested archives"),
    ]
    with httpx.Client(base_url=live.url, headers=live.headers, timeout=120) as api:
        for _ in range(2):  # warm up: imports, PIL's decoders, the preview path
            r = api.post("/v1/datasets", files={"file": ("ok.zip", zip_of(digits(16, side=32)))})
            assert r.status_code == 201, r.text
        before = peak_rss(live.pid)
        for filename, data, words in hostile:
            r = api.post("/v1/datasets", files={"file": (filename, data)})
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
            assert words in r.json()["detail"], r.json()
        with open(big_body, "rb") as f:  # streamed to disk as it arrives, never held in memory
            r = api.post("/v1/datasets", files={"file": ("big.zip", f)})
        assert r.status_code == 422 and "no images" in r.json()["detail"], r.text
        growth = peak_rss(live.pid) - before
        assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MiB:.0f} MiB refusing hostile uploads"
        assert api.get("/v1/datasets").json()["total"] == 2  # nothing but the two good ones
    leftovers = [p for p in (live.data_dir / "artifacts" / "uploads").iterdir()]
    assert leftovers == []
