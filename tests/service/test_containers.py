"""The compose file and Dockerfile, checked without a Docker engine: the compose file must
validate against the Compose Specification and wire the services the way docs/architecture.md §2 describes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

from kgan_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_validates_against_the_compose_spec():
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_services_start_in_order_and_share_the_artifact_volume():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    for name in ("postgres", "redis", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
        assert "artifacts:/data" in services[name]["volumes"]
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == "all"
    # Every GPU the container gets has a worker of its own (api/serve.py --gpus all).
    assert services["worker"]["command"][:5] == ["python", "-m", "api.serve", "--workers-only", "--gpus"]


def test_every_kgan_variable_in_compose_is_a_real_setting():
    fields = {f"KGAN_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        unknown = {k for k in env if k.startswith("KGAN_")} - fields
        assert not unknown, f"{name} sets {unknown}, which no setting reads"
    settings = Settings(**{k[5:].lower(): v for k, v in compose()["services"]["worker"]["environment"].items()
                           if k.startswith("KGAN_")})
    assert settings.db_url.startswith("postgresql+psycopg://") and settings.worker_device == "cuda"


def test_dockerfile_copies_what_exists_and_runs_the_real_entry_points():
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repository"
    assert "api.main:create_app" in text and (ROOT / "api" / "main.py").is_file()
    # The worker service runs `kgan serve --workers-only`, which starts the Celery app's workers.
    from api.serve import worker_command

    assert compose()["services"]["worker"]["command"][:3] == ["python", "-m", "api.serve"]
    assert "worker.celery_app" in worker_command(Settings()) and (ROOT / "worker" / "celery_app.py").is_file()
    pins = dict(re.findall(r'"(torch|torchvision)==([\d.]+)"', (ROOT / "pyproject.toml").read_text()))
    assert f"torch=={pins['torch']}" in text and f"torchvision=={pins['torchvision']}" in text
