"""The HTTP API on both backends: auth, problem documents, jobs, idempotency, cancel, health."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kgan_service.db import Database
from kgan_service.models import Job
from tests.service.conftest import TINY_TRAIN, assert_problem


def job_count(settings) -> int:
    db = Database(settings)
    try:
        with db.session() as s:
            return s.scalar(select(func.count()).select_from(Job))
    finally:
        db.dispose()


def test_health_ready_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "artifact_store": "ok"}
    assert "/v1/jobs" in client.get("/openapi.json").json()["paths"]


def test_readyz_reports_a_broker_that_is_down(settings, tmp_path):
    from fastapi.testclient import TestClient

    from api.main import create_app

    down = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0", "artifact_dir": tmp_path})
    with TestClient(create_app(down)) as c:
        body = assert_problem(c.get("/readyz"), 503)
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("failed")


def test_requests_without_a_valid_key_get_401(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer kgan_not-a-real-key"}):
        body = assert_problem(client.get("/v1/jobs", headers=headers), 401)
        assert "Bearer" in body["detail"] or "create" in body["detail"]


def test_unknown_route_and_method_are_problems(client, alice):
    assert_problem(client.get("/v1/nothing-here", headers=alice.headers), 404)
    assert_problem(client.delete("/v1/jobs", headers=alice.headers), 405)


def test_train_job_is_accepted_and_listed(client, alice, settings):
    r = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers)
    assert r.status_code == 202
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["progress"]["total"] == TINY_TRAIN["steps"]
    assert job["params"]["k"] == 2 and job["params"]["medoid_samples"] == 256  # TrainConfig's defaults filled in
    assert client.get(r.headers["Location"], headers=alice.headers).json()["id"] == job["id"]
    # The message went to the broker and carries only the id.
    client_redis = redis.Redis.from_url(settings.broker_url)
    messages = client_redis.lrange(settings.queue, 0, -1)
    assert any(job["id"].encode() in m for m in messages)
    listed = client.get("/v1/jobs?status=queued&kind=train", headers=alice.headers).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    assert client.get("/v1/jobs?status=succeeded", headers=alice.headers).json()["total"] == 0


def test_pagination(client, alice):
    ids = [client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers).json()["id"]
           for _ in range(3)]
    first = client.get("/v1/jobs?limit=2", headers=alice.headers).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and first["next"]
    second = client.get(first["next"], headers=alice.headers).json()
    assert second["next"] is None
    assert sorted(j["id"] for j in first["items"] + second["items"]) == sorted(ids)
    assert_problem(client.get("/v1/jobs?limit=1000", headers=alice.headers), 422)


def test_idempotency_key_returns_the_same_job(client, alice, settings):
    key = {"Idempotency-Key": uuid.uuid4().hex, **alice.headers}
    body = {"kind": "train", "params": TINY_TRAIN}
    first = client.post("/v1/jobs", json=body, headers=key)
    before = job_count(settings)
    again = client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert job_count(settings) == before
    changed = {"kind": "train", "params": {**TINY_TRAIN, "k": 3}}
    problem = assert_problem(client.post("/v1/jobs", json=changed, headers=key), 422)
    assert first.json()["id"] in problem["detail"]


def test_idempotency_keys_are_per_owner(client, alice, bob):
    key = uuid.uuid4().hex
    body = {"kind": "train", "params": TINY_TRAIN}
    a = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key, **alice.headers}).json()
    b = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key, **bob.headers}).json()
    assert a["id"] != b["id"]


BAD_JOBS = [
    ({"kind": "train", "params": {**TINY_TRAIN, "k": 500}}, "params.k"),
    ({"kind": "train", "params": {**TINY_TRAIN, "steps": 0}}, "params.steps"),
    ({"kind": "train", "params": {**TINY_TRAIN, "batch_size": 10**9}}, "params.batch_size"),
    ({"kind": "train", "params": {**TINY_TRAIN, "image_size": 4}}, "params.image_size"),
    ({"kind": "train", "params": {**TINY_TRAIN, "surprise": 1}}, "params.surprise"),
    ({"kind": "train", "params": TINY_TRAIN, "extra": True}, "extra"),
    ({"kind": "train", "params": {**TINY_TRAIN, "device": "tpu"}}, "params.device"),  # a preference, of known kinds
    ({"kind": "train", "params": {**TINY_TRAIN, "data_root": "/etc"}}, "params.data_root"),
    ({"kind": "train", "params": {**TINY_TRAIN, "dataset": "/etc/passwd"}}, "params"),
    ({"kind": "train", "params": {k: v for k, v in TINY_TRAIN.items() if k != "dataset"}}, "params"),
    ({"kind": "mine-bitcoin", "params": TINY_TRAIN}, "kind"),
]


def test_bad_job_requests_are_422_and_store_nothing(client, alice, settings):
    before = job_count(settings)
    for body, field in BAD_JOBS:
        problem = assert_problem(client.post("/v1/jobs", json=body, headers=alice.headers), 422)
        assert any(e["field"].startswith(f"body.{field}") for e in problem["errors"]), (body, problem)
    assert job_count(settings) == before


def test_jobs_that_cannot_fit_the_data_are_refused_before_queueing(client, alice, settings):
    before = job_count(settings)
    cases = [
        {**TINY_TRAIN, "arch": "thesis"},  # images net on points
        {**TINY_TRAIN, "n_points": 10, "k": 20},  # more members than data
        {**TINY_TRAIN, "dataset": "mnist", "arch": "dcgan64"},  # 28 px into a 64 px net
        {**TINY_TRAIN, "dataset": "mnist", "image_size": 30, "arch": "thesis"},  # side not divisible by 4
    ]
    for params in cases:
        problem = assert_problem(client.post("/v1/jobs", json={"kind": "train", "params": params},
                                             headers=alice.headers), 422)
        assert problem["title"] != "Internal server error"
    assert job_count(settings) == before


def test_malformed_json_is_a_problem(client, alice):
    r = client.post("/v1/jobs", content=b"{not json", headers={**alice.headers, "Content-Type": "application/json"})
    assert_problem(r, 422)


def test_cancel_a_queued_job(client, alice):
    job = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers).json()
    r = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert_problem(client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers), 409)


def test_a_worker_skips_a_job_cancelled_while_queued(client, alice, settings):
    from worker.runner import JobRunner

    job = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers).json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert JobRunner(settings).run(job["id"]) == "skipped"
    body = client.get(f"/v1/jobs/{job['id']}", headers=alice.headers).json()
    assert body["status"] == "cancelled" and body["attempt"] == 0


def test_metrics_report_jobs_and_latency(client, alice):
    client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=alice.headers)
    text = client.get("/metrics").text
    assert 'kgan_jobs{state="queued"}' in text
    assert "kgan_job_duration_seconds" in text
    assert 'kgan_http_request_duration_seconds_count{method="POST",route="/v1/jobs",status="202"}' in text


def test_builtin_dataset_listing(client, alice):
    listed = {d["name"]: d for d in client.get("/v1/datasets/builtin", headers=alice.headers).json()}
    assert listed["ring8"]["available"] and listed["ring8"]["kind"] == "points"
    assert listed["mnist"]["available"]  # the MNIST test digits the package ships
    assert listed["stacked-mnist"]["available"] and listed["stacked-mnist"]["kind"] == "images"


def test_unknown_query_parameters_are_refused(client, alice):
    problem = assert_problem(client.get("/v1/jobs?limt=5", headers=alice.headers), 422)
    assert problem["errors"][0]["field"] == "query.limt" and "limit" in problem["errors"][0]["message"]
    assert_problem(client.get("/v1/jobs?limt=5"), 401)  # without a key, the key is what is wrong
    assert_problem(client.get("/healthz?verbose=1"), 422)
    assert client.get("/v1/jobs?limit=5", headers=alice.headers).status_code == 200


def test_openapi_declares_problems_and_the_bearer_scheme(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "an API key (kgan create-key)"}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            assert not any(p["name"].lower() == "authorization" for p in op.get("parameters", [])), (method, path)
            for code, response in op["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (method, path, code)
            if path.startswith("/v1/"):
                assert op["security"] == [{"apiKey": []}] and "401" in op["responses"], (method, path)


# --- the renderer's model cache -------------------------------------------------------------


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    """An artifact store holding one tiny image run (thesis net, 8 px MNIST, two steps)."""
    from kgan_core.train import TrainConfig, train
    from kgan_service.store import LocalObjects

    store = LocalObjects(tmp_path_factory.mktemp("render-store"))
    config = TrainConfig(dataset="mnist", image_size=8, limit=256, k=2, steps=2,
                         batch_size=8, n_critic=1, width=4, rounds=0, device="cpu", checkpoint_every=2, log_every=1)
    train(config, store.root / "runs" / "tiny")
    return store


def refs(n: int):
    from api.render import ModelRef

    return [ModelRef(f"model-{i}", "runs/tiny") for i in range(n)]


def test_model_cache_is_bounded_by_count_and_by_bytes(image_store, settings):
    from api.render import Renderer, run_bytes

    a, b, c, d = refs(4)
    by_count = Renderer(image_store, settings.model_copy(update={"model_cache_size": 3}))
    for ref in (a, b, c, d):
        by_count.run(ref)
    assert by_count.cached_ids() == [b.id, c.id, d.id]
    run = by_count.run(d)
    params = sum(t.numel() * t.element_size() for m in (run.generator, run.critic) for t in m.state_dict().values())
    one = run_bytes(run)
    assert params <= one < params + 64 * 1024  # the networks, plus point masses and tiles

    roomy = settings.model_copy(update={"model_cache_size": 100})
    by_bytes = Renderer(image_store, roomy, max_bytes=int(2.5 * one))
    for ref in (a, b, c):
        by_bytes.run(ref)
    assert by_bytes.cached_ids() == [b.id, c.id] and by_bytes.cached_bytes <= 2.5 * one
    by_bytes.run(b)  # a hit moves it to the back
    by_bytes.run(d)
    assert by_bytes.cached_ids() == [b.id, d.id]
    # A visualisation that loads the training data makes that model bigger: counted, and evicts.
    snug = Renderer(image_store, roomy, max_bytes=2 * one + 1)
    snug.run(a)
    snug.visual_png(d, "real-tile", 0, 0, n=4)
    grown = run_bytes(snug.run(d))
    assert grown >= one + 256 * 64  # 256 images of 8x8 bytes
    assert snug.cached_ids() == [d.id] and snug.cached_bytes == grown

    tiny = Renderer(image_store, roomy, max_bytes=1)  # the model being rendered always stays
    assert tiny.samples_png(a, 0, 4, 0).startswith(b"\x89PNG") and tiny.cached_ids() == [a.id]


def test_image_samples_do_not_wait_for_the_pyplot_lock(image_store, settings):
    import threading

    from api import render

    renderer = render.Renderer(image_store, settings)
    ref = refs(1)[0]
    out = []
    with render._PYPLOT:  # as if a slow scatter plot were being drawn
        worker = threading.Thread(target=lambda: out.append(renderer.samples_png(ref, 1, 16, 3)), daemon=True)
        worker.start()
        worker.join(timeout=20)
        assert out and out[0].startswith(b"\x89PNG"), "an image samples.png waited for pyplot's lock"


def test_small_and_large_artifacts_are_served_alike(client, trained):
    sizes = []
    for artifact_id in trained.artifact_ids:
        meta = client.get(f"/v1/artifacts/{artifact_id}/meta", headers=trained.user.headers).json()
        r = client.get(meta["links"]["self"], headers=trained.user.headers)
        assert r.status_code == 200 and len(r.content) == meta["size_bytes"]
        assert hashlib.sha256(r.content).hexdigest() == meta["sha256"]
        assert r.headers["content-type"].startswith(meta["media_type"])
        assert r.headers["content-disposition"].startswith("attachment;") and meta["filename"] in r.headers[
            "content-disposition"]
        sizes.append(meta["size_bytes"])
    assert min(sizes) <= 64 * 1024 < max(sizes)  # one sent whole, one streamed


def test_artifacts_stream_with_ranges_and_a_strong_etag(client, trained):
    meta = client.get(f"/v1/artifacts/{trained.artifact_ids[0]}/meta", headers=trained.user.headers).json()
    url = meta["links"]["self"]
    whole = client.get(url, headers=trained.user.headers)
    assert whole.status_code == 200 and len(whole.content) == meta["size_bytes"]
    assert whole.headers["etag"] == f'"{meta["sha256"]}"'  # strong: no W/ prefix, the content's own hash
    assert "immutable" in whole.headers["cache-control"]
    part = client.get(url, headers={**trained.user.headers, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{meta['size_bytes']}"
    again = client.get(url, headers={**trained.user.headers, "If-None-Match": whole.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_several_ranges_and_if_range_are_answered_as_for_a_local_file(client, trained):
    """On both stores: S3 objects are streamed by api/object_response.py, local files by FileResponse."""
    url = f"/v1/artifacts/{trained.artifact_ids[0]}"
    whole = client.get(url, headers=trained.user.headers)
    etag = whole.headers["etag"]
    multi = client.get(url, headers={**trained.user.headers, "Range": "bytes=0-4,20-29"})
    assert multi.status_code == 206 and multi.headers["content-type"].startswith("multipart/byteranges")
    assert int(multi.headers["content-length"]) == len(multi.content)
    size = len(whole.content)
    for start, end in ((0, 4), (20, 29)):
        assert f"Content-Range: bytes {start}-{end}/{size}".encode() in multi.content
        assert whole.content[start:end + 1] in multi.content
    stale = client.get(url, headers={**trained.user.headers, "Range": "bytes=0-9", "If-Range": '"another"'})
    assert stale.status_code == 200 and stale.content == whole.content  # changed since: the whole file
    fresh = client.get(url, headers={**trained.user.headers, "Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == whole.content[:10]


def test_an_artifact_whose_object_is_gone_is_a_410_whole_or_in_part(client, settings, trained, objects):
    """On both stores; on S3 a small whole file is one GET (the row knows its size), a range asks first."""
    from kgan_service.models import Artifact

    artifact_id = trained.artifact_ids[0]
    db = Database(settings)
    try:
        with db.session() as s:
            key = s.get(Artifact, artifact_id).path
    finally:
        db.dispose()
    saved = objects.get_bytes(key)
    objects.delete(key)
    try:
        for headers in ({}, {"Range": "bytes=0-9"}):
            r = client.get(f"/v1/artifacts/{artifact_id}", headers={**trained.user.headers, **headers})
            assert assert_problem(r, 410)["title"] == "Artifact file missing"
    finally:
        objects.put_bytes(key, saved)
    assert client.get(f"/v1/artifacts/{artifact_id}", headers=trained.user.headers).content == saved


def test_an_s3_store_can_answer_with_a_presigned_redirect(settings, trained, objects):
    import httpx

    from api.main import create_app
    from kgan_service.store import LocalObjects

    if isinstance(objects, LocalObjects):
        pytest.skip("presigned URLs are the S3 store's; a local folder is always streamed")
    app = create_app(settings.model_copy(update={"artifact_redirect_s": 60}))
    try:
        meta = TestClient(app).get(f"/v1/artifacts/{trained.artifact_ids[0]}/meta", headers=trained.user.headers)
        r = TestClient(app).get(meta.json()["links"]["self"], headers=trained.user.headers, follow_redirects=False)
        assert r.status_code == 307 and r.headers["cache-control"] == "private, no-store"
        # The URL alone is the permission (signed; no API key), and it expires.
        assert "Signature=" in r.headers["location"] and "Expires=" in r.headers["location"]
        assert hashlib.sha256(httpx.get(r.headers["location"]).content).hexdigest() == meta.json()["sha256"]
    finally:
        app.state.db.dispose()
