"""Load (issue 6): concurrent clients polling a training job's status and fetching member PNGs
while the job trains, against the service as a person starts it.

    .venv/bin/python benchmarks/load.py [--clients 50] [--duration 60]

Starts ``python -m api.serve`` (SQLite, an embedded Redis, one Celery worker), trains a small
image model through it (thesis net, MNIST at 32 px; its PNGs are what the clients fetch), then
starts a long training job and, once it runs, lets ``--clients`` asyncio clients loop for
``--duration`` seconds, each request picked in turn: the running job's status, a
``samples.png`` (16 images, a random member and seed: each one rendered), the model's JSON.
An error is a transport failure or any status but 200. Reports requests, errors and latency
percentiles per kind, and how far the job trained meanwhile (it must keep going). Prints a
table. ``run_load`` is what tests/security/test_load.py runs, shorter.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import pct, serve, train_through, wait_until  # noqa: E402

PNG_MODEL = {"dataset": "mnist", "image_size": 32, "arch": "thesis", "k": 3, "steps": 3, "batch_size": 8,
             "n_critic": 1, "rounds": 0, "log_every": 1, "checkpoint_every": 3, "limit": 512}
LONG_JOB = {"dataset": "mnist", "image_size": 16, "arch": "thesis", "k": 2, "steps": 1_000_000, "batch_size": 16,
            "n_critic": 1, "rounds": 0, "log_every": 5, "checkpoint_every": 100_000, "limit": 2048}


@dataclass
class Report:
    clients: int
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    answered: dict[int, set[str]] = field(default_factory=dict)  # client -> kinds it got a good answer to
    job_steps: tuple[int, int] = (0, 0)  # the training job's step before and after

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())

    def rows(self) -> list[tuple]:
        rows = []
        for kind in [*sorted(self.latencies), "all"]:
            lat = [x for v in self.latencies.values() for x in v] if kind == "all" else self.latencies[kind]
            errors = self.total_errors if kind == "all" else self.errors.get(kind, 0)
            ms = [x * 1000 for x in lat] or [float("nan")]
            rows.append((kind, len(lat), f"{len(lat) / self.seconds:.0f}", errors, f"{pct(ms, 50):.0f}",
                         f"{pct(ms, 95):.0f}", f"{pct(ms, 99):.0f}", f"{max(ms):.0f}"))
        return rows

    def print(self) -> None:
        header = ("request", "count", "req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms")
        rows = self.rows()
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in rows:
            print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        before, after = self.job_steps
        print(f"\n{self.clients} clients for {self.seconds:.0f} s: {self.requests} requests, {self.total_errors} "
              f"errors; the training job went from step {before} to {after} meanwhile.")


async def hammer(base: str, headers: dict[str, str], job_id: str, model: dict, clients: int,
                 duration: float, seed: int = 0) -> Report:
    report = Report(clients, duration)
    members = [m["links"]["samples"] for m in model["members"]]
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout: with httpx's default
    # of also 5 s, a request can go out on a connection the server is closing (a ReadError).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as api:
        stop = time.perf_counter() + duration

        async def client(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            turn = index
            while time.perf_counter() < stop:
                kind = ("job status", "samples.png", "job status", "model")[turn % 4]
                turn += 1
                if kind == "job status":
                    url, params = f"/v1/jobs/{job_id}", None
                elif kind == "samples.png":
                    url, params = rng.choice(members), {"n": 16, "seed": rng.randrange(1_000_000)}
                else:
                    url, params = f"/v1/models/{model['id']}", None
                t = time.perf_counter()
                try:
                    r = await api.get(url, params=params)
                    ok = r.status_code == 200 and (kind != "samples.png" or r.content.startswith(b"\x89PNG"))
                    problem = None if ok else f"{kind}: {r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, problem = False, f"{kind}: {type(exc).__name__}: {exc}"
                report.latencies.setdefault(kind, []).append(time.perf_counter() - t)
                if ok:
                    report.answered.setdefault(index, set()).add(kind)
                else:
                    report.errors[kind] = report.errors.get(kind, 0) + 1
                    if len(report.examples) < 5:
                        report.examples.append(problem)

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        report.seconds = time.perf_counter() - started
    return report


def run_load(data_dir: Path, clients: int, duration: float) -> Report:
    """The whole scenario against a fresh service in ``data_dir``."""
    with serve(data_dir) as service, httpx.Client(base_url=service.base, headers=service.headers,
                                                  timeout=60) as api:
        job = train_through(service, PNG_MODEL)
        model = api.get(f"/v1/models/{job['model_id']}").json()
        long_job = api.post("/v1/jobs", json={"kind": "train", "params": LONG_JOB}).json()
        status = f"/v1/jobs/{long_job['id']}"
        wait_until(lambda: (j := api.get(status).json())["status"] == "running" and j["progress"]["step"] > 0,
                   300, every=0.5)
        before = api.get(status).json()["progress"]["step"]
        report = asyncio.run(hammer(service.base, service.headers, long_job["id"], model, clients, duration))
        after = api.get(status).json()
        report.job_steps = (before, after["progress"]["step"])
        if after["status"] != "running":
            raise RuntimeError(f"the training job stopped under load: {after['status']} {after.get('error')}")
        api.post(f"{status}/cancel")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kgan-load-") as tmp:
        report = run_load(Path(tmp), args.clients, args.duration)
    report.print()
    for example in report.examples:
        print("error:", example)
    return 1 if report.total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
