"""The Alembic migrations build the schema the code expects, and tear it down, on both databases."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from api.migrate import downgrade, upgrade
from kgan_service.db import make_engine
from kgan_service.models import Base
from tests.service.conftest import PG_ADMIN_URL

TABLES = {"owners", "api_keys", "datasets", "jobs", "models", "artifacts", "workers"}


@pytest.fixture
def empty_database(backend, tmp_path):
    if backend == "embedded":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"kgan_migr_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield "postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_to_head_matches_the_models_and_downgrade_to_base(empty_database):
    assert tables(empty_database) == set()
    upgrade(empty_database)
    assert TABLES | {"alembic_version"} == tables(empty_database)
    engine = make_engine(empty_database)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"the models and the migrations disagree: {diff}"
    downgrade(empty_database)
    assert tables(empty_database) <= {"alembic_version"}
    upgrade(empty_database)  # and back up again: downgrade left nothing in the way
    assert tables(empty_database) >= TABLES

