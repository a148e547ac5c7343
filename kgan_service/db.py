"""Engine and sessions. SQLite (embedded) and PostgreSQL (compose) through one code path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kgan_service.settings import Settings

# True while a request that only reads (GET, HEAD) is handled: its SQLite transactions begin
# deferred, so concurrent readers share the database (WAL) instead of queueing, one by one,
# for the write lock that BEGIN IMMEDIATE takes. Set by api.main's middleware.
READ_ONLY: ContextVar[bool] = ContextVar("kgan_db_read_only", default=False)


SQLITE_POOL_SIZE = 40


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # As many pooled connections as the API's thread pool has threads (anyio's default, 40):
        # a connection beyond the pool is opened (with its PRAGMAs) and closed per request, which
        # under 16 concurrent clients was ~6 % of the API's CPU time on cached artifact GETs.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:
            # The API and the worker are separate processes writing one file: WAL lets readers
            # run beside a writer, and busy_timeout makes writers queue instead of failing.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY)
            # when another process wrote in between; IMMEDIATE takes the write lock up front
            # and waits for it under busy_timeout.
            conn.exec_driver_sql("BEGIN" if READ_ONLY.get() else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine plus its session factory; one per process (the app's or the worker's)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.db_url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
