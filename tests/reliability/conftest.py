"""Fixtures for the fault tests: a whole service made of real processes (broker, API, Celery
workers) over a database of its own, on both backends like tests/service:

- ``embedded``: SQLite, a valkey-server process and the local artifact folder (what `kgan serve` runs);
- ``postgres``: a fresh PostgreSQL database, a redis-server process and an S3 artifact store
  (what compose runs; the S3 server is the tests' own, see tests/_s3.py). So every fault test
  runs on both stores.

The broker is always a process of the test's own, never the shared Redis on 6379, so the
test can kill and restart it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from api.keys import new_key
from api.migrate import upgrade
from kgan_service.db import Database
from kgan_service.models import Job
from kgan_service.settings import Settings
from kgan_service.store import open_store
from tests._procs import Proc, service_env, start_api, start_broker, start_worker, wait_for
from tests._service import free_port
from tests.service.conftest import PG_ADMIN_URL, User, backends


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", backends())


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test's own (the API's reconciler sees every job in its
    database, so tests must not share one), dropped afterwards."""
    import psycopg

    name = f"kgan_rel_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(backend, tmp_path) -> Iterator[str | None]:
    if backend == "postgres":
        with fresh_pg_database() as url:
            yield url
    else:
        yield None  # SQLite in the data folder


@pytest.fixture
def artifact_url(backend, request) -> str | None:
    """None: the local folder under the stack's data folder; for ``postgres``, a prefix of its own in S3."""
    if backend != "postgres":
        return None
    return f"{request.getfixturevalue('s3_store')}/rel-{uuid.uuid4().hex[:10]}"


# Tiny ring8 runs: a few tens of milliseconds a step on a quiet CPU.
FAST = {"dataset": "ring8", "n_points": 2000, "k": 2, "width": 16, "batch_size": 32, "rounds": 1,
        "log_every": 2, "checkpoint_every": 10}


class Stack:
    """One deployment: settings shared by every process, and handles to start and stop them."""

    def __init__(self, backend: str, tmp: Path, database_url: str | None, **overrides: Any):
        self.backend, self.tmp = backend, tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.broker_port, self.api_port = free_port(), free_port()
        self.values: dict[str, Any] = {
            "data_dir": tmp / "data", "database_url": database_url,
            "broker_url": f"redis://127.0.0.1:{self.broker_port}/0", "queue": f"kgan-rel-{uuid.uuid4().hex[:8]}",
            "worker_device": "cpu", "heartbeat_s": 0.5, "lease_s": 5,
            "reconcile_interval_s": 0.5, **overrides}
        self.settings = Settings(**self.values)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(self.settings.db_url)
        self.db = Database(self.settings)
        self.objects = open_store(self.settings.artifact_store_url)
        self.env = service_env(self.values)
        self.procs: list[Proc] = []
        self.broker: Proc | None = None
        self.api: Proc | None = None
        self._n = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"{self._n:02d}-{kind}"

    def start_broker(self) -> Proc:
        self.broker = start_broker(self._name("broker"), self.broker_port, self.tmp / "broker", self.logs,
                                   prefer_redis=self.backend == "postgres")
        self.procs.append(self.broker)
        return self.broker

    def start_api(self) -> Proc:
        self.api = start_api(self._name("api"), self.env, self.api_port, self.logs)
        self.procs.append(self.api)
        return self.api

    def start_worker(self) -> Proc:
        worker = start_worker(self._name("worker"), self.env, self.settings.queue, self.logs)
        self.procs.append(worker)
        return worker

    def user(self) -> User:
        name = f"user-{uuid.uuid4().hex[:8]}"
        return User(name, new_key(self.settings, name).token)

    def client(self, user: User, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=user.headers, timeout=timeout)

    def submit(self, api: httpx.Client, **params: Any) -> str:
        r = api.post("/v1/jobs", json={"kind": "train", "params": {**FAST, **params}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def job_row(self, job_id: str) -> Job:
        """The job as the database holds it (works while the API is down)."""
        with self.db.session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            s.expunge(job)
            return job

    def queued_messages(self) -> list[bytes]:
        client = redis.Redis(host="127.0.0.1", port=self.broker_port, socket_connect_timeout=2)
        try:
            return client.lrange(self.settings.queue, 0, -1)
        finally:
            client.close()

    def wait_job(self, job_id: str, predicate, timeout: float, what: str) -> Job:
        return wait_for(lambda: predicate(j := self.job_row(job_id)) and j, timeout, every=0.05,
                        what=f"job {job_id}: {what}")

    def close(self) -> str:
        for proc in reversed(self.procs):
            proc.stop(grace_s=0)  # the test is over: no need to wait for graceful shutdowns
        self.db.dispose()
        return "\n".join(f"===== {p.name} (exit {p.popen.returncode}) =====\n{p.log_tail()}" for p in self.procs)


@pytest.fixture
def stack_factory(backend, tmp_path, database_url, artifact_url, request):
    stacks: list[Stack] = []

    def make(**overrides: Any) -> Stack:
        stack = Stack(backend, tmp_path / f"stack{len(stacks)}", database_url,
                      **{"artifact_url": artifact_url, **overrides})
        stacks.append(stack)
        return stack

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for stack in stacks:
        logs = stack.close()
        if failed:
            print(logs)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets the fixture above print the processes' logs when the test body failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
