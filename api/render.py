"""Per-member PNGs rendered on request from a trained model.

Loaded models stay in a small LRU cache so a warm ``samples.png`` costs one generator pass
plus PNG encoding. Loading is locked per model (two first requests load it once); rendering
itself takes no lock, except matplotlib's pyplot, which is not thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from api.settings import Settings
from api.storage import ArtifactStore

_PYPLOT = threading.Lock()


@dataclass(frozen=True)
class ModelRef:
    id: str
    run_path: str


class Renderer:
    def __init__(self, store: ArtifactStore, settings: Settings):
        self.store, self.settings = store, settings
        self._runs: OrderedDict[str, object] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}

    def clear(self) -> None:
        with self._cache_lock:
            self._runs.clear()

    def run(self, ref: ModelRef):
        with self._cache_lock:
            if ref.id in self._runs:
                self._runs.move_to_end(ref.id)
                return self._runs[ref.id]
            lock = self._load_locks.setdefault(ref.id, threading.Lock())
        with lock:
            with self._cache_lock:
                if ref.id in self._runs:
                    return self._runs[ref.id]
            from kgan_core.run import load_run

            run = load_run(self.store.path(ref.run_path), device=self.settings.render_device)
            with self._cache_lock:
                self._runs[ref.id] = run
                while len(self._runs) > self.settings.model_cache_size:
                    evicted, _ = self._runs.popitem(last=False)
                    self._load_locks.pop(evicted, None)
            return run

    def samples_png(self, ref: ModelRef, member: int, n: int, seed: int) -> bytes:
        from kgan_core.render import image_grid, png_bytes, scatter_png

        run = self.run(ref)
        samples = run.sample(n, member=member, seed=seed)
        if run.dataset_kind == "points":
            with _PYPLOT:
                return scatter_png(samples, title=f"member {member}: {n} samples, seed {seed}")
        return png_bytes(image_grid(samples))

    def visual_png(self, ref: ModelRef, what: str, member: int, seed: int, **options) -> tuple[bytes, str]:
        """One of kgan_core.visualise's cheap visualisations of member k: (PNG, title)."""
        from kgan_core.visualise import visualise

        run = self.run(ref)
        with _PYPLOT:  # some visualisations draw with pyplot; the cheap ones here are fast
            vis = visualise(run, what, member, seed=seed, **options)
            return vis.png(), vis.title
