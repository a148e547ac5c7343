"""The compose files and Dockerfile, checked without a Docker engine: each compose file must
validate against the Compose Specification and wire the services the way docs/architecture.md §2
describes. Values are read the way `docker compose` reads them, ``${VAR:-default}`` and
``${VAR:?message}`` included (``interpolate``), for a given environment."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kgan_service.queue import queue_for_device
from kgan_service.settings import Settings
from kgan_service.store import S3Objects, open_store

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.shared.yml", "docker-compose.worker.yml")

# What a GPU host gets from the first host's .env (README, "Add a GPU host").
FIRST_HOST_ENV = {"SERVICES_HOST": "10.0.0.5", "POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redissecret",
                  "MINIO_ROOT_PASSWORD": "minio-root-secret", "S3_SECRET_ACCESS_KEY": "s3-secret-key"}


def compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset or empty: `docker compose` stops with the message."""


_REFERENCE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` (a loaded compose file or part of one) with every ``${...}`` replaced as compose does."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        given = env.get(name, "")
        if op == ":?" and not given:
            raise MissingVariable(f"{name}: {arg}")
        return given or (arg if op == ":-" else "")

    return _REFERENCE.sub(replace, value)


def kgan_settings(environment: dict[str, str]) -> Settings:
    return Settings(**{k[5:].lower(): v for k, v in environment.items() if k.startswith("KGAN_")})


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_validates_against_the_compose_spec(name):
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose(name)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_services_start_in_order():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "minio", "minio-bucket", "migrate", "api", "worker"}
    for name in ("postgres", "redis", "minio", "api"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["minio-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["minio-bucket"]["restart"] == services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"] == deps["minio-bucket"] == {"condition": "service_completed_successfully"}
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == "all"
    # Every GPU the container gets has a worker of its own (api/serve.py --gpus all).
    assert services["worker"]["command"][:5] == ["python", "-m", "api.serve", "--workers-only", "--gpus"]


def test_images_from_elsewhere_are_pinned():
    for name in COMPOSE_FILES:
        for service, spec in compose(name)["services"].items():
            image = spec.get("image")
            if image and not image.startswith("kgan:"):
                repository, _, tag = image.partition(":")
                assert tag and tag != "latest", f"{name}: {service} runs {image} without a pinned tag"
    services = compose()["services"]
    assert re.fullmatch(r"minio/minio:RELEASE\.[\dT-]+Z", services["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.[\dT-]+Z", services["minio-bucket"]["image"])


def test_no_worker_mounts_a_volume_and_no_volume_is_shared():
    # Workers on other hosts could not see it; everything they share goes through MinIO.
    for name in COMPOSE_FILES:
        services = compose(name)["services"]
        mounts: dict[str, list[str]] = {}
        for service, spec in services.items():
            if "worker" in service:
                assert not spec.get("volumes"), f"{name}: {service} mounts {spec['volumes']}"
            for volume in spec.get("volumes", []):
                source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
                mounts.setdefault(source, []).append(service)
        shared = {source: users for source, users in mounts.items() if len(users) > 1}
        assert not shared, f"{name}: volumes mounted by more than one service: {shared}"


@pytest.mark.parametrize("env", [{}, FIRST_HOST_ENV], ids=["local-defaults", "own-passwords"])
def test_api_and_workers_use_the_bucket_the_bucket_service_creates(env):
    services = interpolate(compose()["services"], env)
    bucket_env = services["minio-bucket"]["environment"]
    script = services["minio-bucket"]["command"][0]
    for step in ("mc alias set store http://minio:9000", 'mc mb --ignore-existing "store/$S3_BUCKET"',
                 'mc admin user add store "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY"', "mc admin policy attach"):
        assert step in script
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == bucket_env["MINIO_ROOT_PASSWORD"]
    assert len(bucket_env["MINIO_ROOT_PASSWORD"]) >= 8 and len(bucket_env["S3_SECRET_ACCESS_KEY"]) >= 8
    for name in ("api", "worker", "migrate"):
        environment = services[name]["environment"]
        store = open_store(kgan_settings(environment).artifact_store_url, environment)
        assert isinstance(store, S3Objects) and store.bucket == bucket_env["S3_BUCKET"], name
        assert store.endpoint_url == "http://minio:9000"
        assert environment["AWS_ACCESS_KEY_ID"] == bucket_env["S3_ACCESS_KEY_ID"]
        assert environment["AWS_SECRET_ACCESS_KEY"] == bucket_env["S3_SECRET_ACCESS_KEY"]
        assert f"redis://:{services['redis']['environment']['REDISCLI_AUTH']}@redis:6379/0" == \
            environment["KGAN_BROKER_URL"]
    if env:
        assert services["api"]["environment"]["AWS_SECRET_ACCESS_KEY"] == env["S3_SECRET_ACCESS_KEY"]


def test_credentials_are_variables_not_literals():
    secret = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|AUTH")
    for name in COMPOSE_FILES:
        for service, spec in compose(name)["services"].items():
            env = spec.get("environment") or {}
            for key, value in env.items():
                if secret.search(key):
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:[-?][^}]*)?\}", str(value)), f"{name}: {service} {key}"


def test_every_kgan_variable_in_compose_is_a_real_setting():
    fields = {f"KGAN_{name.upper()}" for name in Settings.model_fields}
    for file in COMPOSE_FILES:
        for name, service in interpolate(compose(file)["services"], FIRST_HOST_ENV).items():
            env = service.get("environment") or {}
            unknown = {k for k in env if k.startswith("KGAN_")} - fields
            assert not unknown, f"{file}: {name} sets {unknown}, which no setting reads"
            if any(k.startswith("KGAN_") for k in env):
                kgan_settings(env)  # every value valid
    settings = kgan_settings(interpolate(compose()["services"]["worker"]["environment"], {}))
    assert settings.db_url.startswith("postgresql+psycopg://") and settings.worker_device == "cuda"


@pytest.mark.parametrize("device", [None, "auto", "cpu", "cuda", "cuda:1"])
def test_on_one_host_every_job_reaches_a_worker(device):
    services = interpolate(compose()["services"], {})
    sender = kgan_settings(services["api"]["environment"])
    consumed = set(kgan_settings(services["worker"]["environment"]).worker_queue_names)
    assert queue_for_device(device, sender) in consumed


def test_the_worker_file_starts_only_workers():
    workers = compose("docker-compose.worker.yml")
    assert set(workers["services"]) == {"worker", "cpu-worker"} and not workers.get("volumes")
    for name, spec in workers["services"].items():
        assert spec["command"][:4] == ["python", "-m", "api.serve", "--workers-only"], name
        assert not spec.get("depends_on") and not spec.get("ports"), name
    gpu, cpu = workers["services"]["worker"], workers["services"]["cpu-worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "--gpus" not in cpu["command"] and "deploy" not in cpu
    # A plain `up` starts the GPU workers only; a CPU-only host names cpu-worker.
    assert "profiles" not in gpu and cpu["profiles"] == ["cpu"]


def test_worker_hosts_reach_the_first_hosts_services_and_route_like_it():
    services = interpolate(compose("docker-compose.worker.yml")["services"], FIRST_HOST_ENV)
    first = interpolate(compose()["services"], FIRST_HOST_ENV)
    for name, device, queues in (("worker", "cuda", ("gpu", "kgan", "cpu")), ("cpu-worker", "cpu", ("cpu",))):
        environment = services[name]["environment"]
        settings = kgan_settings(environment)
        assert settings.db_url == "postgresql+psycopg://kgan:pg-secret@10.0.0.5:5432/kgan"
        assert settings.broker_url == "redis://:redissecret@10.0.0.5:6379/0"
        store = open_store(settings.artifact_store_url, environment)
        assert isinstance(store, S3Objects) and store.endpoint_url == "http://10.0.0.5:9000"
        assert store.url == open_store(first["api"]["environment"]["KGAN_ARTIFACT_URL"]).url
        assert settings.worker_device == device and settings.worker_queue_names == queues
        # A job this worker hands back (SIGTERM) goes where the API would have sent it.
        for key in ("KGAN_QUEUE", "KGAN_GPU_QUEUE", "KGAN_CPU_QUEUE"):
            assert environment.get(key) == first["api"]["environment"].get(key), key


@pytest.mark.parametrize("variable", ["SERVICES_HOST", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_SECRET_ACCESS_KEY"])
def test_the_worker_file_refuses_to_start_without_a_required_variable(variable):
    workers = compose("docker-compose.worker.yml")
    env = {k: v for k, v in FIRST_HOST_ENV.items() if k != variable}
    with pytest.raises(MissingVariable, match=f"^{variable}: set {variable}"):
        interpolate(workers, env)
    env[variable] = ""  # empty counts as missing, as in compose
    with pytest.raises(MissingVariable, match=f"^{variable}: "):
        interpolate(workers, env)


def test_sharing_the_first_hosts_services_publishes_them_and_requires_passwords():
    shared = compose("docker-compose.shared.yml")
    assert set(shared["services"]) <= set(compose()["services"])
    published = interpolate(shared, FIRST_HOST_ENV)["services"]
    assert {name: spec["ports"] for name, spec in published.items() if "ports" in spec} == {
        "postgres": ["10.0.0.5:5432:5432"], "redis": ["10.0.0.5:6379:6379"], "minio": ["10.0.0.5:9000:9000"]}
    assert "redissecret" in published["redis"]["command"]
    # The local defaults (kgan, ...) are refused once other machines can reach the services.
    for variable in ("SERVICES_HOST", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD",
                     "S3_SECRET_ACCESS_KEY"):
        with pytest.raises(MissingVariable, match=f"^{variable}: "):
            interpolate(shared, {k: v for k, v in FIRST_HOST_ENV.items() if k != variable})
    # Without the overlay nothing but the API is published.
    assert [name for name, spec in compose()["services"].items() if spec.get("ports")] == ["api"]


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
    # the worker processes it starts take the host's queues, not only the default one
    argv = worker_command(Settings(queue="kgan", worker_queues="gpu, kgan,cpu"))
    assert argv[argv.index("--queues") + 1] == "gpu,kgan,cpu"
    argv = worker_command(Settings(queue="kgan"))
    assert argv[argv.index("--queues") + 1] == "kgan"
    pins = dict(re.findall(r'"(torch|torchvision)==([\d.]+)"', (ROOT / "pyproject.toml").read_text()))
    assert f"torch=={pins['torch']}" in text and f"torchvision=={pins['torchvision']}" in text
