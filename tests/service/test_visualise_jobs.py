"""train_prior and visualise jobs: a worker renders kgan_core's heavy visualisations and the
learned prior, and the API serves them as artifacts with their numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import assert_problem, make_user
from tests.service.test_datasets import digits, upload, zip_of
from worker.runner import JobRunner


@pytest.fixture(scope="session")
def image_model(client, settings):
    """A tiny k=2 model of 8 px images, trained from an upload by the real runner."""
    user = make_user(settings)
    dataset = upload(client, user, zip_of(digits(24))).json()
    params = {"dataset_id": dataset["id"], "k": 2, "steps": 3, "batch_size": 4, "n_critic": 1, "width": 4,
              "latent_dim": 8, "rounds": 1}
    job = client.post("/v1/jobs", json={"kind": "train", "params": params}, headers=user.headers).json()
    assert JobRunner(settings).run(job["id"]) == "succeeded"
    model_id = client.get(f"/v1/jobs/{job['id']}", headers=user.headers).json()["model_id"]
    return user, dataset["id"], model_id


def run_job(client, settings, user, kind: str, params: dict) -> dict:
    r = client.post("/v1/jobs", json={"kind": kind, "params": params}, headers=user.headers)
    assert r.status_code == 202, r.text
    JobRunner(settings).run(r.json()["id"])
    return client.get(r.headers["Location"], headers=user.headers).json()


def test_visualise_job_makes_an_artifact_with_its_numbers(client, settings, image_model):
    user, _, model_id = image_model
    job = run_job(client, settings, user, "visualise",
                  {"model_id": model_id, "what": "activation-max", "member": 1, "seed": 2,
                   "options": {"steps": 3, "methods": ["pixel", "regularised"]}})
    assert job["status"] == "succeeded", job["error"]
    items = client.get(job["links"]["artifacts"], headers=user.headers).json()["items"]
    assert [(a["kind"], a["member"], a["model_id"]) for a in items] == [("activation-max", 1, model_id),
                                                                         ("activation-max-images", 1, model_id)]
    art, raw = items
    shown = np.load(io.BytesIO(client.get(raw["links"]["self"], headers=user.headers).content))
    assert list(shown.shape) == raw["meta"]["shape"] and shown.shape[0] == 1  # one member's row
    assert shown.min() >= -1 and shown.max() <= 1
    png = client.get(art["links"]["self"], headers=user.headers)
    assert png.headers["etag"] == f'"{art["sha256"]}"' and "immutable" in png.headers["cache-control"]
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    meta = client.get(art["links"]["meta"], headers=user.headers).json()["meta"]
    assert meta["numbers"]["methods"] == ["pixel", "regularised"] and meta["seed"] == 2
    listed = client.get(f"/v1/artifacts?model_id={model_id}&member=1&kind=activation-max", headers=user.headers)
    assert [a["id"] for a in listed.json()["items"]] == [art["id"]]


def test_train_a_prior_then_maximise_through_it(client, settings, image_model):
    user, dataset_id, model_id = image_model
    prior_job = run_job(client, settings, user, "train_prior",
                        {"dataset_id": dataset_id, "image_size": 8, "holdout": 4, "steps": 4, "batch_size": 4,
                         "code_dim": 8, "width": 4, "log_every": 2})
    assert prior_job["status"] == "succeeded", prior_job["error"]
    assert prior_job["progress"]["step"] == 4
    prior = client.get(prior_job["links"]["artifacts"], headers=user.headers).json()["items"][0]
    assert prior["kind"] == "prior" and "heldout_psnr" in prior["meta"]["metrics"]
    job = run_job(client, settings, user, "visualise",
                  {"model_id": model_id, "what": "activation-max", "member": 0, "prior_id": prior["id"],
                   "options": {"steps": 2, "methods": ["prior"]}})
    assert job["status"] == "succeeded", job["error"]


def test_a_visualisation_kgan_core_refuses_fails_with_its_reason(client, settings, image_model):
    user, _, model_id = image_model
    # Out of the visualisation's bounds: refused at submission, with the visualisation's own words.
    params = {"model_id": model_id, "what": "traversal", "member": 0, "options": {"steps": 99}}
    r = client.post("/v1/jobs", json={"kind": "visualise", "params": params}, headers=user.headers)
    assert r.status_code == 422 and "steps must be between 3 and 15" in r.json()["detail"], r.text
    # Only the loaded model can tell (its critic has no such layer): the worker fails it, saying why.
    job = run_job(client, settings, user, "visualise",
                  {"model_id": model_id, "what": "activation-max", "member": 0,
                   "options": {"layer": "no-such-layer", "steps": 2}})
    assert job["status"] == "failed" and "no-such-layer" in job["error"]["detail"]


def test_bad_visualise_and_prior_requests_are_refused_up_front(client, settings, image_model, trained):
    user, _, model_id = image_model
    bad = [
        ({"model_id": model_id, "what": "traversal", "options": {"prior": "/etc/passwd"}}, 422),
        ({"model_id": model_id, "what": "traversal", "options": {"vgg_weights": "/x"}}, 422),
        ({"model_id": model_id, "what": "no-such-picture"}, 422),
        ({"model_id": model_id, "what": "samples", "member": 5}, 422),
        ({"model_id": model_id, "what": "samples", "prior_id": trained.artifact_ids[0]}, 422),
        ({"model_id": trained.model_id, "what": "samples"}, 404),  # another owner's model
        ({"model_id": model_id, "what": "activation-max", "prior_id": trained.artifact_ids[0]}, 404),
    ]
    for params, status in bad:
        assert_problem(client.post("/v1/jobs", json={"kind": "visualise", "params": params}, headers=user.headers),
                       status)
    for params in ({"dataset": "ring8", "steps": 2}, {"dataset": "mnist", "encoder": "critic"},
                   {"dataset": "mnist", "run": "/srv/runs/x"}, {"dataset": "mnist", "image_size": 30}):
        assert_problem(client.post("/v1/jobs", json={"kind": "train_prior", "params": params},
                                   headers=user.headers), 422)
