"""The processes ``kgan serve`` runs beside its API (the embedded broker, the Celery worker):
started in order, restarted with back-off when one dies, stopped in the reverse order.

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches only ``serve``,
which then stops them in the order that loses nothing: the worker first (its job checkpoints
and goes back to the queue, which needs the broker), the broker last.

A pid file in the data folder names the children. ``serve`` holds an ``flock`` on it while
it runs; the kernel drops the lock however ``serve`` ends, so the next ``serve`` on that
folder knows whether the file's writer is still there. If it is not (it was SIGKILLed, or
the machine's OOM killer took it), its children may still be running: a worker and a second
broker on the same append-only file. The next ``serve`` stops them before it starts its own,
but only processes that are still the ones recorded: the same boot, pid and start time for
the session leader, and for the rest of its session (a worker's pool process, orphaned when
the Celery main process died) the marker this module puts into the children's environment.
A pid alone may since belong to something else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgan_service.workers import pid_alive

log = logging.getLogger("kgan.serve")

MARKER_VARIABLE = "KGAN_SERVE_RUN"  # in every child's environment; inherited by whatever it forks
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long before dying is restarted after the first back-off again
KILL_WAIT_S = 5.0  # after SIGKILL: only the kernel is left to act


# --- what /proc says about a process ---------------------------------------------------------


HAVE_PROC = Path("/proc/self/stat").exists()  # Linux; elsewhere only our own children can be told apart


def boot_id() -> str:
    """Start times count from boot: a record from an earlier boot names no running process."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcStat:
    state: str
    session: int
    started: int  # clock ticks after boot


def proc_stat(pid: int) -> ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; everything after the last ')' may not.
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(state=fields[0], session=int(fields[3]), started=int(fields[19]))


def carries_marker(pid: int, marker: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_VARIABLE}={marker}".encode() in environ.split(b"\0")


@dataclass(frozen=True)
class Recorded:
    """A session leader as the pid file remembers it."""

    name: str
    pid: int
    started: int

    def members(self, marker: str) -> list[int]:
        """Live processes of this child's session: the leader if it is still the recorded
        process, and any process of the session that carries ``marker``."""
        if not HAVE_PROC:
            return [self.pid] if pid_alive(self.pid) else []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = proc_stat(pid)
            if stat is None or stat.state == "Z" or stat.session != self.pid or stat.started < self.started:
                continue
            if (pid == self.pid and stat.started == self.started) or carries_marker(pid, marker):
                found.append(pid)
        return found

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started}


def stop_session(recorded: Recorded, marker: str, deadline: float, hurry: threading.Event,
                 reap: Callable[[], object] = lambda: None) -> None:
    """SIGTERM, then SIGKILL at ``deadline`` (or as soon as ``hurry`` is set): the leader alone
    while it lives (it stops its own children: Celery's warm shutdown has the job checkpoint),
    otherwise every process left in its session. ``reap`` collects our own child's exit
    status, so that it does not linger as a zombie."""

    def left() -> list[int]:
        reap()
        return recorded.members(marker)

    members = left()
    if not members:
        return
    targets = [recorded.pid] if recorded.pid in members else members
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    while (members := left()) and time.monotonic() < deadline and not hurry.is_set():
        time.sleep(0.1)
    if not members:
        return
    log.warning("%s did not stop in time; killing %s", recorded.name, " ".join(map(str, members)))
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + KILL_WAIT_S
    while left() and time.monotonic() < kill_deadline:
        time.sleep(0.05)


# --- the pid file ----------------------------------------------------------------------------


class AlreadyServing(RuntimeError):
    def __init__(self, path: Path, pid: int | None):
        self.pid = pid
        who = f"kgan serve (pid {pid})" if pid else "kgan serve"
        hint = f"stop it first (kill -TERM {pid})" if pid else "stop it first"
        super().__init__(f"another {who} is running on this data folder ({path.parent}); {hint}, "
                         f"or give this one another --data-dir")


class PidFile:
    """``<data dir>/serve.pid``: the running serve and its children, as JSON, under an flock
    that only the running serve holds."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> dict[str, Any] | None:
        """Lock the file and return what an earlier serve left in it (None if nothing usable);
        raise AlreadyServing when a live serve holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            previous = self._parse(fd)
            os.close(fd)
            raise AlreadyServing(self.path, (previous or {}).get("serve", {}).get("pid")) from None
        self._fd = fd
        return self._parse(fd)

    def _parse(self, fd: int) -> dict[str, Any] | None:
        text = os.pread(fd, 1 << 20, 0)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            log.warning("%s is not readable JSON (its writer died mid-write?); ignoring it", self.path)
            return None

    def write(self, content: dict[str, Any]) -> None:
        assert self._fd is not None, "write() before acquire()"
        data = json.dumps(content, indent=1).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """A clean exit leaves no pid file: there is nothing for the next serve to stop."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def stop_leftovers(previous: dict[str, Any] | None, deadline: float, hurry: threading.Event) -> list[str]:
    """Stop the children that a serve which died without stopping them left running; returns
    what was stopped, for the log."""
    if not previous:
        return []
    if not HAVE_PROC:
        log.warning("an earlier kgan serve (pid %s) did not stop its children; without /proc they cannot be "
                    "told from later processes with the same pids, so stop them yourself: %s",
                    previous.get("serve", {}).get("pid"), previous.get("children"))
        return []
    if previous.get("boot_id") != boot_id():
        return []  # the machine restarted since: those processes are gone
    stopped = []
    marker = previous.get("marker", "")
    serve_pid = previous.get("serve", {}).get("pid")
    # Reverse start order: the worker hands its job back through the broker it came with.
    for item in reversed(previous.get("children", [])):
        recorded = Recorded(item["name"], int(item["pid"]), int(item["started"]))
        members = recorded.members(marker)
        if not members:
            continue
        log.warning("an earlier kgan serve (pid %s) ended without stopping its %s; stopping pids %s",
                    serve_pid, recorded.name, " ".join(map(str, members)))
        stop_session(recorded, marker, deadline, hurry)
        stopped.append(f"{recorded.name} ({' '.join(map(str, members))})")
    return stopped


# --- supervised children ---------------------------------------------------------------------


@dataclass
class ChildSpec:
    """How to start one child and how to tell that it is ready to serve."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[subprocess.Popen], bool] | None = None  # polled until true after a start
    ready_timeout_s: float = 30.0
    log_path: Path | None = None  # where its stdout and stderr go (appended); None: serve's own


class ChildFailed(RuntimeError):
    pass


class Child:
    def __init__(self, spec: ChildSpec, marker: str):
        self.spec, self.marker = spec, marker
        self.popen: subprocess.Popen | None = None
        self.recorded: Recorded | None = None
        self.started_at = 0.0
        self.backoff_s = FIRST_BACKOFF_S
        self.restart_at: float | None = None  # set while it is down and waiting for its next start

    @property
    def name(self) -> str:
        return self.spec.name

    def spawn(self, hurry: threading.Event) -> None:
        env = {**self.spec.env, MARKER_VARIABLE: self.marker}
        with contextlib.ExitStack() as files:
            out = files.enter_context(self.spec.log_path.open("ab")) if self.spec.log_path else None
            self.popen = subprocess.Popen(self.spec.argv, env=env, stdout=out,
                                          stderr=subprocess.STDOUT if out else None, start_new_session=True)
        # Popen returns after the exec, so /proc already shows the child's own start time.
        stat = proc_stat(self.popen.pid)
        self.recorded = Recorded(self.name, self.popen.pid, stat.started if stat else 0)
        self.started_at = time.monotonic()
        if self.spec.ready is None:
            return
        deadline = time.monotonic() + self.spec.ready_timeout_s
        while not hurry.is_set():
            if self.popen.poll() is not None:
                raise ChildFailed(f"the {self.name} exited at start with status {self.popen.returncode}")
            if self.spec.ready(self.popen):
                return
            if time.monotonic() > deadline:
                raise ChildFailed(f"the {self.name} was not ready after {self.spec.ready_timeout_s:.0f} s")
            time.sleep(0.1)

    def exited(self) -> bool:
        return self.popen is not None and self.restart_at is None and self.popen.poll() is not None

    def stop(self, deadline: float, hurry: threading.Event) -> None:
        if self.recorded is None or self.popen is None:
            return
        stop_session(self.recorded, self.marker, deadline, hurry, reap=self.popen.poll)
        # The leader is our child: collect its status (it has exited, or was killed just now).
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=KILL_WAIT_S)


class Supervisor:
    """Starts children in order, restarts one that dies (after a back-off that doubles while
    it keeps dying young, up to MAX_BACKOFF_S), counts the restarts, keeps the pid file up to
    date, and stops the children in the reverse order."""

    def __init__(self, pid_file: PidFile, grace_s: float, hurry: threading.Event):
        self.pid_file, self.grace_s, self.hurry = pid_file, grace_s, hurry
        self.marker = uuid.uuid4().hex
        self.children: list[Child] = []
        self.restarts: dict[str, int] = {}  # by child name; read by the API's /metrics
        me = proc_stat(os.getpid())
        self._serve = {"pid": os.getpid(), "started": me.started if me else 0}
        self._save()

    def start(self, spec: ChildSpec) -> subprocess.Popen:
        """Start a child and wait until it is ready; raises ChildFailed if it is not."""
        child = Child(spec, self.marker)
        self.children.append(child)
        self.restarts.setdefault(spec.name, 0)
        try:
            child.spawn(self.hurry)
        finally:
            self._save()
        assert child.popen is not None
        return child.popen

    def check(self) -> None:
        """Notice children that died and start those whose back-off has run out. Called
        from serve's main loop."""
        for child in self.children:
            if child.exited():
                self._schedule_restart(child)
            elif child.restart_at is not None and time.monotonic() >= child.restart_at:
                self._restart(child)

    def _schedule_restart(self, child: Child) -> None:
        assert child.popen is not None and child.recorded is not None
        if time.monotonic() - child.started_at >= STABLE_AFTER_S:
            child.backoff_s = FIRST_BACKOFF_S
        code = child.popen.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        log.warning("the %s (pid %s) %s; starting another in %.0f s", child.name, child.popen.pid, how,
                    child.backoff_s)
        # What it left behind (a worker's pool process, orphaned mid-job) would keep the job's
        # lease alive and compete with the new worker: the job checkpoints and is re-queued.
        child.stop(time.monotonic() + self.grace_s, self.hurry)
        child.restart_at = time.monotonic() + child.backoff_s
        child.backoff_s = min(MAX_BACKOFF_S, child.backoff_s * 2)

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        self.restarts[child.name] += 1
        try:
            child.spawn(self.hurry)
        except (ChildFailed, OSError) as exc:
            log.error("restart %s of the %s failed (%s); trying again in %.0f s", self.restarts[child.name],
                      child.name, exc, child.backoff_s)
            if child.popen is not None and child.popen.poll() is None:
                child.stop(time.monotonic() + KILL_WAIT_S, self.hurry)
            child.restart_at = time.monotonic() + child.backoff_s
            child.backoff_s = min(MAX_BACKOFF_S, child.backoff_s * 2)
        else:
            assert child.popen is not None
            log.warning("the %s is running again as pid %s (restart %s)", child.name, child.popen.pid,
                        self.restarts[child.name])
        finally:
            self._save()

    def stop(self, deadline: float, last_s: float = 0.0) -> None:
        """Stop the children in the reverse of their start order; each but the first-started
        must be done ``last_s`` seconds before ``deadline`` (that time is for the first)."""
        for n, child in enumerate(reversed(self.children)):
            is_last = n == len(self.children) - 1
            child.stop(deadline if is_last else max(time.monotonic(), deadline - last_s), self.hurry)
            log.info("the %s has stopped", child.name)
        self.children.clear()

    def _save(self) -> None:
        self.pid_file.write({"serve": self._serve, "boot_id": boot_id(), "marker": self.marker,
                             "children": [c.recorded.as_json() for c in self.children if c.recorded]})
