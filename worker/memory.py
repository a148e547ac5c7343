"""What a worker knows about memory: how much its device holds (reported in the worker registry,
so submissions are checked against it), and whether the kernel's OOM killer has struck.

A job that runs out of memory inside Python (MemoryError, torch's allocation errors) is
caught in the job itself (worker/runner.py). A pool process the kernel kills for memory dies
by SIGKILL without a word; SIGKILL alone does not say who sent it (an operator, a supervisor
past its grace period, the OOM killer). The memory cgroup of the worker counts its OOM kills
(cgroup v2 ``memory.events``, v1 ``memory.oom_control``: ``oom_kill N``, counted for the
victim's cgroup on a cgroup limit and on a machine-wide OOM alike). The pool process shares
its parent's cgroup, so the parent compares the count before a job with the count after its
process died: a rise means the OOM killer took it. Where no count can be read, a SIGKILL
stays what it was before (a lost worker, retried).
"""

from __future__ import annotations

from pathlib import Path

from kgan_service.settings import Settings

CGROUP_ROOT_FILE = Path("/proc/self/cgroup")
MOUNTINFO_FILE = Path("/proc/self/mountinfo")


def oom_counter_file() -> Path | None:
    """This process's memory cgroup's OOM counter file, or None where there is none to read."""
    try:
        memberships = CGROUP_ROOT_FILE.read_text().splitlines()
        mounts = MOUNTINFO_FILE.read_text().splitlines()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    v1_mount = v2_mount = None
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        mount_point = fields.split()[4]
        kind, _, options = (tail.split() + ["", "", ""])[:3]
        if kind == "cgroup2":
            v2_mount = mount_point
        elif kind == "cgroup" and "memory" in options.split(","):
            v1_mount = mount_point
    # With the memory controller on a v1 hierarchy, the v2 one has no memory files.
    candidates = ([(v1_mount, v1_path, "memory.oom_control")] if v1_mount and v1_path is not None
                  else [(v2_mount, v2_path, "memory.events")] if v2_mount and v2_path is not None else [])
    for mount, path, name in candidates:
        # Inside a cgroup namespace the listed path may not exist under the mount: then the
        # mount itself is this process's cgroup.
        for folder in (Path(mount) / path.lstrip("/"), Path(mount)):
            if (folder / name).is_file():
                return folder / name
    return None


def oom_kills() -> int | None:
    """How many processes of this process's memory cgroup the OOM killer has killed so far
    (None where the count cannot be read: no cgroup memory controller, not Linux)."""
    counters = oom_counter_file()
    if counters is None:
        return None
    try:
        for line in counters.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def device_memory_bytes(device: str, settings: Settings) -> int:
    """The memory a job on ``device`` can use: a GPU's total memory (capped by
    KGAN_WORKER_MEMORY_BYTES where the operator set it), else KGAN_WORKER_MEMORY_BYTES (by
    default this machine's memory)."""
    limit = settings.worker_memory_bytes
    if not device.startswith("cuda"):
        return limit
    import torch

    index = int(device.partition(":")[2] or 0)
    total = int(torch.cuda.get_device_properties(index).total_memory)
    return min(total, limit) if "worker_memory_bytes" in settings.model_fields_set else total

