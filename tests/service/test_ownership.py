"""Every object route, found by walking the app's routes, answers another owner with a 404.

A new route with a path parameter this test does not know fails the test, so it has to be
added here (and thereby checked) rather than slipping through.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from tests.service.conftest import assert_problem

PARAM = re.compile(r"{(\w+)}")


def api_routes(routes) -> list[APIRoute]:
    """All API routes, looking inside included routers (FastAPI keeps those as one entry each)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):
            prefix = getattr(route.include_context, "prefix", "") or ""
            assert not prefix, "routers here carry their own prefix; extend this walker for include prefixes"
            out.extend(api_routes(route.original_router.routes))
    return out


def object_routes(app) -> list[tuple[str, str]]:
    return [(method, r.path) for r in api_routes(app.routes) if PARAM.search(r.path)
            for method in sorted(r.methods) if method != "HEAD"]


def fill(path: str, ids: dict[str, str]) -> str:
    def value(match):
        name = match.group(1)
        assert name in ids, f"route {path} has a parameter {name!r} this test does not know; add it to `ids`"
        return ids[name]

    return PARAM.sub(value, path)


def test_other_owners_objects_are_404_on_every_route(app, client, trained, bob):
    ids = {"job_id": trained.job_id, "model_id": trained.model_id, "dataset_id": trained.dataset_id,
           "artifact_id": trained.artifact_ids[0], "k": "0"}
    routes = object_routes(app)
    assert {p for _, p in routes} >= {"/v1/jobs/{job_id}", "/v1/models/{model_id}", "/v1/datasets/{dataset_id}",
                                      "/v1/artifacts/{artifact_id}", "/v1/models/{model_id}/members/{k}/samples.png"}
    for method, path in routes:
        url = fill(path, ids)
        owner = client.request(method, url, headers=trained.user.headers)
        # The owner reaches the object (a finished job's cancel is a 409, a points model's
        # medoid.png a 422, but never a 404).
        assert owner.status_code in (200, 202, 409, 422), f"{method} {url} fails for its owner: {owner.text}"
        problem = assert_problem(client.request(method, url, headers=bob.headers), 404)
        assert trained.user.name not in problem["detail"]
        assert_problem(client.request(method, url), 401)


def test_lists_show_only_your_own_objects(client, trained, bob):
    for collection in ("/v1/jobs", "/v1/models", "/v1/datasets", "/v1/artifacts"):
        mine = client.get(collection, headers=trained.user.headers).json()
        assert mine["total"] >= 1, collection
        assert client.get(collection, headers=bob.headers).json() == {**mine, "items": [], "total": 0, "next": None}
    assert client.get(f"/v1/artifacts?model_id={trained.model_id}", headers=bob.headers).json()["total"] == 0


def test_cannot_train_on_another_owners_dataset(client, trained, bob):
    params = {"dataset_id": trained.dataset_id, "k": 2, "steps": 5}
    assert_problem(client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=bob.headers), 404)
