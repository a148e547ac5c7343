"""Visualise options are checked at submission against the visualisation's own signature and
bounds, for the model they name: unknown, mistyped, oversized or non-finite values are a 422
whose message quotes at most a short excerpt, and nothing reaches a worker."""

from __future__ import annotations

import json

import pytest

from tests.service.conftest import assert_problem


def visualise(client, trained, options, member=0, what="samples"):
    params = {"model_id": trained.model_id, "what": what, "member": member, "options": options}
    return client.post("/v1/jobs", json={"kind": "visualise", "params": params}, headers=trained.user.headers)


@pytest.mark.parametrize(("what", "member", "options", "words"), [
    ("samples", 0, {"n": 500}, "n must be between 1 and 256"),  # the points model's own bound
    ("samples", None, {"n": 65}, "n must be between 1 and 64"),  # all members side by side
    ("samples", 0, {"n": True}, "whole number"),  # booleans are no numbers
    ("samples", 0, {"n": "many"}, "whole number"),
    ("samples", 0, {"bogus": 1}, "does not take bogus"),
    ("medoid", None, {}, "shows images"),  # refused for a points model, not failed by a worker
    ("cross-member", None, {"n": 10**9}, "between 1 and 1024"),
])
def test_options_the_visualisation_refuses_are_a_422_at_submission(client, trained, what, member, options, words):
    problem = assert_problem(visualise(client, trained, options, member, what), 422)
    assert words in json.dumps(problem), problem


def test_non_finite_and_oversized_values_are_refused_without_being_echoed(client, trained):
    for raw in ('{"n": NaN}', '{"n": Infinity}', '{"n": -Infinity}'):
        params = json.dumps({"model_id": trained.model_id, "what": "samples", "member": 0})
        body = f'{{"kind": "visualise", "params": {params[:-1]}, "options": {raw}}}}}'
        r = client.post("/v1/jobs", content=body, headers={**trained.user.headers, "Content-Type": "application/json"})
        assert_problem(r, 422)
    huge = "x" * 200_000
    for options in ({"n": huge}, {"n": [1] * 1000}, {"n": [huge]}):
        r = visualise(client, trained, options)
        assert_problem(r, 422)
        assert len(r.content) < 4000 and huge[:1000] not in r.text
    listed = client.get("/v1/jobs", headers=trained.user.headers)
    assert listed.status_code == 200 and len(listed.content) < 200_000


def test_options_within_the_bounds_are_accepted(client, trained):
    r = visualise(client, trained, {"n": 256})
    assert r.status_code == 202, r.text
    r = visualise(client, trained, {}, member=None)  # the visualisation's own defaults
    assert r.status_code == 202, r.text


def gallery_suggestions(kind: str) -> dict[str, dict]:
    """The options the gallery's visualise form pre-fills for a member of a model of this kind."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "api" / "gallery" / "model.js").read_text()
    block = re.search(r"const MEMBER_VISUALISATIONS = (\{.*?\n\});", source, re.S).group(1)
    block = re.sub(r"//[^\n]*", "", block)
    block = re.sub(r'([{,]\s*)([A-Za-z_][\w]*)\s*:', r'\1"\2":', block)  # bare keys quoted
    block = re.sub(r",(\s*[}\]])", r"\1", block)  # no trailing commas in JSON
    return json.loads(block)[kind]


def test_the_gallerys_suggested_options_are_accepted_for_a_points_model(client, trained):
    suggestions = gallery_suggestions("points")
    assert "samples" in suggestions
    for what, options in suggestions.items():
        member = None if what in ("cross-member", "training-curves") else 0
        r = visualise(client, trained, options, member=member, what=what)
        assert r.status_code == 202, (what, options, r.text)
