"""Process-wide settings that make training faster on CPU.

Programs that own their process call these once at start (``kgan train``, the worker, the
benchmarks); the library itself never changes process state behind its caller's back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int

_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed blocks instead of handing them back to the kernel.

    PyTorch's CPU allocator does not cache: every tensor is one malloc and one free. glibc
    serves large blocks (always those of 32 MiB and more) with a fresh ``mmap`` and unmaps
    them on free, so each new activation is page-faulted in again, one fault per 4 KiB page.
    A stacked k-member model makes exactly such tensors — a (64, 8·16, 32, 32) float map is
    33.5 MiB — and on the benchmark machine each one cost 8,193 faults and ~25 ms, five times
    the ReLU that fills it (BENCHMARKS.md, "Training throughput"). With mmap off and trimming
    off, freed blocks stay in the heap and the next tensor of the same size reuses them.

    The cost is that the process keeps its peak heap until it exits, which is what a training
    process does anyway. Returns False, changing nothing, where the C library is not glibc.
    """
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Trimming first: with mmap off, every large free would otherwise shrink the heap instead.
    _kept = bool(mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM)) and bool(mallopt(M_MMAP_MAX, 0))
    if not _kept:
        log.debug("mallopt refused; freed memory goes back to the kernel as usual")
    return _kept
