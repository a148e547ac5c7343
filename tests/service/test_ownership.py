"""The authorisation matrix, for every route the app has (found by walking its routes, so a new
route is covered the day it is added): no key → 401, a wrong key → 401, another owner's key on
an existing object → 404; never any of the object's data.

A new route with a path parameter this test does not know, or a new route outside /v1 that is
not declared public here, fails the test, so it has to be added here (and thereby checked)
rather than slipping through.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.routing import APIRoute
from sqlalchemy import update
from starlette.routing import Route

from api.auth import hash_token
from api.keys import new_key
from api.routes.gallery import GALLERY_PATHS
from kgan_service.db import Database
from kgan_service.models import ApiKey
from tests.service.conftest import assert_problem

PARAM = re.compile(r"{(\w+)}")
# Outside /v1 and readable without a key: they reveal no one's data (the gallery's files
# fetch everything they show from /v1 with the key a person types in).
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          *GALLERY_PATHS}
BAD_CREDENTIALS = [
    {},  # no Authorization header
    {"Authorization": "Bearer kgan_not-a-real-key-but-well-formed-000000000000"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "kgan_without_a_scheme"},
]


def api_routes(routes) -> list[Route]:
    """All routes, looking inside included routers (FastAPI keeps those as one entry each)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute | Route):
            out.append(route)
        elif hasattr(route, "original_router"):
            prefix = getattr(route.include_context, "prefix", "") or ""
            assert not prefix, "routers here carry their own prefix; extend this walker for include prefixes"
            out.extend(api_routes(route.original_router.routes))
        else:
            raise AssertionError(f"unknown kind of route {route!r}: teach this walker about it")
    return out


def all_routes(app) -> list[tuple[str, str]]:
    return [(method, r.path) for r in api_routes(app.routes) for method in sorted(r.methods or ())
            if method != "HEAD"]


def object_routes(app) -> list[tuple[str, str]]:
    return [(m, p) for m, p in all_routes(app) if PARAM.search(p)]


def fill(path: str, ids: dict[str, str]) -> str:
    def value(match):
        name = match.group(1)
        assert name in ids, f"route {path} has a parameter {name!r} this test does not know; add it to `ids`"
        return ids[name]

    return PARAM.sub(value, path)


def ids_of(trained) -> dict[str, str]:
    return {"job_id": trained.job_id, "model_id": trained.model_id, "dataset_id": trained.dataset_id,
            "artifact_id": trained.artifact_ids[0], "k": "0"}


def leaks(response, trained) -> list[str]:
    """What of the owner's data a refusal shows (nothing, if it is right)."""
    text = response.text
    found = [s for s in (trained.user.name, trained.user.key, '"sha256"', '"params"', '"tile_sizes"', "run_path")
             if s in text]
    if response.headers.get("content-type", "").startswith("image/"):
        found.append("an image")
    return found


def test_every_route_is_classified(app):
    routes = all_routes(app)
    paths = {p for _, p in routes}
    assert paths >= {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/models/{model_id}", "/v1/datasets/{dataset_id}",
                     "/v1/artifacts/{artifact_id}", "/v1/models/{model_id}/members/{k}/samples.png"}
    unclassified = sorted(p for p in paths if not p.startswith("/v1/") and p not in PUBLIC)
    assert not unclassified, f"routes outside /v1 must be declared public here (or moved under /v1): {unclassified}"


def test_without_a_valid_key_every_v1_route_is_401(app, client, trained):
    ids = ids_of(trained)
    checked = 0
    for method, path in all_routes(app):
        if not path.startswith("/v1/"):
            continue
        url = fill(path, ids)
        for headers in BAD_CREDENTIALS:
            # A body that would be valid for the owner: the refusal must not depend on it.
            r = client.request(method, url, headers=headers,
                               json={"kind": "train", "params": {"dataset": "ring8"}} if method == "POST" else None)
            problem = assert_problem(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer"), (method, url)
            assert not leaks(r, trained), (method, url, problem)
            checked += 1
    assert checked >= 15 * len(BAD_CREDENTIALS)


def test_public_routes_need_no_key(app, client):
    for method, path in all_routes(app):
        if path in PUBLIC:
            assert client.request(method, path).status_code == 200, path


def test_other_owners_objects_are_404_on_every_route(app, client, trained, bob):
    ids = ids_of(trained)
    routes = object_routes(app)
    for method, path in routes:
        url = fill(path, ids)
        etag = '"x"'
        if method != "DELETE":  # the owner's deletes are tested, on objects of their own, in test_deletion.py
            owner = client.request(method, url, headers=trained.user.headers)
            # The owner reaches the object (a finished job's cancel is a 409, a points model's
            # medoid.png a 422, but never a 404).
            assert owner.status_code in (200, 202, 409, 422), f"{method} {url} fails for its owner: {owner.text}"
            etag = owner.headers.get("etag", etag)
        for extra in ({}, {"If-None-Match": etag}):  # a 304 would confirm it exists
            r = client.request(method, url, headers={**bob.headers, **extra})
            problem = assert_problem(r, 404)
            assert not leaks(r, trained), (method, url, problem)
        # An id that exists nowhere gets the very same answer: ids cannot be probed.
        missing = fill(path, {**ids, **{k: "0" * 32 for k in ids if k != "k"}})
        assert client.request(method, missing, headers=bob.headers).json()["title"] == problem["title"]
    # Bob's cancel and deletes changed nothing.
    assert client.get(f"/v1/jobs/{trained.job_id}", headers=trained.user.headers).json()["status"] == "succeeded"
    for thing in (f"models/{trained.model_id}", f"datasets/{trained.dataset_id}"):
        assert client.get(f"/v1/{thing}", headers=trained.user.headers).status_code == 200


def test_lists_show_only_your_own_objects(client, trained, bob):
    for collection in ("/v1/jobs", "/v1/models", "/v1/datasets", "/v1/artifacts"):
        mine = client.get(collection, headers=trained.user.headers).json()
        assert mine["total"] >= 1, collection
        assert client.get(collection, headers=bob.headers).json() == {**mine, "items": [], "total": 0, "next": None}
    for query in (f"model_id={trained.model_id}", f"job_id={trained.job_id}"):
        assert client.get(f"/v1/artifacts?{query}", headers=bob.headers).json()["total"] == 0


def test_cannot_use_another_owners_objects_in_a_job(client, trained, bob):
    bodies = [
        {"kind": "train", "params": {"dataset_id": trained.dataset_id, "k": 2, "steps": 5}},
        {"kind": "train_prior", "params": {"dataset": "mnist", "encoder": "critic", "model_id": trained.model_id}},
        {"kind": "visualise", "params": {"model_id": trained.model_id, "what": "samples"}},
    ]
    for body in bodies:
        problem = assert_problem(client.post("/v1/jobs", json=body, headers=bob.headers), 404)
        assert trained.user.name not in problem["detail"]
    assert client.get("/v1/jobs", headers=bob.headers).json()["total"] == 0


def test_a_revoked_key_is_401(client, settings):
    key = new_key(settings, "revoked-owner").token
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    db = Database(settings)
    try:
        with db.session() as s:
            s.execute(update(ApiKey).where(ApiKey.key_hash == hash_token(key)).values(revoked_at=datetime.now(UTC)))
            s.commit()
    finally:
        db.dispose()
    assert_problem(client.get("/v1/jobs", headers=headers), 401)
