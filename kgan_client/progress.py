"""A dependency-free progress bar for ``Job.wait(progress=True)``: one line redrawn in place on
a terminal, and a line per tenth of the way (or status change) where output is a file or a log."""

from __future__ import annotations

import sys
from typing import TextIO

from kgan_client.schemas import JobInfo

WIDTH = 30


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "eta –"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"eta {seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"eta {seconds // 60}m{seconds % 60:02d}s"
    return f"eta {seconds}s"


def describe(job: JobInfo) -> str:
    """One line: kind, id, bar, step/total, percent, ETA and status."""
    p = job.progress
    fraction = min(max(p.fraction, 0.0), 1.0)
    filled = int(round(fraction * WIDTH))
    bar = "#" * filled + "." * (WIDTH - filled)
    eta = format_eta(p.eta_s) if job.status == "running" else job.status
    return f"{job.kind} {job.id[:8]} [{bar}] {p.step}/{p.total} {fraction:4.0%} {eta}"


class ProgressBar:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_line = ""
        self._last_tenth = -1
        self._last_status = ""

    def update(self, job: JobInfo) -> None:
        line = describe(job)
        if self.live:
            pad = " " * max(0, len(self._last_line) - len(line))
            self.stream.write("\r" + line + pad)
        else:
            tenth = int(job.progress.fraction * 10)
            if tenth == self._last_tenth and job.status == self._last_status:
                return
            self._last_tenth, self._last_status = tenth, job.status
            self.stream.write(line + "\n")
        self._last_line = line
        self.stream.flush()

    def close(self) -> None:
        if self.live and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
