"""The artifact store's contract, held by both backends (see conftest.py): what is written comes
back whole, byte ranges, missing keys, folders that never spill into their neighbours, writes that
readers see only once complete, bounded memory for large uploads, and messages a person can act on."""

from __future__ import annotations

import hashlib
import os
import threading

import httpx
import pytest

from kgan_service.store import LocalObjects, ObjectInfo, ObjectMissing, S3Objects, StoreError, open_store
from tests._service import free_port

MiB = 1024**2


def _data(n: int, seed: int = 0) -> bytes:
    """n bytes that differ everywhere, so a misplaced chunk shows."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def test_bytes_round_trip_stat_list_delete(objects):
    assert objects.put_bytes("datasets/d1/preview.png", b"png bytes") == 9
    assert objects.get_bytes("datasets/d1/preview.png") == b"png bytes"
    assert objects.stat("datasets/d1/preview.png") == ObjectInfo("datasets/d1/preview.png", 9)
    assert objects.exists("datasets/d1/preview.png") and not objects.exists("datasets/d1/other.png")
    objects.put_bytes("datasets/d1/preview.png", b"new")  # overwrite
    assert objects.get_bytes("datasets/d1/preview.png") == b"new"
    assert objects.list("datasets") == [ObjectInfo("datasets/d1/preview.png", 3)]
    objects.delete("datasets/d1/preview.png")
    objects.delete("datasets/d1/preview.png")  # already gone: not an error
    assert objects.list() == [] and not objects.exists("datasets/d1/preview.png")


def test_large_file_round_trip_and_ranges(objects, tmp_path):
    # Over the 8 MiB multipart threshold, and not a whole number of parts.
    data = _data(17 * MiB + 7)
    source = tmp_path / "checkpoint.safetensors"
    source.write_bytes(data)
    assert objects.put_file("runs/j1/attempt-0001/checkpoint.safetensors", source) == len(data)
    assert objects.stat("runs/j1/attempt-0001/checkpoint.safetensors").size == len(data)

    back = objects.fetch("runs/j1/attempt-0001/checkpoint.safetensors", tmp_path / "cache" / "ckpt")
    assert back == tmp_path / "cache" / "ckpt" and back.read_bytes() == data
    assert sorted(p.name for p in back.parent.iterdir()) == ["ckpt"]  # no partial download left beside it

    key = "runs/j1/attempt-0001/checkpoint.safetensors"
    size = len(data)
    for start, stop in [(0, 10), (5, None), (size - 3, size), (MiB - 1, 3 * MiB + 1), (0, None)]:
        got = b"".join(objects.iter_range(key, start, stop, chunk_bytes=64 * 1024))
        assert got == data[start:stop], (start, stop)
    assert max(len(c) for c in objects.iter_range(key, 0, 2 * MiB, chunk_bytes=256 * 1024)) <= 256 * 1024
    assert b"".join(objects.iter_range(key, size, None)) == b""  # at the end: nothing, not an error
    assert b"".join(objects.iter_range(key, 7, 7)) == b""


def test_missing_keys_are_object_missing(objects, tmp_path):
    objects.put_bytes("runs/j1/a.png", b"a")
    for call in (lambda: objects.stat("runs/j1/b.png"), lambda: objects.get_bytes("runs/j1/b.png"),
                 lambda: list(objects.iter_range("runs/j1/b.png", 0, 1)),
                 lambda: list(objects.iter_range("runs/j1/b.png", 3, 3)),
                 lambda: objects.fetch("runs/j1/b.png", tmp_path / "dl" / "b.png"),
                 lambda: objects.stat("runs/j1")):  # a folder is not an object
        with pytest.raises(ObjectMissing) as caught:
            call()
        assert caught.value.key in ("runs/j1/b.png", "runs/j1")
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


def test_delete_tree_removes_that_folder_only(objects):
    for key in ("runs/j1/attempt-0001/ckpt", "runs/j1/attempt-0002/ckpt", "runs/j1/samples.png",
                "runs/j10/samples.png", "runs/j2/samples.png", "datasets/j1/x"):
        objects.put_bytes(key, key.encode())
    assert objects.delete_tree("runs/j1") == 3
    assert [i.key for i in objects.list()] == ["datasets/j1/x", "runs/j10/samples.png", "runs/j2/samples.png"]
    assert objects.delete_tree("runs/j1/") == 0  # again: nothing left, not an error
    with pytest.raises(ValueError, match="whole store"):
        objects.delete_tree("")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "runs/../../x", "runs//x", "runs/./x", "runs/",
                                 "runs\\x", "a\x00b", "runs/.partial-1-x"])
def test_keys_that_are_not_relative_paths_are_refused(objects, key):
    with pytest.raises(ValueError):
        objects.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        objects.stat(key)
    assert objects.list() == []


def test_a_write_is_seen_only_once_complete(objects):
    """A reader during a write sees the old object (and no partial one in a listing) until the
    new one is whole: what lets a worker on another host trust any checkpoint it can see."""
    key = "runs/j1/attempt-0001/checkpoint.safetensors"
    objects.put_bytes(key, b"old checkpoint")
    new = _data(17 * MiB, seed=1)
    halfway, release, failures = threading.Event(), threading.Event(), []

    class Gated:
        """Hands out the new bytes, stopping (until released) once half of them are read."""

        def __init__(self):
            self.pos = 0

        def read(self, size: int = -1) -> bytes:
            if self.pos >= len(new) // 2 and not release.is_set():
                halfway.set()
                assert release.wait(120)
            end = len(new) if size is None or size < 0 else min(len(new), self.pos + size)
            block, self.pos = new[self.pos:end], end
            return block

    def write():
        try:
            objects.put_stream(key, Gated())
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            halfway.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert halfway.wait(120), "the writer never got half way"
        assert not failures, failures
        assert objects.get_bytes(key) == b"old checkpoint"
        assert objects.list("runs") == [ObjectInfo(key, len(b"old checkpoint"))]
    finally:
        release.set()
        writer.join(120)
    assert not failures, failures
    assert objects.stat(key).size == len(new)
    assert hashlib.sha256(objects.get_bytes(key)).digest() == hashlib.sha256(new).digest()


def test_a_stream_is_stored_in_bounded_pieces(objects):
    """An upload of any size is read a part at a time, never whole into memory."""
    data = _data(20 * MiB, seed=2)
    reads: list[int] = []

    class Recording:
        def __init__(self):
            self.pos = 0

        def read(self, size: int = -1) -> bytes:
            reads.append(size)
            end = len(data) if size is None or size < 0 else min(len(data), self.pos + size)
            block, self.pos = data[self.pos:end], end
            return block

    assert objects.put_stream("uploads/big.zip", Recording()) == len(data)
    assert all(0 < size <= 8 * MiB for size in reads), reads
    assert objects.stat("uploads/big.zip").size == len(data)


def test_check_passes_and_leaves_nothing_behind(objects):
    objects.check()
    assert objects.list() == []


def test_presigned_url_fetches_without_credentials(objects):
    objects.put_bytes("runs/j1/samples.png", b"picture")
    url = objects.presign("runs/j1/samples.png", 60)
    if isinstance(objects, LocalObjects):
        assert url is None  # a folder has no URLs; the API streams the file itself
        return
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200 and answer.content == b"picture"


def test_stores_with_different_prefixes_do_not_see_each_other(s3_env, s3_bucket):
    first = open_store(f"s3://{s3_bucket}/team-a", s3_env)
    second = open_store(f"s3://{s3_bucket}/team-a2/inner", s3_env)
    first.put_bytes("runs/j1/x", b"a")
    second.put_bytes("runs/j1/x", b"b")
    assert [i.key for i in first.list()] == ["runs/j1/x"] and first.get_bytes("runs/j1/x") == b"a"
    assert first.delete_tree("runs") == 1
    assert second.get_bytes("runs/j1/x") == b"b"


def test_a_missing_bucket_fails_the_check_with_what_to_do(s3_env, s3_bucket):
    objects = open_store(f"s3://{s3_bucket}-absent/p", s3_env)
    with pytest.raises(StoreError, match=r"does not exist.*create it or correct KGAN_ARTIFACT_URL"):
        objects.check()


def test_an_unreachable_server_fails_the_check_with_what_to_do(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-printed-secret")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    objects = open_store("s3://kgan-artifacts/p", {"AWS_ENDPOINT_URL": endpoint})
    with pytest.raises(StoreError) as caught:
        objects.check()
    assert f"cannot reach {endpoint}" in str(caught.value) and "AWS_ENDPOINT_URL" in str(caught.value)
    assert "never-printed-secret" not in str(caught.value) + repr(objects)


def test_an_unwritable_folder_fails_the_check(tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot write to the artifact folder"):
        open_store((tmp_path / "a-file" / "artifacts").as_uri()).check()


def test_urls_name_the_backend():
    local = open_store("file:///srv/kgan%20data/artifacts")
    assert isinstance(local, LocalObjects) and str(local.root) == os.path.realpath("/srv/kgan data/artifacts")
    env = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1"}
    s3 = open_store("s3://kgan-artifacts/prod/v1/", env)
    assert isinstance(s3, S3Objects)
    assert (s3.bucket, s3.prefix, s3.endpoint_url, s3.url) == ("kgan-artifacts", "prod/v1", "http://minio:9000",
                                                               "s3://kgan-artifacts/prod/v1")
    assert s3.client.meta.region_name == "eu-west-1"
    assert open_store("s3://kgan-artifacts", {}).url == "s3://kgan-artifacts"


@pytest.mark.parametrize(("url", "says"), [
    ("s3://AKIAEXAMPLE:hunter2-secret@kgan-artifacts/p", "must not hold credentials"),
    ("https://user:hunter2-secret@example.com/p", "use file:///absolute/folder or s3://bucket/prefix"),
    ("file://relative/folder", "three slashes"),
    ("s3://Not_A_Bucket/p", "is not a bucket name"),
    ("s3://kgan-artifacts:9000/p", "AWS_ENDPOINT_URL"),
    ("s3://kgan-artifacts/a/../b", "'..' parts"),
    ("/data/artifacts", "use file:///absolute/folder"),
])
def test_bad_urls_are_refused_with_what_to_write(url, says):
    with pytest.raises(StoreError, match=says) as caught:
        open_store(url, {})
    assert "hunter2" not in str(caught.value)
