"""Prometheus metrics: request latencies (measured here), jobs by state and job durations
(read from SQL at scrape time, so every API replica reports the same truth about workers
that run in other processes)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from kgan_service.db import Database
from kgan_service.models import Job, JobStatus

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86_400, 7 * 86_400)


class JobCollector(Collector):
    def __init__(self, db: Database):
        self.db = db

    def collect(self) -> Iterator:
        with self.db.session() as session:
            counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            finished = session.execute(select(Job.kind, Job.status, Job.started_at, Job.finished_at).where(
                Job.started_at.is_not(None), Job.finished_at.is_not(None))).all()
        jobs = GaugeMetricFamily("kgan_jobs", "Jobs by state", labels=["state"])
        for state in JobStatus:
            jobs.add_metric([state.value], counts.get(state, 0))
        yield jobs
        durations = HistogramMetricFamily("kgan_job_duration_seconds",
                                          "Wall time from a job's first start to its end", labels=["kind", "status"])
        groups: dict[tuple[str, str], list[float]] = {}
        for kind, status, started, ended in finished:
            groups.setdefault((kind, status), []).append(max(0.0, (ended - started).total_seconds()))
        for (kind, status), values in sorted(groups.items()):
            buckets = [(str(b), sum(v <= b for v in values)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            durations.add_metric([kind, status], buckets, sum(values))
        yield durations


class ProcessRestarts(Collector):
    """How often `kgan serve` restarted a child that died, by child (worker, broker). The
    supervisor keeps the counts in this process, beside the API that reports them."""

    def __init__(self, restarts: Mapping[str, int]):
        self.restarts = restarts

    def collect(self) -> Iterator:
        family = CounterMetricFamily("kgan_serve_restarts", "Children of kgan serve started again after dying",
                                     labels=["process"])
        for name, count in sorted(self.restarts.items()):
            family.add_metric([name], count)
        yield family


class GpuMetrics(Collector):
    """Memory and utilisation of each GPU this process can see, read at scrape time where
    torch.cuda can read them: used memory and utilisation come from NVML (the pynvml module),
    which creates no CUDA context in the API. What cannot be read is left out, not reported as
    0; on a machine without a GPU there are no GPU gauges at all."""

    def collect(self) -> Iterator:
        import torch

        if not torch.cuda.is_available():
            return
        used = GaugeMetricFamily("kgan_gpu_memory_used_bytes", "GPU memory in use (all processes)", labels=["gpu"])
        total = GaugeMetricFamily("kgan_gpu_memory_total_bytes", "GPU memory in all", labels=["gpu"])
        busy = GaugeMetricFamily("kgan_gpu_utilization_ratio",
                                 "Share of the last sample period a kernel ran on the GPU", labels=["gpu"])
        for index in range(torch.cuda.device_count()):
            gpu = str(index)
            for family, read in ((used, lambda i=index: torch.cuda.device_memory_used(i)),
                                 (total, lambda i=index: torch.cuda.get_device_properties(i).total_memory),
                                 (busy, lambda i=index: torch.cuda.utilization(i) / 100)):
                try:
                    family.add_metric([gpu], float(read()))
                except (ImportError, RuntimeError, AssertionError, AttributeError):
                    continue  # no NVML here, or this GPU does not answer: leave the gauge out
        for family in (used, total, busy):
            if family.samples:
                yield family


class RequestMetrics:
    """Pure ASGI middleware: latency per route template (not per URL, which would explode)."""

    def __init__(self, app, registry: CollectorRegistry):
        self.app = app
        self.latency = Histogram("kgan_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route", "status"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.latency.labels(scope["method"], template, str(status["code"])).observe(time.perf_counter() - start)
