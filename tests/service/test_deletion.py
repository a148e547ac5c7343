"""DELETE /v1/models/{id} and /v1/datasets/{id}: an owner frees their own storage. The rows and
the files go (checkpoints, run folders, pictures, archives), the stored-bytes count falls, the
API's model cache forgets the model, and what unfinished jobs still need is refused with a 409
that names those jobs."""

from __future__ import annotations

from sqlalchemy import select

from kgan_service import quotas
from kgan_service.db import Database
from kgan_service.models import Owner
from tests.service.conftest import TINY_TRAIN, assert_problem, make_user
from tests.service.test_datasets import digits, upload, zip_of
from worker.runner import JobRunner


def stored(settings, user) -> int:
    db = Database(settings)
    try:
        with db.session() as s:
            owner_id = s.execute(select(Owner.id).where(Owner.name == user.name)).scalar_one()
            return quotas.stored_bytes(s, owner_id)
    finally:
        db.dispose()


def train(client, settings, user, **params) -> tuple[str, str]:
    job = client.post("/v1/jobs", json={"kind": "train", "params": {**TINY_TRAIN, **params}}, headers=user.headers)
    assert job.status_code == 202, job.text
    assert JobRunner(settings).run(job.json()["id"]) == "succeeded"
    return job.json()["id"], client.get(f"/v1/jobs/{job.json()['id']}", headers=user.headers).json()["model_id"]


def visualise(client, user, model_id: str) -> dict:
    job = client.post("/v1/jobs", json={"kind": "visualise", "params": {"model_id": model_id, "what": "samples"}},
                      headers=user.headers)
    assert job.status_code == 202, job.text
    return job.json()


def test_deleting_a_model_removes_it_everything_made_from_it_and_its_bytes(client, settings, app, objects):
    ada = make_user(settings)
    train_job, model_id = train(client, settings, ada)
    shown = visualise(client, ada, model_id)
    assert JobRunner(settings).run(shown["id"]) == "succeeded"
    assert client.get(f"/v1/models/{model_id}/members/0/samples.png", headers=ada.headers).status_code == 200
    assert model_id in app.state.renderer.cached_ids()
    artifacts = client.get(f"/v1/artifacts?model_id={model_id}", headers=ada.headers).json()["items"]
    kinds = {a["kind"] for a in artifacts}
    assert {"checkpoint", "run-summary"} <= kinds and len(kinds) > 2, kinds  # the visualise job's pictures too
    assert objects.list(f"runs/{train_job}") and objects.list(f"runs/{shown['id']}")
    assert stored(settings, ada) == sum(a["size_bytes"] for a in artifacts) > 0

    r = client.delete(f"/v1/models/{model_id}", headers=ada.headers)
    assert r.status_code == 204 and not r.content

    assert_problem(client.get(f"/v1/models/{model_id}", headers=ada.headers), 404)
    assert_problem(client.get(f"/v1/models/{model_id}/members/0/samples.png", headers=ada.headers), 404)
    for a in artifacts:
        assert_problem(client.get(f"/v1/artifacts/{a['id']}", headers=ada.headers), 404)
    assert client.get(f"/v1/artifacts?model_id={model_id}", headers=ada.headers).json()["total"] == 0
    assert not objects.list(f"runs/{train_job}") and not objects.list(f"runs/{shown['id']}")
    assert model_id not in app.state.renderer.cached_ids()
    assert stored(settings, ada) == 0
    # The jobs stay, as the history of what ran; the train job no longer points at a model.
    assert client.get(f"/v1/jobs/{train_job}", headers=ada.headers).json()["model_id"] is None
    assert client.get(f"/v1/jobs/{shown['id']}", headers=ada.headers).json()["status"] == "succeeded"
    # A second delete, and a new job on the deleted model, find nothing.
    assert_problem(client.delete(f"/v1/models/{model_id}", headers=ada.headers), 404)
    assert_problem(client.post("/v1/jobs", json={"kind": "visualise", "params": {"model_id": model_id,
                                                                                  "what": "samples"}},
                               headers=ada.headers), 404)


def test_a_model_that_an_unfinished_job_uses_is_kept_until_the_job_ends(client, settings):
    ada = make_user(settings)
    _, model_id = train(client, settings, ada)
    queued = visualise(client, ada, model_id)
    body = assert_problem(client.delete(f"/v1/models/{model_id}", headers=ada.headers), 409)
    assert body["type"].endswith("in-use") and body["blocking"] == [queued["id"]]
    assert queued["id"] in body["detail"] and "cancel" in body["detail"].lower()
    assert client.get(f"/v1/models/{model_id}", headers=ada.headers).status_code == 200  # nothing went
    assert client.post(f"/v1/jobs/{queued['id']}/cancel", headers=ada.headers).status_code == 202
    assert client.delete(f"/v1/models/{model_id}", headers=ada.headers).status_code == 204


def test_another_owners_model_and_dataset_cannot_be_deleted(client, settings):
    ada, bob = make_user(settings), make_user(settings)
    _, model_id = train(client, settings, ada)
    dataset_id = upload(client, ada, zip_of(digits(4))).json()["id"]
    assert_problem(client.delete(f"/v1/models/{model_id}", headers=bob.headers), 404)
    assert_problem(client.delete(f"/v1/datasets/{dataset_id}", headers=bob.headers), 404)
    assert client.get(f"/v1/models/{model_id}", headers=ada.headers).status_code == 200
    assert client.get(f"/v1/datasets/{dataset_id}", headers=ada.headers).status_code == 200


def test_deleting_an_uploaded_dataset_frees_its_bytes_once_nothing_needs_it(client, settings, objects):
    ada = make_user(settings)
    d = upload(client, ada, zip_of(digits(16))).json()
    folder = f"datasets/{d['id']}"
    assert objects.list(folder) and stored(settings, ada) == d["size_bytes"] > 0
    params = {"dataset_id": d["id"], "k": 2, "steps": 2, "batch_size": 4, "n_critic": 1, "width": 4, "rounds": 0,
              "log_every": 1}
    waiting = client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=ada.headers).json()
    body = assert_problem(client.delete(f"/v1/datasets/{d['id']}", headers=ada.headers), 409)
    assert body["blocking"] == [waiting["id"]] and "unfinished" in body["detail"]
    # Once trained, the model reads the archive (a tile's real images): the dataset stays until it goes.
    assert JobRunner(settings).run(waiting["id"]) == "succeeded"
    model_id = client.get(f"/v1/jobs/{waiting['id']}", headers=ada.headers).json()["model_id"]
    body = assert_problem(client.delete(f"/v1/datasets/{d['id']}", headers=ada.headers), 409)
    assert body["blocking"] == [model_id] and "DELETE /v1/models/" in body["detail"]
    assert client.get(f"/v1/models/{model_id}/members/0/real-tile.png", headers=ada.headers).status_code == 200

    assert client.delete(f"/v1/models/{model_id}", headers=ada.headers).status_code == 204
    r = client.delete(f"/v1/datasets/{d['id']}", headers=ada.headers)
    assert r.status_code == 204, r.text
    assert not objects.list(folder) and stored(settings, ada) == 0
    assert_problem(client.get(f"/v1/datasets/{d['id']}", headers=ada.headers), 404)
    assert client.get(f"/v1/jobs/{waiting['id']}", headers=ada.headers).json()["dataset_id"] is None
    assert client.get("/v1/datasets", headers=ada.headers).json()["total"] == 0


def test_a_builtin_dataset_row_can_go_while_models_trained_on_it_stay(client, settings):
    ada = make_user(settings)
    row = client.post("/v1/datasets", json={"builtin": "ring8"}, headers=ada.headers).json()
    _, model_id = train(client, settings, ada, dataset=None, dataset_id=row["id"])
    # The data is the server's own, not the archive of the row: the model keeps working.
    assert client.delete(f"/v1/datasets/{row['id']}", headers=ada.headers).status_code == 204
    assert client.get(f"/v1/models/{model_id}/members/0/samples.png", headers=ada.headers).status_code == 200
