"""keep_freed_memory: large tensors freed and made again reuse their pages instead of faulting them in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PAGES_PER_STEP = 4 * 40 * 2**20 // 4096  # four 40 MiB tensors, as a stacked model's activations

# A fresh interpreter: the setting is process-wide, and the count must not include whatever
# the test process allocated before. The median step: now and then glibc's heap still grows by
# a step's worth (seen once in CI: one step in ten), which says nothing about the steady state.
PROBE = textwrap.dedent("""
    import resource, sys, torch
    from kgan_core.runtime import keep_freed_memory
    kept = sys.argv[1] == "keep" and keep_freed_memory()
    assert keep_freed_memory() if kept else True  # a second call is harmless
    def step():
        a = torch.empty(10 * 2**20).fill_(1.0)
        b = torch.empty(10 * 2**20).fill_(1.0)
        return float((a + b).relu()[0])
    for _ in range(3):
        step()
    faults = []
    for _ in range(11):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(int(kept), sorted(faults)[5])
""")

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")


def faults_per_step(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return bool(int(kept)), float(faults)


@linux_only
def test_freed_tensor_memory_is_reused_without_page_faults():
    kept, faults = faults_per_step("keep")
    assert kept, "glibc's mallopt refused the settings"
    # Without the setting, 100 %.
    assert faults < PAGES_PER_STEP / 10, f"{faults:.0f} page faults per step: freed memory was not reused"


@linux_only
def test_without_it_each_large_tensor_faults_its_pages_in():
    # Why the setting exists. If this stops holding (a caching CPU allocator in torch, another
    # libc), keep_freed_memory is no longer needed.
    kept, faults = faults_per_step("default")
    assert not kept
    assert faults > PAGES_PER_STEP / 2
