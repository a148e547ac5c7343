"""Limits (issue 15): what the largest accepted request of each kind costs the API, and what
refusing a hostile one costs, in the API process's CPU seconds and peak memory (VmHWM growth).

    .venv/bin/python benchmarks/limits.py

Starts ``python -m api.serve --no-worker`` with the default limits (so the numbers are the
defaults' own) and sends, in turn: JSON bodies (largest accepted: just under
KGAN_MAX_REQUEST_BODY_BYTES; refused: 50 MB with and without a Content-Length), .tar.gz
archives whose notes.txt fills them before one PNG (accepted: 256 MiB inflated; refused:
6 GiB declared), visualise options (largest string accepted; refused: a 5 MB string, NaN) and
a train job too large for any worker. Prints a table.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import serve  # noqa: E402

from tests.security.test_hostile_round2 import inflating_tgz  # noqa: E402
from tests.service.conftest import TINY_TRAIN  # noqa: E402

MiB, GiB = 1024**2, 1024**3


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


def measure(pid: int, label: str, size: int, send) -> dict:
    cpu, peak, wall = cpu_seconds(pid), peak_rss(pid), time.perf_counter()
    r = send()
    return {"request": label, "bytes sent": size, "status": r.status_code,
            "answer bytes": len(r.content), "wall s": round(time.perf_counter() - wall, 2),
            "API CPU s": round(cpu_seconds(pid) - cpu, 2),
            "peak RSS growth MiB": round((peak_rss(pid) - peak) / MiB, 1)}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kgan-limits-") as tmp, serve(Path(tmp), worker=False,
                                                                          log_level="warning") as service:
        pid = service.proc.pid
        headers = {"Authorization": f"Bearer {service.key}"}
        json_headers = {**headers, "Content-Type": "application/json"}
        with httpx.Client(base_url=service.base, headers=headers, timeout=600) as api:
            for _ in range(2):  # warm: imports, the first job, the first upload
                api.post("/v1/jobs", json={"kind": "train", "params": TINY_TRAIN})
                api.post("/v1/datasets", files={"file": ("w.tgz", inflating_tgz(MiB))})
            job = b'{"kind": "train", "params": {"dataset": "ring8", "k": 2, "notes": "'
            limit = 1 * MiB
            near = job + b"x" * (limit - len(job) - 3) + b'"}}'
            rows.append(measure(pid, "JSON body at the cap (1 MiB)", len(near),
                                lambda: api.post("/v1/jobs", content=near, headers=json_headers)))
            huge = job + b"x" * (50 * MiB) + b'"}}'
            rows.append(measure(pid, "JSON body 50 MB, Content-Length", len(huge),
                                lambda: api.post("/v1/jobs", content=huge, headers=json_headers)))
            chunks = lambda: (huge[i:i + MiB] for i in range(0, len(huge), MiB))  # noqa: E731
            rows.append(measure(pid, "JSON body 50 MB, chunked", len(huge),
                                lambda: api.post("/v1/jobs", content=chunks(), headers=json_headers)))
            for label, declared in (("tgz, 256 MiB notes.txt + 1 PNG", 256 * MiB),
                                    ("tgz, 6 GiB notes.txt + 1 PNG", 6 * GiB)):
                data = inflating_tgz(declared)
                rows.append(measure(pid, label, len(data),
                                    lambda d=data: api.post("/v1/datasets", files={"file": ("a.tgz", d)})))
            # No model here: an option that passes its checks reaches the model lookup (404).
            for label, options in (("activation-max layer of 128 chars", {"layer": "x" * 128}),
                                   ("activation-max layer of 129 chars", {"layer": "x" * 129}),
                                   ("activation-max layer of 900 kB", {"layer": "x" * 900_000}),
                                   ("activation-max layer of 5 MB", {"layer": "x" * (5 * 10**6)})):
                body = json.dumps({"kind": "visualise", "params": {"model_id": "no-such-model",
                                                                   "what": "activation-max", "options": options}})
                rows.append(measure(pid, label, len(body),
                                    lambda b=body: api.post("/v1/jobs", content=b, headers=json_headers)))
            huge_job = {"kind": "train", "params": {"dataset": "ring8", "k": 128, "width": 4096, "batch_size": 4096}}
            rows.append(measure(pid, "train k=128 width=4096 batch=4096", len(json.dumps(huge_job)),
                                lambda: api.post("/v1/jobs", json=huge_job)))
            detail = api.post("/v1/jobs", json=huge_job).json()["detail"]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    print()
    print("too-large job:", detail)


if __name__ == "__main__":
    main()
