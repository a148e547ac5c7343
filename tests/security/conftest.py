"""Fixtures for the security and load tests: the service fixtures (both backends, ``client``,
``alice``/``bob``, ``trained``), and readings of a real API process's memory (the process
itself comes from tests/_service.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.service.conftest import *  # noqa: F403 - the same fixtures, for tests in this folder
from tests.service.conftest import pytest_generate_tests  # noqa: F401 - parametrises `backend`


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1)) * 1024


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024
