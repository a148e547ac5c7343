"""Per-member PNGs rendered on request from a trained model.

Loaded models stay in an LRU cache so a warm ``samples.png`` costs one generator pass plus
PNG encoding. The cache is bounded by count (``model_cache_size``) and by memory
(``model_cache_bytes``, 2 GiB by default): the bytes of each model's parameters and
buffers, point masses, tiles and any training data a visualisation loaded. The most recent
model always stays, even alone over the budget (it is the one being rendered).

Loading is locked per model (two first requests load it once, requests for other models do
not wait); rendering takes no lock, so requests render in parallel, except where matplotlib's
pyplot (not thread-safe) draws: scatter plots of points and some visualisations. Image
``samples.png`` never takes that lock.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass

from kgan_service.artifact_folder import ArtifactStore
from kgan_service.settings import Settings

_PYPLOT = threading.Lock()


@dataclass(frozen=True)
class ModelRef:
    id: str
    run_path: str


def _tensor_bytes(t) -> int:
    return t.numel() * t.element_size() if t is not None else 0


def run_bytes(run) -> int:
    """Memory a loaded run holds: its networks' parameters and buffers, point masses, tiles,
    and the training data if something loaded it (``Run.dataset`` is a cached property)."""
    total = 0
    for module in (run.generator, run.critic):
        total += sum(_tensor_bytes(t) for t in itertools.chain(module.parameters(), module.buffers()))
    total += _tensor_bytes(getattr(run, "point_masses", None)) + _tensor_bytes(getattr(run, "assignment", None))
    data = run.__dict__.get("dataset")
    if data is not None:
        total += _tensor_bytes(getattr(data, "x", None)) + _tensor_bytes(getattr(data, "labels", None))
    return total


@dataclass
class _Entry:
    run: object
    nbytes: int


class Renderer:
    def __init__(self, store: ArtifactStore, settings: Settings, max_bytes: int | None = None):
        self.store, self.settings = store, settings
        # A byte budget from the settings when they have one; count-only otherwise.
        self.max_bytes = max_bytes if max_bytes is not None else settings.model_cache_bytes
        self._runs: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    @property
    def cached_bytes(self) -> int:
        with self._cache_lock:
            return sum(e.nbytes for e in self._runs.values())

    def cached_ids(self) -> list[str]:
        """Least recently used first."""
        with self._cache_lock:
            return list(self._runs)

    def clear(self) -> None:
        with self._cache_lock:
            self._runs.clear()

    def forget(self, model_id: str) -> None:
        """Drop a deleted model from the cache (its files are about to go)."""
        with self._cache_lock:
            self._runs.pop(model_id, None)
            self._load_locks.pop(model_id, None)

    def _evict(self) -> None:
        # Called with _cache_lock held.
        def over() -> bool:
            if len(self._runs) > self.settings.model_cache_size:
                return True
            return self.max_bytes is not None and sum(e.nbytes for e in self._runs.values()) > self.max_bytes

        while len(self._runs) > 1 and over():
            evicted, _ = self._runs.popitem(last=False)
            self._load_locks.pop(evicted, None)

    def _remeasure(self, ref: ModelRef, run) -> None:
        """A visualisation may have loaded the training data into the run: count it."""
        nbytes = run_bytes(run)
        with self._cache_lock:
            entry = self._runs.get(ref.id)
            if entry is not None and entry.run is run and entry.nbytes != nbytes:
                entry.nbytes = nbytes
                self._evict()

    def run(self, ref: ModelRef):
        with self._cache_lock:
            if ref.id in self._runs:
                self._runs.move_to_end(ref.id)
                return self._runs[ref.id].run
            lock = self._load_locks.setdefault(ref.id, threading.Lock())
        with lock:
            with self._cache_lock:
                if ref.id in self._runs:
                    return self._runs[ref.id].run
            from kgan_core.run import load_run

            run = load_run(self.store.path(ref.run_path), device=self.settings.render_device)
            entry = _Entry(run, run_bytes(run))
            with self._cache_lock:
                self._runs[ref.id] = entry
                self._evict()
            return run

    def samples_png(self, ref: ModelRef, member: int, n: int, seed: int) -> bytes:
        from kgan_core.render import image_grid, png_bytes
        from kgan_core.visualise.samples import points_plot

        run = self.run(ref)
        if run.dataset_kind == "points":  # on the run's whole data range, so members compare
            with _PYPLOT:
                return points_plot(run, member, n, seed, title=f"member {member} of {run.k}: {n} samples, seed {seed}")
        return png_bytes(image_grid(run.sample(n, member=member, seed=seed)))

    def visual_png(self, ref: ModelRef, what: str, member: int, seed: int, **options) -> tuple[bytes, str]:
        """One of kgan_core.visualise's cheap visualisations of member k: (PNG, title)."""
        from kgan_core.visualise import visualise

        run = self.run(ref)
        try:
            with _PYPLOT:  # some visualisations draw with pyplot; the cheap ones here are fast
                vis = visualise(run, what, member, seed=seed, **options)
                return vis.png(), vis.title
        finally:
            self._remeasure(ref, run)
