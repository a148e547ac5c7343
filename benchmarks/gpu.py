"""The GPU check, in one run of about 8 minutes on a CUDA card (BENCHMARKS.md §GPU):

    .venv/bin/python benchmarks/gpu.py                        # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --device cpu --tiny    # every section with tiny sizes (tests/test_nn.py)

1. correctness on the device: the batched step matches the sequential reference (mlp,
   thesis, resize, dcgan64), a checkpoint written on the device loads and samples the same
   on the device and on the CPU, and every visualisation renders;
2. throughput: batched ÷ sequential and the path execution="auto" picks, for each net and k,
   in fp32 and with bf16 autocast (channels-last convolutions on CUDA), and once with
   torch.compile on the stacked dcgan64 model;
3. memory: peak device memory per member at 64 px and the largest k that fits;
4. wall clock: the README's MNIST k=10 run and a dcgan64 run, each stopped at a time budget
   and projected to its full length.

Each section prints markdown; a failed check prints FAIL with its numbers and the script
exits 1. bf16 autocast and channels-last are for CUDA (tensor cores, NHWC cuDNN kernels); on
CPU they only slow a step down, so nothing here changes what runs on CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import NETS, autocast, make_step, matmul_flops, sync, time_step  # noqa: E402

from kgan_core.checkpoint import load_checkpoint  # noqa: E402
from kgan_core.config import with_data_defaults  # noqa: E402
from kgan_core.models import ModelSpec, build_critic, build_generator  # noqa: E402
from kgan_core.run import load_run  # noqa: E402
from kgan_core.train import BatchedMembers, SequentialMembers, TrainConfig, race, train  # noqa: E402
from kgan_core.visualise import VISUALISATIONS, visualise  # noqa: E402

GPU_NETS = NETS | {"dcgan64": ModelSpec("dcgan64", (3, 64, 64), 100, 32)}
IMAGES_64 = ("thesis 64 px", "dcgan64")

# Tiny training runs for the correctness checks: each arch on data of its shape.
CORRECTNESS_RUNS = {
    "mlp": dict(dataset="ring8", n_points=400),
    "thesis": dict(dataset="mnist", image_size=16, limit=64, width=4),
    "resize": dict(dataset="mnist", image_size=16, limit=64, width=4),
    "dcgan64": dict(dataset="mnist", image_size=64, limit=32, width=4, batch_size=4),
}
# Options that keep every visualisation to seconds (the defaults are for the gallery).
QUICK_OPTIONS = {
    "samples": {"n": 8}, "medoid": {"n": 16}, "real-tile": {"n": 8}, "cross-member": {"n": 8},
    "frozen-latent": {"n": 4}, "traversal": {"steps": 3},
    "principal-directions": {"components": 2, "random": 4, "shown_random": 1, "steps": 3, "n_base": 64},
    "activation-max": {"steps": 4, "methods": ["pixel"]},
    "channel-atlas": {"steps": 4, "n": 4},
}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, name: str, ok: bool, detail: str) -> None:
        print(f"| {name} | {'ok' if ok else 'FAIL'} | {detail} |", flush=True)
        if not ok:
            self.failures.append(name)


# --- 1. correctness ----------------------------------------------------------------------------


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a)


def correctness(device: torch.device, out: Path, report: Report, archs: list[str]) -> None:
    print("\n### Correctness on the device\n\n| check | result | numbers |\n|---|---|---|", flush=True)
    if device.type == "cuda":  # TF32 matmuls differ from the sequential reference by more than rounding
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    common = dict(k=3, steps=6, rounds=1, batch_size=8, n_critic=2, log_every=3, checkpoint_every=6,
                  device=str(device))
    for arch in archs:
        data = CORRECTNESS_RUNS[arch]
        config = common | {"arch": arch} | data
        for execution in ("batched", "sequential"):
            train(TrainConfig(**config, execution=execution), out / f"{arch}-{execution}")
        a, b = load_checkpoint(out / f"{arch}-batched"), load_checkpoint(out / f"{arch}-sequential")
        gap = max(max_difference(a.generator, b.generator), max_difference(a.critic, b.critic))
        report.check(f"{arch}: batched step = sequential", gap < 1e-3 and torch.equal(a.assignment, b.assignment),
                     f"largest weight difference {gap:.1e} after 6 steps (tolerance 1e-3)")
    run_dir = out / "thesis-batched"
    on_device, on_cpu = load_run(run_dir, device=device), load_run(run_dir, device="cpu")
    same = torch.equal(on_device.sample(16, member=1, seed=3).cpu(), on_device.sample(16, member=1, seed=3).cpu())
    # The same z on both (a seed draws different numbers on CUDA than on the CPU).
    z = torch.randn(on_cpu.k, 8, on_cpu.spec.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gap = float((on_device.generator(z.to(device)).cpu() - on_cpu.generator(z)).abs().max())
    report.check("checkpoint round trip", same and gap < 1e-3,
                 f"same seed same samples on {device.type}: {same}; {device.type} vs cpu samples differ by {gap:.1e}")
    for what, entry in VISUALISATIONS.items():
        started = time.perf_counter()
        try:
            vis = visualise(on_device, what, 0 if entry.per_member_only or what != "cross-member" else None,
                            seed=0, **QUICK_OPTIONS.get(what, {}))
            path, _ = vis.save(out / "pictures" / f"{what}.png")
            report.check(f"visualise {what}", path.is_file(),
                         f"{vis.image.width}×{vis.image.height} px in {time.perf_counter() - started:.1f} s")
        except Exception as exc:  # every kind is tried; the failure is the finding
            report.check(f"visualise {what}", False, f"{type(exc).__name__}: {exc}")


# --- 2. throughput ---------------------------------------------------------------------------


def members_of(spec: ModelSpec, k: int, device: torch.device, channels_last: bool):
    config = with_data_defaults(TrainConfig(), spec.item_shape)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    generator = build_generator(spec, k).to(device, memory_format=memory_format)
    critic = build_critic(spec, k).to(device, memory_format=memory_format)
    batched, sequential = BatchedMembers(generator, critic, config), SequentialMembers(generator, critic, config)
    for member in sequential.members:  # take_member builds fresh (contiguous) copies
        member.generator.to(memory_format=memory_format)
        member.critic.to(memory_format=memory_format)
    return batched, sequential


def throughput(device: torch.device, nets: list[str], ks: list[int], batch: int, n_critic: int, seconds: float,
               precisions: list[str], compile_k: int | None) -> None:
    gpu = device.type == "cuda"
    print(f"\n### Throughput (batch {batch}/member, n_critic {n_critic}; channels-last {'on' if gpu else 'off'})\n")
    print(f"measured fp32 matmul: {matmul_flops(device) / 1e9:.1f} GFLOP/s\n")
    print("| net | precision | k | sequential img/s | batched img/s | batched ÷ sequential | auto picks "
          "| auto ÷ faster |\n|---|---|---|---|---|---|---|---|", flush=True)
    for net in nets:
        spec = GPU_NETS[net]
        for precision in precisions:
            for k in ks:
                batched, sequential = members_of(spec, k, device, channels_last=gpu)
                steps = {"batched": make_step(batched, spec, k, batch, n_critic, device),
                         "sequential": make_step(sequential, spec, k, batch, n_critic, device)}
                if precision == "bf16":
                    steps = {mode: autocast(step, device) for mode, step in steps.items()}
                raced = race(steps, device)
                auto = min(raced, key=raced.get)
                timed = {mode: statistics.median(time_step(step, device, seconds / 3) for _ in range(3))
                         for mode, step in steps.items()}
                b, s = timed["batched"], timed["sequential"]
                images = k * batch * (n_critic + 1)
                print(f"| {net} | {precision} | {k} | {images / s:,.0f} | {images / b:,.0f} | {s / b:.2f}× | {auto} "
                      f"| {min(b, s) / timed[auto]:.2f} |", flush=True)
    if compile_k is None:
        print("\ntorch.compile: not tried on this device (CUDA only: on CPU compiling takes longer than the run)")
        return
    # One net: compiling takes a minute or more, and the script must stay within ~8 minutes.
    print(f"\ntorch.compile on the stacked dcgan64 model, k={compile_k}, fp32:\n", flush=True)
    for net in ("dcgan64",):
        spec = GPU_NETS[net]
        batched, _ = members_of(spec, compile_k, device, channels_last=True)
        eager = time_step(make_step(batched, spec, compile_k, batch, n_critic, device), device, seconds)
        try:
            batched.generator, batched.critic = torch.compile(batched.generator), torch.compile(batched.critic)
            started = time.perf_counter()
            step = make_step(batched, spec, compile_k, batch, n_critic, device)
            step()
            sync(device)
            compiled = time_step(step, device, seconds)
            print(f"- {net}: eager {eager * 1e3:.1f} ms/step, compiled {compiled * 1e3:.1f} ms/step "
                  f"({eager / compiled:.2f}×; compiling took {time.perf_counter() - started:.0f} s)", flush=True)
        except Exception as exc:  # the gradient penalty's double backward may be beyond the compiler
            print(f"- {net}: torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")


# --- 3. memory ---------------------------------------------------------------------------------


def peak_bytes(spec: ModelSpec, k: int, batch: int, n_critic: int, device: torch.device) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    batched, _ = members_of(spec, k, device, channels_last=True)
    step = make_step(batched, spec, k, batch, n_critic, device)
    step()
    step()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    del batched, step
    return peak


def memory(device: torch.device, batch: int, n_critic: int, max_k: int) -> None:
    print("\n### Memory at 64 px (fp32, batched, channels-last)\n")
    if device.type != "cuda":
        print("not measured: peak memory counters exist only on CUDA")
        return
    print("| net | peak at k=1 | at k=8 | per member | largest k that fits (of ≤ "
          f"{max_k}) |\n|---|---|---|---|---|", flush=True)
    gib = 2**30
    for net in IMAGES_64:
        spec = GPU_NETS[net]
        one, eight = peak_bytes(spec, 1, batch, n_critic, device), peak_bytes(spec, 8, batch, n_critic, device)
        fits, k = 8, 16
        while k <= max_k:  # doubling: each try is two steps
            try:
                peak_bytes(spec, k, batch, n_critic, device)
                fits, k = k, k * 2
            except torch.cuda.OutOfMemoryError:
                break
        print(f"| {net} | {one / gib:.2f} GiB | {eight / gib:.2f} GiB | {(eight - one) / 7 / gib:.3f} GiB "
              f"| {fits}{'' if fits < max_k else ' (all tried)'} |", flush=True)
        torch.cuda.empty_cache()


# --- 4. wall clock ---------------------------------------------------------------------------


def wall_clock(device: torch.device, out: Path, budget_s: float, tiny: bool) -> None:
    print(f"\n### Wall clock (each run stopped after {budget_s:.0f} s and projected to its full length)\n")
    print("| run | execution picked | steps done | s/step | projected full run |\n|---|---|---|---|---|", flush=True)
    shrink = dict(k=2, limit=16, steps=2, batch_size=2) if tiny else {}
    runs = {"README: kgan train --data mnist --k 10": dict(dataset="mnist", k=10),
            "dcgan64, mnist at 64 px, k=10": dict(dataset="mnist", k=10, image_size=64, arch="dcgan64")}
    for name, config in runs.items():
        config = TrainConfig(**(config | shrink | {"device": str(device)}))
        run_dir = out / name.split(":")[0].replace(" ", "-").replace(",", "")
        started = time.perf_counter()
        result = train(config, run_dir, should_stop=lambda start=started: time.perf_counter() - start > budget_s)
        elapsed = time.perf_counter() - started
        picked = json.loads((run_dir / "run.json").read_text()).get("execution", {})
        per_step = elapsed / max(1, result.step)
        print(f"| {name} | {picked.get('execution', '?')} ({picked.get('reason', '')}) | {result.step} of "
              f"{config.steps} | {per_step:.3f} | {per_step * config.steps / 60:.1f} min |", flush=True)


# --- the script --------------------------------------------------------------------------------


SECTIONS = ("correctness", "throughput", "memory", "wallclock")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes everywhere: the script's own test, on CPU")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    p.add_argument("--seconds", type=float, default=1.0, help="timing window per throughput measurement")
    p.add_argument("--wall-budget", type=float, default=75.0, help="seconds each wall-clock run may train")
    p.add_argument("--out", help="folder for the runs and pictures (default: a temporary one)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernel once
        total = torch.cuda.get_device_properties(device).total_memory
        name = f"{torch.cuda.get_device_name(device)}, {total / 2**30:.0f} GiB"
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; CUDA {torch.version.cuda}", flush=True)
    sections = [s.strip() for s in args.only.split(",")]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"gpu.py: error: unknown section {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    report = Report()
    with tempfile.TemporaryDirectory(prefix="kgan-gpu-") as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        started = time.perf_counter()
        if "correctness" in sections:
            # Tiny: the two kinds of data; resize and dcgan64 take the same code path.
            correctness(device, out / "correctness", report, ["mlp", "thesis"] if args.tiny else list(CORRECTNESS_RUNS))
        if "throughput" in sections:
            if args.tiny:
                throughput(device, ["mlp (points)"], [1, 2], 2, 1, 0.0, ["fp32", "bf16"], None)
            else:
                throughput(device, list(GPU_NETS), [1, 8, 32], 64, 1, args.seconds, ["fp32", "bf16"],
                           8 if device.type == "cuda" else None)
        if "memory" in sections:
            memory(device, 2 if args.tiny else 64, 1, 4 if args.tiny else 128)
        if "wallclock" in sections:
            wall_clock(device, out / "wallclock", 0.0 if args.tiny else args.wall_budget, args.tiny)
        print(f"\nall sections: {time.perf_counter() - started:.0f} s; "
              f"{'FAILED: ' + ', '.join(report.failures) if report.failures else 'every check passed'}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
