"""`kgan serve --gpus`: one worker process per GPU, each seeing only its own. On a machine
without a GPU, CUDA_VISIBLE_DEVICES stands in for the device list: the choice of GPUs and
every worker's environment are what this checks; training on them needs a GPU."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from api import serve
from kgan_service.settings import Settings
from tests._procs import Proc, service_env, start_broker, wait_for
from tests._service import free_port


def parse(*argv: str):
    parser = serve.argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_gpus_all_is_every_visible_gpu_and_ids_must_be_visible():
    assert serve.worker_gpus(None, ["0", "1"]) is None  # no --gpus: one worker, as before
    assert serve.worker_gpus("all", ["0", "1"]) == ["0", "1"]
    assert serve.worker_gpus("1", ["0", "1"]) == ["1"]
    assert serve.worker_gpus(" 0, 1 ", ["0", "1"]) == ["0", "1"]
    with pytest.raises(serve.GpuChoiceError, match=r"GPU 2 is not visible here \(visible: 0, 1\)"):
        serve.worker_gpus("0,2", ["0", "1"])
    with pytest.raises(serve.GpuChoiceError, match="no GPU is visible here"):
        serve.worker_gpus("all", [])
    with pytest.raises(serve.GpuChoiceError, match="distinct GPU ids"):
        serve.worker_gpus("0,0", ["0", "1"])


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-5a1c")
    assert serve.visible_gpus() == ["2", "GPU-5a1c"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert serve.visible_gpus() == []


def test_arguments_are_checked_with_messages_that_say_what_to_change(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert serve.check_arguments(parse("--gpus", "0,1")) == (None, ["0", "1"])
    assert serve.check_arguments(parse()) == (None, None)
    error, _ = serve.check_arguments(parse("--gpus", "3"))
    assert "GPU 3 is not visible here (visible: 0, 1)" in error
    error, _ = serve.check_arguments(parse("--gpus", "all", "--no-worker"))
    assert "--no-worker starts no worker" in error


def test_each_worker_sees_only_its_gpu_and_trains_on_it(tmp_path):
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    specs = serve.worker_specs(settings, ["0", "1"])
    assert [s.name for s in specs] == ["worker-gpu0", "worker-gpu1"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1"]
    assert all(s.env["KGAN_WORKER_DEVICE"] == "cuda" for s in specs)
    nodes = [s.argv[s.argv.index("--hostname") + 1] for s in specs]
    assert len(set(nodes)) == 2  # Celery refuses two workers with one node name
    (single,) = serve.worker_specs(settings, None)
    assert single.name == "worker"
    assert single.env.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")  # left as it was


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


@pytest.mark.slow
def test_workers_only_starts_one_worker_per_listed_gpu_and_stops_them(tmp_path):
    """A worker host as compose runs it (`kgan serve --workers-only --gpus 0,1`), with a fake
    two-GPU device list: two Celery workers start, each with one GPU id, and a SIGTERM stops both."""
    (tmp_path / "logs").mkdir()
    port = free_port()
    broker = start_broker("broker", port, tmp_path / "broker", tmp_path / "logs")
    env = service_env({"data_dir": tmp_path / "data", "broker_url": f"redis://127.0.0.1:{port}/0"})
    env["CUDA_VISIBLE_DEVICES"] = "0,1"
    proc = Proc("workers", [sys.executable, "-m", "api.serve", "--workers-only", "--gpus", "0,1"], env,
                tmp_path / "logs")
    pid_file = tmp_path / "data" / f"workers-{os.uname().nodename}.pid"
    try:
        def children() -> list[dict] | None:
            assert proc.alive(), proc.log_tail()
            try:
                listed = json.loads(pid_file.read_text())["children"]
            except (OSError, ValueError, KeyError):
                return None
            return listed if len(listed) == 2 else None

        listed = wait_for(children, 120, what="two workers in the pid file")
        assert [c["name"] for c in listed] == ["worker-gpu0", "worker-gpu1"]
        seen = [environ_of(c["pid"]) for c in listed]
        assert [e["CUDA_VISIBLE_DEVICES"] for e in seen] == ["0", "1"]
        assert all(e["KGAN_WORKER_DEVICE"] == "cuda" for e in seen)
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, proc.log_tail()
        wait_for(lambda: not any(Path(f"/proc/{c['pid']}").exists() for c in listed), 30,
                 what="both workers to exit")
    finally:
        proc.stop()
        broker.stop()


def gpu_gauges() -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from api.metrics import GpuMetrics

    registry = CollectorRegistry()
    registry.register(GpuMetrics())
    return generate_latest(registry).decode()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_there_are_no_gpu_gauges():
    assert "kgan_gpu" not in gpu_gauges()


def test_gpu_gauges_report_what_can_be_read_and_leave_out_the_rest(monkeypatch):
    # Two GPUs whose memory NVML reads, and no NVML utilisation (pynvml not installed).
    def no_nvml(_index):
        raise ModuleNotFoundError("pynvml does not seem to be installed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device_memory_used", lambda i: (i + 1) * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: type("Properties", (), {"total_memory": 141 * 2**30})())
    monkeypatch.setattr(torch.cuda, "utilization", no_nvml)
    text = gpu_gauges()
    assert 'kgan_gpu_memory_used_bytes{gpu="1"} 2.147483648e+09' in text
    assert 'kgan_gpu_memory_total_bytes{gpu="0"}' in text
    assert "kgan_gpu_utilization_ratio" not in text
