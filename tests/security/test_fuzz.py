"""Fuzzing the OpenAPI schema with schemathesis, on both backends: for every operation, valid
and invalid requests generated from the schema (a fixed seed, a bounded number per operation
and mode), sent with an API key to the real app; no answer may be a 5xx, and every answer must
match what the schema declares (status code, content type, headers, body schema), with
schemathesis's default checks (which also re-send a request without the key and expect 401).

Ids in paths are either fuzzed (and so refer to nothing) or, for about half the cases,
replaced by the id of a real object of the key's owner, so that the routes' real work is
fuzzed too, not only their 404s (except DELETEs, which would take the objects away).

(Driven through schemathesis's Hypothesis strategies rather than its pytest plugin, whose
lazy fixture loader does not run on pytest 9.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

MAX_EXAMPLES = 30  # per operation and mode: about 1,300 requests per backend, ~15 s


def real_ids(case, trained) -> None:
    if case.method.upper() == "DELETE":  # the shared objects must outlive the fuzzing (test_deletion.py)
        return
    ids = {"job_id": trained.job_id, "model_id": trained.model_id, "dataset_id": trained.dataset_id,
           "artifact_id": trained.artifact_ids[0]}
    for name, value in (case.path_parameters or {}).items():
        if name in ids and len(str(value)) % 2 == 0:  # deterministic, about half of the cases
            case.path_parameters[name] = ids[name]


def test_every_operation_answers_as_its_schema_says(app, trained):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def fuzz(case):
                real_ids(case, trained)
                # Not positive_data_acceptance: a request can fit the schema and still be refused on
                # its meaning (a .png that is not an archive, a net too big for the data): a 422.
                case.call_and_validate(headers=trained.user.headers, excluded_checks=[positive_data_acceptance])

            try:
                fuzz()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.path  # nothing to get wrong (GET /healthz)
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}):\n{exc}")
    assert not failures, "\n\n".join(failures)
