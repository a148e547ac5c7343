"""Fuzzing what the schema-driven fuzzer (test_fuzz.py) leaves alone: whole request bodies
(any JSON, any bytes, with or without a JSON content type) and visualise ``options`` (every
visualisation's own option names and unknown ones, with numbers, non-finite floats, booleans,
long strings, long and nested lists). No answer may be a 5xx; every refusal is a short
problem document; an accepted visualise job is cancelled again so the owner's queue stays
under its cap."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from kgan_core.visualise import VISUALISATIONS, options_of

PROBLEM_JSON = "application/problem+json"
MAX_PROBLEM_BYTES = 16_384  # a refusal never quotes what it was sent at length
FUZZ = hypothesis_settings(max_examples=30, derandomize=True, deadline=None, database=None,
                           suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=80) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=100)


@st.composite
def visualise_requests(draw):
    what = draw(st.sampled_from(sorted(VISUALISATIONS)))
    names = st.sampled_from(options_of(what)) if options_of(what) else st.text(max_size=12)
    options = draw(st.dictionaries(names | st.text(max_size=12), values, max_size=4))
    member = draw(st.none() | st.integers(min_value=-1, max_value=3) | st.booleans())
    return what, member, options


def assert_refused_well(r) -> None:
    assert r.status_code < 500, r.text[:500]
    if r.status_code >= 400:
        assert r.headers["content-type"] == PROBLEM_JSON, r.text[:500]
        assert len(r.content) <= MAX_PROBLEM_BYTES, f"a {len(r.content)}-byte problem document"


def test_fuzzed_visualise_options_are_refused_or_accepted_never_crash(client, trained):
    headers = {**trained.user.headers, "Content-Type": "application/json"}

    @FUZZ
    @given(visualise_requests())
    def fuzz(request):
        what, member, options = request
        params = {"model_id": trained.model_id, "what": what, "member": member, "options": options}
        body = json.dumps({"kind": "visualise", "params": params})  # NaN and Infinity as JSON5 literals
        r = client.post("/v1/jobs", content=body, headers=headers)
        assert_refused_well(r)
        assert r.status_code in (202, 413, 422), r.text[:500]
        if r.status_code == 202:
            client.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=trained.user.headers)

    fuzz()


def test_fuzzed_bodies_on_every_json_route_never_crash(client, trained):
    routes = ["/v1/jobs", "/v1/datasets", f"/v1/jobs/{trained.job_id}/cancel"]
    content_types = ["application/json", "text/plain", "application/x-www-form-urlencoded", None]

    @FUZZ
    @given(st.sampled_from(routes), st.sampled_from(content_types),
           st.one_of(values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=2000)))
    def fuzz(route, content_type, body):
        headers = dict(trained.user.headers)
        if content_type:
            headers["Content-Type"] = content_type
        r = client.post(route, content=body, headers=headers)
        assert_refused_well(r)

    fuzz()
