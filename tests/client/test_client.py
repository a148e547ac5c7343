"""The Python client end to end against the embedded service (a real worker trains real,
tiny models): what a notebook user would write."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from kgan_client import ApiError, AsyncClient, Client, JobFailed, KganError
from tests._service import IMAGES_TINY, RING8_TINY, digits_zip

pytestmark = pytest.mark.slow


def not_blank(image: Image.Image) -> bool:
    low, high = image.convert("L").getextrema()
    return high - low > 100


@pytest.fixture(scope="module")
def ring8_job(service):
    with Client(service.url, service.key) as kgan:
        progress = io.StringIO()
        job = kgan.train("ring8", idempotency_key="client-ring8", **RING8_TINY).wait(progress=progress, poll_s=0.5)
        return job.id, progress.getvalue()


def test_train_wait_with_progress_then_look_at_each_member(service, ring8_job):
    job_id, progress = ring8_job
    # Not a terminal, so the bar prints a line per tenth of the way; the last one is complete.
    assert f"train {job_id[:8]} [" in progress and progress.rstrip().endswith("30/30 100% succeeded")
    with Client(service.url, service.key) as kgan:
        assert "ring8" in [d.name for d in kgan.builtin_datasets() if d.available]
        job = kgan.job(job_id)
        assert job.status == "succeeded" and job.info.progress.step == 30
        model = job.model()
        assert model.k == 2 and [m.k for m in model.members] == [0, 1]
        assert sum(m.tile_share for m in model.members) == pytest.approx(1.0, abs=1e-3)
        first = model.member(0).samples(200, seed=1)
        assert isinstance(first, Image.Image) and first.width >= 200 and not_blank(first)
        assert model.member(0).samples(200, seed=1).tobytes() == first.tobytes()  # same seed, same picture
        assert model.member(1).samples(200, seed=1).tobytes() != first.tobytes()
        with pytest.raises(KganError, match="only drawn for image models"):
            model.member(0).medoid()
        with pytest.raises(KganError, match="numbered 0 to 1"):
            model.member(2)
        # The same Idempotency-Key gives back the same job instead of training again.
        assert kgan.train("ring8", idempotency_key="client-ring8", **RING8_TINY).id == job_id


def test_download_artifacts_verifies_and_indexes_them(service, ring8_job, tmp_path):
    with Client(service.url, service.key) as kgan:
        model = kgan.job(ring8_job[0]).model()
        paths = model.download_artifacts(tmp_path)
        artifacts = model.artifacts()
        assert {a.kind for a in artifacts} >= {"checkpoint", "run-summary"}
        assert sorted(p.name for p in paths) == sorted(a.local_name for a in artifacts)
        for a in artifacts:
            assert hashlib.sha256((tmp_path / a.local_name).read_bytes()).hexdigest() == a.sha256
        summary = json.loads(next(p for p in paths if p.name.endswith("run.json")).read_text())
        assert summary["step"] == 30
        index = json.loads((tmp_path / "artifacts.json").read_text())
        assert {e["file"] for e in index} == {p.name for p in paths}
        # A second download finds the files already there and rewrites nothing.
        stamps = {p: p.stat().st_mtime_ns for p in paths}
        assert model.download_artifacts(tmp_path) == paths
        assert {p: p.stat().st_mtime_ns for p in paths} == stamps
        # A file changed on disk is fetched again, not trusted.
        paths[0].write_bytes(b"corrupted")
        model.download_artifacts(tmp_path)
        assert hashlib.sha256(paths[0].read_bytes()).hexdigest() in {a.sha256 for a in artifacts}


def test_upload_train_on_images_and_visualise_a_member(service, tmp_path):
    with Client(service.url, service.key) as kgan:
        dataset = kgan.upload_dataset(digits_zip(), filename="digits.zip", name="two kinds")
        assert dataset.n_items == 24 and dataset.name == "two kinds" and dataset.kind == "images"
        model = kgan.train(dataset, **IMAGES_TINY).wait(poll_s=0.5).model()
        assert model.info.dataset_kind == "images" and model.info.item_shape[-1] == 8
        member = model.member(1)
        for picture in (member.samples(16), member.medoid(n=16), member.real_tile(n=8), member.traversal(steps=3),
                        member.frozen_latent(dims=[0, 1], values=[-1.0, 1.0], n=2)):
            assert picture.width > 0 and picture.height > 0
        job = member.visualise("activation-max", seed=3, steps=2, methods=["pixel"]).wait(poll_s=0.5)
        by_kind = {a.kind: a for a in job.artifacts()}
        assert set(by_kind) == {"activation-max", "activation-max-images"}  # the picture and its raw images
        artifact = by_kind["activation-max"]
        assert (artifact.kind, artifact.member, artifact.model_id) == ("activation-max", 1, model.id)
        assert artifact.meta["numbers"]["methods"] == ["pixel"] and artifact.meta["seed"] == 3
        paths = {p.suffix: p for p in job.download_artifacts(tmp_path)}
        assert Image.open(paths[".png"]).format == "PNG"
        raw = np.load(paths[".npy"])  # rows, columns, channels, height, width, in model range
        assert raw.ndim == 5 and raw.shape[-1] == 8 and raw.min() >= -1 and raw.max() <= 1
        assert [a.id for a in member.artifacts("activation-max")] == [artifact.id]
        # Only the loaded model knows its critic's layers: that job fails, and wait() says why.
        with pytest.raises(JobFailed) as failed:
            member.visualise("activation-max", layer="no-such-layer", steps=2).wait(poll_s=0.5)
        assert failed.value.job.status == "failed" and "no-such-layer" in failed.value.job.error.detail
        assert str(failed.value).startswith(f"visualise job {failed.value.job.id} failed: ")
        # Freeing the storage: the upload stays while the model trained on it needs it.
        with pytest.raises(ApiError) as in_use:
            kgan.delete_dataset(dataset)
        assert in_use.value.status == 409 and model.id in in_use.value.detail
        kgan.delete_model(model.id)
        kgan.delete_dataset(dataset)
        assert kgan.artifacts(model_id=model.id) == [] and dataset.id not in [d.id for d in kgan.datasets()]


def test_refusals_raise_errors_that_say_what_to_do(service, ring8_job):
    with Client(service.url, "kgan_not-a-real-key") as stranger, pytest.raises(ApiError) as refused:
        stranger.jobs()
    assert refused.value.status == 401 and "kgan create-key" in refused.value.detail
    with pytest.raises(KganError, match="exactly as printed"):
        Client(service.url, "kgan_with a space")
    with Client(service.url, service.key + "\n") as from_a_file:  # `$(cat key)` or a file's last newline
        assert from_a_file.jobs()
    with Client(service.url, service.key) as kgan:
        with pytest.raises(ApiError) as bad:
            kgan.train("ring8", k=0)
        assert bad.value.status == 422 and [e["field"] for e in bad.value.errors] == ["body.params.k"]
        with pytest.raises(KganError, match="exactly one"):
            kgan.train()
        model = kgan.job(ring8_job[0]).model()
        # Traversal of 2-D points is refused at submission, with the visualisation's own reason.
        with pytest.raises(ApiError) as refused_kind:
            model.visualise("traversal", 0)
        assert refused_kind.value.status == 422 and refused_kind.value.detail
        assert "2-D points" in refused_kind.value.detail


def test_async_client_does_the_same(service, ring8_job):
    async def main() -> None:
        async with AsyncClient(service.url, service.key) as kgan:
            job = await kgan.train("ring8", **{**RING8_TINY, "steps": 10, "seed": 7})
            await job.wait(poll_s=0.5)
            assert job.status == "succeeded"
            model = await job.model()
            images = await asyncio.gather(*(m.samples(100, seed=2) for m in model.members))
            assert len(images) == 2 and all(not_blank(i) for i in images)
            listed = await kgan.jobs(kind="train", status="succeeded")
            assert job.id in [j.id for j in listed] and ring8_job[0] in [j.id for j in listed]
            with pytest.raises(ApiError) as missing:
                await kgan.model("no-such-model")
            assert missing.value.status == 404
            await kgan.delete_model(model.id)
            with pytest.raises(ApiError) as gone:
                await kgan.model(model.id)
            assert gone.value.status == 404
            dataset = await kgan.upload_dataset(digits_zip(), filename="digits.zip")
            await kgan.delete_dataset(dataset)
            assert dataset.id not in [d.id for d in await kgan.datasets()]

    asyncio.run(main())
