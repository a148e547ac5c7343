"""A worker's scratch folder against both stores: the bounded cache of fetched objects, and the
upload of each checkpoint the trainer saves."""

from __future__ import annotations

import os

from kgan_service.store import LocalObjects
from worker.scratch import CheckpointUpload, Scratch


def test_cache_fetches_once_and_drops_the_least_recently_used_above_its_bound(objects, tmp_path):
    for name in ("a", "b", "c"):
        objects.put_bytes(f"datasets/{name}/archive.zip", name.encode() * 400)
    scratch = Scratch(tmp_path / "scratch", objects, cache_bytes=1000)
    a = scratch.cached("datasets/a/archive.zip")
    assert a.read_bytes() == b"a" * 400
    if isinstance(objects, LocalObjects):
        # One copy of each file on the local store: the cache hands out the store's own path.
        assert a == objects.path("datasets/a/archive.zip") and scratch.cached_files() == []
        return
    assert a.is_relative_to(tmp_path / "scratch")
    os.utime(a, ns=(1, 1))  # used long ago
    b = scratch.cached("datasets/b/archive.zip")
    os.utime(b, ns=(2, 2))
    assert scratch.cached("datasets/a/archive.zip") == a  # a hit makes it the most recently used
    c = scratch.cached("datasets/c/archive.zip")  # 1200 bytes: one must go, and it is b
    assert sorted(scratch.cached_files()) == sorted([a, c])
    assert sum(p.stat().st_size for p in scratch.cached_files()) <= 1000


def test_a_file_over_the_bound_stays_while_it_is_used(objects, tmp_path):
    objects.put_bytes("runs/j/attempt-0001/checkpoint.safetensors", b"x" * 3000)
    scratch = Scratch(tmp_path / "scratch", objects, cache_bytes=1000)
    assert scratch.cached("runs/j/attempt-0001/checkpoint.safetensors").stat().st_size == 3000


def test_each_saved_checkpoint_is_uploaded_once_run_json_last(objects, tmp_path):
    scratch = Scratch(tmp_path / "scratch", objects, cache_bytes=0)
    run_dir = scratch.attempt_dir("j", 2)
    upload = CheckpointUpload(objects, run_dir, "runs/j/attempt-0002")
    assert upload() is False  # nothing saved yet
    (run_dir / "checkpoint.safetensors").write_bytes(b"step 10")
    (run_dir / "run.json").write_text('{"step": 10}')
    assert upload() is True and upload() is False
    assert objects.get_bytes("runs/j/attempt-0002/checkpoint.safetensors") == b"step 10"
    # The trainer writes by rename: a new save is a new file.
    (run_dir / "checkpoint.safetensors").write_bytes(b"step 20")
    (run_dir / ".run.json.tmp").write_text('{"step": 20}')
    os.replace(run_dir / ".run.json.tmp", run_dir / "run.json")
    assert upload() is True
    assert objects.get_bytes("runs/j/attempt-0002/run.json") == b'{"step": 20}'
    assert objects.get_bytes("runs/j/attempt-0002/checkpoint.safetensors") == b"step 20"
    scratch.remove_attempt("j", 2)
    assert not (tmp_path / "scratch" / "attempts" / "j").exists()


def test_a_restarted_worker_removes_the_folders_of_attempts_that_are_over(objects, tmp_path):
    scratch = Scratch(tmp_path / "scratch", objects, cache_bytes=0)
    for job_id, attempt in (("j1", 1), ("j1", 2), ("j2", 1)):
        (scratch.attempt_dir(job_id, attempt) / "checkpoint.safetensors").write_bytes(b"x")
    # j1's attempt 2 still runs (another worker on this host); the rest were left by a killed worker.
    assert scratch.remove_attempts_that_are_over({("j1", 2)}) == 2
    assert [(job, attempt) for job, attempt, _ in scratch.attempt_folders()] == [("j1", 2)]
    assert not (tmp_path / "scratch" / "attempts" / "j2").exists()
