"""Training throughput: k members as one stacked model vs the sequential loop.

    .venv/bin/python benchmarks/throughput.py [--device cpu|cuda] [--ks 1,3,8,16] [--seconds 3] [--malloc keep|default]

Member-images per second through a full k-GAN step (n_critic critic updates with gradient
penalty + one generator update, for all k members), batched against sequential, measured
in the same process and interleaved so machine noise hits both alike. Also the achieved
FLOP/s of the batched step beside the machine's measured matmul FLOP/s. The ``auto`` columns:
the path ``execution="auto"`` picks from its short race (``kgan_core.train.race``, run here
before the long measurement, as at the start of a run) and its img/s ÷ the faster path's
(the target: within 5 %, i.e. ≥ 0.95).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from kgan_core.config import with_data_defaults
from kgan_core.models import ModelSpec, build_critic, build_generator
from kgan_core.runtime import keep_freed_memory
from kgan_core.train import BatchedMembers, SequentialMembers, TrainConfig, race

NETS = {
    "mlp (points)": ModelSpec("mlp", (2,), 8, 128),
    "thesis 32 px": ModelSpec("thesis", (1, 32, 32), 64, 16),
    "thesis 64 px": ModelSpec("thesis", (3, 64, 64), 64, 16),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(members, spec: ModelSpec, k: int, batch: int, n_critic: int, device: torch.device):
    g = torch.Generator(device).manual_seed(0)
    real = torch.rand(k, batch, *spec.item_shape, generator=g, device=device) * 2 - 1
    eps_shape = (k, batch) + (1,) * len(spec.item_shape)

    def step():
        for _ in range(n_critic):
            z = torch.randn(k, batch, spec.latent_dim, generator=g, device=device)
            eps = torch.rand(*eps_shape, generator=g, device=device)
            members.critic_step(real, z, eps)
        members.generator_step(torch.randn(k, batch, spec.latent_dim, generator=g, device=device))

    return step


def time_step(step, device: torch.device, seconds: float) -> float:
    """Median seconds per step over repeated short windows."""
    step()
    sync(device)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not times:  # a slow step is timed once per window
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_flops(device: torch.device, n: int = 1024, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    reps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ b
        reps += 1
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def forward_flops(module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def step_flops_estimate(generator, critic, spec: ModelSpec, k: int, batch: int, n_critic: int,
                        device: torch.device) -> float:
    """Model FLOPs of one step from forward counts (FlopCounterMode cannot follow the penalty's
    double backward). Per critic update: G forward, D on real + fake (forward + backward = 3×2),
    gradient penalty ≈ 9 D forwards; generator update ≈ 3 G + 3 D forwards."""
    z = torch.randn(k, batch, spec.latent_dim, device=device)
    f_g = forward_flops(generator, z)
    f_d = forward_flops(critic, torch.zeros(k, batch, *spec.item_shape, device=device))
    return n_critic * (f_g + 15 * f_d) + 3 * f_g + 3 * f_d


def table(device: torch.device, ks: list[int], nets: list[str], batch: int = 64, n_critic: int = 5,
          seconds: float = 3.0, amp: bool = False, channels_last: bool = False):
    """Yield one markdown row per (net, k): sequential vs batched member-images/s.

    ``amp`` runs each step under bf16 autocast; ``channels_last`` stores the convolution
    weights channels-last (cuDNN then runs the convolutions in NHWC). Both are for CUDA.
    """
    peak = matmul_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    yield (f"device: {name}; torch {torch.__version__}; batch {batch}/member, n_critic {n_critic}; "
           f"bf16 autocast {'on' if amp else 'off'}; channels-last {'on' if channels_last else 'off'}")
    yield f"measured fp32 matmul: {peak / 1e9:.1f} GFLOP/s\n"
    yield ("| net | k | sequential img/s | batched img/s | batched ÷ sequential | auto picks | auto ÷ faster "
           "| batched ≈GFLOP/s | % of matmul |")
    yield "|---|---|---|---|---|---|---|---|---|"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for net in nets:
        spec = NETS[net]
        config = with_data_defaults(TrainConfig(), spec.item_shape)  # the optimiser a run of this data gets
        for k in ks:
            torch.manual_seed(0)
            generator = build_generator(spec, k).to(device, memory_format=memory_format)
            critic = build_critic(spec, k).to(device, memory_format=memory_format)
            batched = BatchedMembers(generator, critic, config)
            sequential = SequentialMembers(generator, critic, config)
            if channels_last:  # take_member builds fresh (contiguous) copies
                for m in sequential.members:
                    m.generator.to(memory_format=memory_format)
                    m.critic.to(memory_format=memory_format)
            steps = {"batched": make_step(batched, spec, k, batch, n_critic, device),
                     "sequential": make_step(sequential, spec, k, batch, n_critic, device)}
            if amp:
                steps = {mode: autocast(step, device) for mode, step in steps.items()}
            race_times = race(steps, device)
            auto = min(race_times, key=race_times.get)
            per_step = {"batched": [], "sequential": []}
            for _ in range(3):  # interleave: noise on a shared machine hits both alike
                for mode, step in steps.items():
                    per_step[mode].append(time_step(step, device, seconds / 3))
            b, s = statistics.median(per_step["batched"]), statistics.median(per_step["sequential"])
            images = k * batch * (n_critic + 1)  # member-images generated per step
            flops = step_flops_estimate(generator, critic, spec, k, batch, n_critic, device) / b
            auto_vs_faster = min(b, s) / (b if auto == "batched" else s)
            yield (f"| {net} | {k} | {images / s:,.0f} | {images / b:,.0f} | {s / b:.2f}× | {auto} | "
                   f"{auto_vs_faster:.2f} | {flops / 1e9:.1f} | {100 * flops / peak:.0f}% |")


# The compute kernels proper; everything else in a step (elementwise ops, batch norm, copies,
# the optimiser, autograd bookkeeping) is overhead that batching can, in principle, remove.
KERNELS = ("aten::convolution_backward", "aten::_convolution", "aten::mkldnn_convolution",
           "aten::cudnn_convolution", "aten::bmm", "aten::baddbmm", "aten::mm", "aten::addmm")


def kernel_split(step) -> tuple[float, float]:
    """(kernel ms, other ms) of one step by torch.profiler's self CPU time (CPU only)."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    kernels = other = 0.0
    for event in prof.key_averages():
        if event.key in KERNELS:
            kernels += event.self_cpu_time_total
        else:
            other += event.self_cpu_time_total
    return kernels / 1e3, other / 1e3


def breakdown(ks: list[int], nets: list[str], batch: int = 64, n_critic: int = 5, seconds: float = 3.0):
    """Yield markdown rows: where the batched step's CPU time goes, and the most batching could give.

    If the batched step kept only its compute kernels and no overhead at all, it would take its
    kernel time; the timed sequential step ÷ that is the ceiling of batched ÷ sequential with
    these kernels — reaching more needs faster kernels, not better batching.
    """
    device = torch.device("cpu")
    yield ("| net | k | sequential ms/step | batched ms/step | batched: kernels / other ms (profiled) "
           "| ceiling of batched ÷ sequential |")
    yield "|---|---|---|---|---|---|"
    for net in nets:
        spec = NETS[net]
        config = with_data_defaults(TrainConfig(), spec.item_shape)  # the optimiser a run of this data gets
        for k in ks:
            torch.manual_seed(0)
            generator, critic = build_generator(spec, k), build_critic(spec, k)
            sequential = make_step(SequentialMembers(generator, critic, config), spec, k, batch, n_critic, device)
            batched = make_step(BatchedMembers(generator, critic, config), spec, k, batch, n_critic, device)
            s, b = time_step(sequential, device, seconds), time_step(batched, device, seconds)
            kernels, other = kernel_split(batched)
            yield (f"| {net} | {k} | {s * 1e3:,.0f} | {b * 1e3:,.0f} | {kernels:,.0f} / {other:,.0f} "
                   f"| {s * 1e3 / kernels:.2f}× |")


def autocast(step, device: torch.device):
    def wrapped():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            step()
    return wrapped


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--ks", default="1,3,8,16")
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    p.add_argument("--malloc", choices=("keep", "default"), default="keep",
                   help="keep: glibc reuses freed blocks, as `kgan train` and the worker run "
                        "(kgan_core.runtime.keep_freed_memory); default: glibc's own behaviour")
    p.add_argument("--breakdown", action="store_true",
                   help="also profile one step of each path: kernel vs other CPU time (CPU only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    kept = args.malloc == "keep" and keep_freed_memory()
    print(f"malloc: {'freed blocks kept for reuse' if kept else 'glibc default'}")
    for line in table(torch.device(args.device), [int(x) for x in args.ks.split(",")], args.nets.split(","),
                      args.batch, args.n_critic, args.seconds):
        print(line, flush=True)
    if args.breakdown:
        print()
        for line in breakdown([int(x) for x in args.ks.split(",")], args.nets.split(","), args.batch, args.n_critic,
                              args.seconds):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
