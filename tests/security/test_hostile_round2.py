"""Hostile and careless input, round 2, against the API as a real process: every request is
bounded before it costs memory or CPU (archives by the bytes they inflate, whatever the entry;
JSON bodies by their size before parsing), and the refusals are problem documents."""

from __future__ import annotations

import gzip
import os
import tarfile

import httpx
import pytest

from tests._service import embedded_service
from tests.security.conftest import peak_rss
from tests.service.test_datasets import png

MiB, GiB = 1024**2, 1024**3
PROBLEM_JSON = "application/problem+json"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def inflating_tgz(declared: int, filler: str = "notes.txt") -> bytes:
    """A .tar.gz whose first entry, not an image, declares ``declared`` zero bytes, then one
    real PNG. Built as concatenated gzip members (one deflated MiB of zeros repeated), so the
    upload is ~1/1000 of what it inflates to and costs nothing to make."""
    zeros = gzip.compress(bytes(MiB), compresslevel=9)
    image = png(16)
    pad = -len(image) % 512
    parts = [gzip.compress(tar_header(filler, declared))]
    parts += [zeros] * (declared // MiB)
    tail = bytes(declared % MiB) + tar_header("a.png", len(image)) + image + bytes(pad) + bytes(1024)
    parts.append(gzip.compress(tail))
    return b"".join(parts)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    # A small uncompressed limit, so that the accepted archive below costs seconds, not minutes.
    with embedded_service(tmp_path_factory.mktemp("round2"), worker=False,
                          KGAN_MAX_UNCOMPRESSED_BYTES=str(64 * MiB), KGAN_MAX_REQUEST_BODY_BYTES=str(MiB)) as live:
        yield live


def test_a_tar_gz_is_refused_once_what_it_inflates_passes_the_limit_whatever_the_entry(live):
    bomb = inflating_tgz(6 * GiB)  # 6 GiB of notes.txt before the one image
    assert len(bomb) < 8 * MiB
    small = inflating_tgz(8 * MiB)  # the same shape under the limit is a dataset
    with httpx.Client(base_url=live.url, headers=live.headers, timeout=120) as api:
        r = api.post("/v1/datasets", files={"file": ("small.tgz", small)})
        assert r.status_code == 201, r.text
        before = cpu_seconds(live.pid)
        r = api.post("/v1/datasets", files={"file": ("notes.tgz", bomb)})
        cost = cpu_seconds(live.pid) - before
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM_JSON, r.text
        assert f"limit of {64 * MiB} uncompressed bytes" in r.json()["detail"]
        # Inflating 6 GiB takes tens of CPU seconds; 64 MiB (the most it may inflate) well under one.
        assert cost < 5.0, f"refusing the archive took {cost:.1f} CPU seconds"
        assert api.get("/v1/datasets").json()["total"] == 1


def test_a_json_body_over_the_cap_is_refused_before_it_is_parsed(live):
    job = b'{"kind": "train", "params": {"dataset": "ring8", "k": 2, "notes": "'
    huge = job + b"x" * (50 * MiB) + b'"}}'

    def chunked():  # no Content-Length: the cap must hold on the bytes as they arrive
        for i in range(0, len(huge), MiB):
            yield huge[i:i + MiB]

    with httpx.Client(base_url=live.url, headers=live.headers, timeout=120) as api:
        ok = api.post("/v1/jobs", json={"kind": "train", "params": {"dataset": "ring8", "k": 2, "steps": 1}})
        assert ok.status_code == 202, ok.text
        before = peak_rss(live.pid)
        for body in (huge, chunked()):
            r = api.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 413 and r.headers["content-type"] == PROBLEM_JSON, r.text[:300]
            assert f"limit of {MiB} bytes" in r.json()["detail"]
        # The same cap on every JSON route, the builtin-dataset form of the upload route included.
        r = api.post("/v1/datasets", content=huge, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:300]
        growth = peak_rss(live.pid) - before
        assert growth < 16 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB refusing 50 MB bodies"
        # Just under the cap is parsed, and refused for what it says, not for its size.
        near = job + b"x" * (MiB - len(job) - 100) + b'"}}'
        r = api.post("/v1/jobs", content=near, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "notes" in r.text[:2000], r.text[:300]
