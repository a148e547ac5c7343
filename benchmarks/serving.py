"""Serving targets of issue 5: warm samples.png latency against the in-process cost of the same
work, and requests per second for cached artifact GETs under 16 concurrent clients.

    .venv/bin/python benchmarks/serving.py [--requests 200] [--duration 10] [--clients 16] [--workers 1]
                                           [--store local|s3|both]

Starts the service the way a person would (``python -m api.serve``: SQLite, an embedded Redis,
one Celery worker, uvicorn with its access log), trains a tiny 64 px model through it (thesis
net on MNIST, k=2, a few steps: the speed of serving does not depend on how well it draws),
then measures against that real process:

- warm ``samples.png`` (64 images of 64 px, a new seed per request so every one is rendered):
  p50/p99 over HTTP, against the same forward pass + grid + PNG encode timed in this process
  (``Run.sample`` → ``image_grid`` → ``png_bytes``), in interleaved blocks so both see the
  same machine load; target: HTTP p50 ≤ 1.3× in-process p50;
- cached artifact GETs (the smallest artifact of the model, fetched whole; and revalidated
  with If-None-Match → 304) with ``--clients`` concurrent connections for ``--duration``
  seconds, by wrk when it is installed (``apt-get install wrk``), otherwise by an httpx
  asyncio client; target: ≥ 500 requests/s, no errors; beside them, the same load on the bare
  ``/healthz`` route of the same process, the machine's ceiling for any request.

Then the same numbers from the API alone, as docker-compose runs it but without the access
log (``uvicorn --factory api.main:create_app --no-access-log``, the Celery worker stopped).
The client runs on the same machine and competes for its cores. Prints a table.

``--store s3`` (or ``both``, which keeps the local rows beside it): the same API alone again, its
artifact store an S3 bucket on moto's server (``moto[server]``, started in this process on
127.0.0.1) holding a copy of the local folder's objects, so the rows differ only in where the
bytes come from: a model loaded for ``samples.png`` is fetched from S3 (once: then it is
cached), and every artifact GET asks the bucket for the object's size and its bytes. moto is
a Python server sharing this process with the client: a pessimistic stand-in for MinIO or AWS.
Rows named "S3 ÷ local" give the ratios of the medians and rates.

``--workers N`` (N > 1) runs uvicorn's multi-process mode instead. Do not use it with
uvicorn's h11 protocol (what is installed here, without httptools): the worker processes'
connections do not get TCP_NODELAY, so each response's body waits for the client's delayed
ACK and every request takes ~44 ms (≈ 22 requests/s per connection) whatever the server does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TINY_64PX = {"dataset": "mnist", "image_size": 64, "arch": "thesis", "k": 2, "steps": 4, "batch_size": 8,
             "n_critic": 1, "rounds": 0, "log_every": 1, "checkpoint_every": 4, "limit": 512}


# --- the service as real processes ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KGAN_")}
    env.update(KGAN_WORKER_DEVICE="cpu", KGAN_DATA_DIR=str(data_dir),
               **extra)
    return env


def wait_until(fn, timeout: float, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise TimeoutError(f"not ready after {timeout} s")


@dataclass
class Service:
    base: str
    key: str
    data_dir: Path
    proc: subprocess.Popen
    log: Path
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def serve(data_dir: Path, *, worker: bool = True, log_level: str = "info", **env: str):
    """``python -m api.serve`` (the default command); yields once /healthz answers."""
    port = free_port()
    log = data_dir / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "api.serve", "--data-dir", str(data_dir), "--port", str(port),
           "--log-level", log_level] + ([] if worker else ["--no-worker"])
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env_for(data_dir, **env), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, 180)
        key = (data_dir / "key").read_text().strip() if (data_dir / "key").exists() else None
        if key is None:
            found = re.search(r"^\s+(kgan_\S+)\s*$", log.read_text(), re.M)
            if not found:
                raise RuntimeError(f"no API key in {log}")
            key = found.group(1)
            (data_dir / "key").write_text(key)
        yield Service(base, key, data_dir, proc, log)
    finally:
        _stop(proc)


@contextmanager
def uvicorn_workers(data_dir: Path, key: str, workers: int, **extra: str):
    """The API alone, as compose runs it, without the access log (and with N processes if asked)."""
    port = free_port()
    log = data_dir / f"uvicorn-{port}.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    # No broker is needed to read; the reconciler stays off (no one queues anything here).
    env = env_for(data_dir, KGAN_BROKER_URL="redis://127.0.0.1:1/0", KGAN_RECONCILE_INTERVAL_S="0", **extra)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200, 180)
        yield Service(base, key, data_dir, proc, log)
    finally:
        _stop(proc)


def train_through(service: Service, params: dict, timeout: float = 600) -> dict:
    """POST a train job, poll it to the end; the finished job (with model_id)."""
    with httpx.Client(base_url=service.base, headers=service.headers, timeout=60) as api:
        r = api.post("/v1/jobs", json={"kind": "train", "params": params})
        r.raise_for_status()
        location = r.headers["Location"]
        job = wait_until(lambda: (j := api.get(location).json())["status"] not in ("queued", "running") and j,
                         timeout, every=0.5)
    if job["status"] != "succeeded":
        raise RuntimeError(f"training job ended {job['status']}: {job.get('error')}")
    return job


@contextmanager
def s3_copy_of(data_dir: Path):
    """moto's S3 server on a free port, with a bucket holding every object of the local artifact
    folder under the same keys (the rows in SQL name keys, so they are valid on both); yields the
    settings (KGAN_ARTIFACT_URL and the AWS_* variables) that point a process at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from kgan_service.store import open_store

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="bench",
                     aws_secret_access_key="bench-secret", region_name="us-east-1").create_bucket(Bucket="kgan-bench")
        url = "s3://kgan-bench/artifacts"
        os.environ.update(env)  # boto3 reads the credentials from the environment
        local, remote = open_store((data_dir / "artifacts").as_uri()), open_store(url)
        for info in local.list():
            if not info.key.startswith(("worker-scratch/", "uploads/")):
                remote.put_file(info.key, local.path(info.key))
        yield {"KGAN_ARTIFACT_URL": url, **env}
    finally:
        server.stop()


# --- measuring --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def warm_latencies(service: Service, model: dict, run_dir: Path, requests: int, block: int = 20):
    """(HTTP seconds, in-process seconds) for samples.png of 64 images, interleaved in blocks."""
    from kgan_core.render import image_grid, png_bytes
    from kgan_core.run import load_run

    run = load_run(run_dir, device="cpu")
    url = model["members"][0]["links"]["samples"]
    http, local = [], []
    with httpx.Client(base_url=service.base, headers=service.headers, timeout=60) as api:
        for seed in range(5):  # warm both: model loaded into the API's cache, torch's kernels chosen
            api.get(url, params={"n": 64, "seed": 10_000 + seed}).raise_for_status()
            png_bytes(image_grid(run.sample(64, member=0, seed=seed)))
        seed = 0
        while len(http) < requests:
            for _ in range(block):
                seed += 1
                t = time.perf_counter()
                r = api.get(url, params={"n": 64, "seed": seed})
                http.append(time.perf_counter() - t)
                if r.status_code != 200 or not r.content.startswith(b"\x89PNG"):
                    raise RuntimeError(f"samples.png failed: {r.status_code} {r.text[:200]}")
            for i in range(block):
                t = time.perf_counter()
                png_bytes(image_grid(run.sample(64, member=0, seed=seed - block + i + 1)))
                local.append(time.perf_counter() - t)
    return http, local


@dataclass
class Rate:
    tool: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk_rate(url: str, headers: dict[str, str], clients: int, duration: float) -> Rate:
    cmd = ["wrk", "-t", "2", "-c", str(clients), "-d", f"{duration:g}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = float(re.search(r"requests in ([\d.]+)(m?s)", out).group(1))
    if re.search(r"requests in [\d.]+ms", out):
        seconds /= 1000
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0) + (
        sum(int(x) for x in socket_errors.groups()) if socket_errors else 0)

    def latency(q: str) -> float | None:
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return Rate("wrk", total, seconds, errors, latency("50"), latency("99"))


async def _httpx_rate(url: str, headers: dict[str, str], clients: int, duration: float) -> Rate:
    latencies: list[float] = []
    errors = 0
    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout: with httpx's default
    # of also 5 s, a request can go out on a connection the server is closing (a ReadError).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + duration

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    r = await client.get(url)
                    await r.aread()
                    ok = r.status_code in (200, 304)
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
        seconds = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return Rate("httpx", len(latencies), seconds, errors, pct(ms, 50), pct(ms, 99))


def artifact_rate(url: str, headers: dict[str, str], clients: int, duration: float) -> Rate:
    if shutil.which("wrk"):
        return wrk_rate(url, headers, clients, duration)
    return asyncio.run(_httpx_rate(url, headers, clients, duration))


def smallest_artifact(service: Service, model_id: str) -> dict:
    with httpx.Client(base_url=service.base, headers=service.headers, timeout=60) as api:
        items = api.get("/v1/artifacts", params={"model_id": model_id, "limit": 100}).json()["items"]
    return min(items, key=lambda a: a["size_bytes"])


# --- the benchmark --------------------------------------------------------------------------


def measure(service: Service, label: str, model: dict, run_dir: Path, artifact: dict, args) -> list[tuple]:
    http, local = warm_latencies(service, model, run_dir, args.requests)
    url = service.base + artifact["links"]["self"]
    full = artifact_rate(url, service.headers, args.clients, args.duration)
    etag = httpx.get(url, headers=service.headers).headers["etag"]
    revalidated = artifact_rate(url, {**service.headers, "If-None-Match": etag}, args.clients, args.duration)
    # The same-run yardstick: what this machine gives the server's cheapest route (no key, no
    # SQL, no file). The 500 req/s target is absolute; this says how far the machine allows it.
    bare = artifact_rate(service.base + "/healthz", {}, args.clients, args.duration)
    p50_http, p50_local = statistics.median(http), statistics.median(local)
    ratio = p50_http / p50_local
    return [
        (label, "samples.png (64 × 64 px) over HTTP, p50 / p99", f"{p50_http * 1e3:.1f} / {pct(http, 99) * 1e3:.1f} ms",
         "", ""),
        (label, "same forward + grid + PNG in-process, p50 / p99",
         f"{p50_local * 1e3:.1f} / {pct(local, 99) * 1e3:.1f} ms", "", ""),
        (label, "HTTP p50 ÷ in-process p50", f"{ratio:.2f}×", "≤ 1.3×", "yes" if ratio <= 1.3 else "NO"),
        (label, f"artifact GET ({artifact['size_bytes']} B, {args.clients} clients, {full.tool})",
         f"{full.rps:.0f} req/s, {full.errors} errors, p99 {full.p99_ms:.1f} ms", "≥ 500 req/s, 0 errors",
         "yes" if full.rps >= 500 and full.errors == 0 else "NO"),
        (label, f"artifact GET → 304 ({args.clients} clients)",
         f"{revalidated.rps:.0f} req/s, {revalidated.errors} errors, p99 {revalidated.p99_ms:.1f} ms", "", ""),
        (label, f"bare /healthz, same process ({args.clients} clients)",
         f"{bare.rps:.0f} req/s, {bare.errors} errors; artifact GET ÷ healthz {full.rps / bare.rps:.2f}", "", ""),
    ]


def ratios(local: list[tuple], s3: list[tuple]) -> list[tuple]:
    """S3 ÷ local for the samples.png p50 and the artifact GET rates (the rows measure() made)."""
    def first_number(row: tuple) -> float:
        return float(re.match(r"[\d.]+", row[2]).group(0))

    out = []
    for i, what in ((0, "samples.png p50"), (3, "artifact GET rate"), (4, "artifact GET → 304 rate")):
        out.append(("S3 ÷ local", what, f"{first_number(s3[i]) / first_number(local[i]):.2f}×", "", ""))
    return out


def print_table(rows: list[tuple]) -> None:
    header = ("server", "measure", "result", "target", "met")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="samples.png requests (and in-process renders)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per artifact-rate run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn processes for the second run (see above)")
    parser.add_argument("--keep", help="keep the data folder here (default: a temporary one, removed)")
    parser.add_argument("--store", choices=("local", "s3", "both"), default="local",
                        help="artifact store of the API-alone runs: the local folder, S3 (moto), or both, same run")
    args = parser.parse_args(argv)
    data_dir = Path(args.keep or tempfile.mkdtemp(prefix="kgan-serving-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple] = []
    try:
        started = time.perf_counter()
        with serve(data_dir) as service:
            job = train_through(service, TINY_64PX)
            with httpx.Client(base_url=service.base, headers=service.headers, timeout=60) as api:
                model = api.get(f"/v1/models/{job['model_id']}").json()
            run_dir = next((data_dir / "artifacts" / "runs" / job["id"]).glob("attempt-*"))
            artifact = smallest_artifact(service, model["id"])
            print(f"trained {model['id']} (k={model['k']}, item shape {model['item_shape']}) in "
                  f"{time.perf_counter() - started:.0f} s; measuring…", file=sys.stderr)
            rows += measure(service, "api.serve (default)", model, run_dir, artifact, args)
        label = "uvicorn --no-access-log" + (f" --workers {args.workers}" if args.workers > 1 else "")
        if args.store in ("local", "both"):
            with uvicorn_workers(data_dir, service.key, args.workers) as tuned:
                local_rows = measure(tuned, label, model, run_dir, artifact, args)
            rows += local_rows
        if args.store in ("s3", "both"):
            with s3_copy_of(data_dir) as s3_env, \
                    uvicorn_workers(data_dir, service.key, args.workers, **s3_env) as on_s3:
                s3_rows = measure(on_s3, label + ", S3 store (moto)", model, run_dir, artifact, args)
            rows += s3_rows
        if args.store == "both":
            rows += ratios(local_rows, s3_rows)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
