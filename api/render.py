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

A model is loaded from the artifact store: on the local folder straight from its files, on S3
from a copy fetched into a temporary folder that is removed once the model is in memory. A model
trained on an uploaded archive names the archive where its worker had it; on S3 the archive is
fetched into ``<artifact folder>/renderer-data/<model>`` (for the pictures that show training
images), which goes when the model leaves the cache, so those files are bounded by the cache too.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kgan_service.settings import Settings
from kgan_service.store import ArtifactObjects, LocalObjects

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
    def __init__(self, objects: ArtifactObjects, settings: Settings, max_bytes: int | None = None,
                 archive_of: Callable[[str], str | None] | None = None):
        """``archive_of(model_id)``: the store key of the uploaded archive the model was trained on
        (None for a built-in dataset); asked only when a model is loaded from S3."""
        self.objects, self.settings, self.archive_of = objects, settings, archive_of
        self.data_dir = settings.artifacts / "renderer-data"
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
            for model_id in list(self._runs):
                self._drop_data(model_id)
            self._runs.clear()

    def forget(self, model_id: str) -> None:
        """Drop a deleted model from the cache (its files are about to go)."""
        with self._cache_lock:
            self._runs.pop(model_id, None)
            self._load_locks.pop(model_id, None)
            self._drop_data(model_id)

    def _drop_data(self, model_id: str) -> None:
        shutil.rmtree(self.data_dir / model_id, ignore_errors=True)

    def _evict(self) -> None:
        # Called with _cache_lock held.
        def over() -> bool:
            if len(self._runs) > self.settings.model_cache_size:
                return True
            return self.max_bytes is not None and sum(e.nbytes for e in self._runs.values()) > self.max_bytes

        while len(self._runs) > 1 and over():
            evicted, _ = self._runs.popitem(last=False)
            self._load_locks.pop(evicted, None)
            self._drop_data(evicted)

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
            run = self.load(ref)
            entry = _Entry(run, run_bytes(run))
            with self._cache_lock:
                self._runs[ref.id] = entry
                self._evict()
            return run

    def load(self, ref: ModelRef):
        from kgan_core.run import load_run

        if isinstance(self.objects, LocalObjects):
            return load_run(self.objects.path(ref.run_path), device=self.settings.render_device,
                            max_pixels=self.settings.max_image_pixels)
        with tempfile.TemporaryDirectory(prefix="kgan-model-") as folder:
            for name in ("checkpoint.safetensors", "run.json"):
                self.objects.fetch(f"{ref.run_path}/{name}", Path(folder) / name)
            run = load_run(folder, device=self.settings.render_device, max_pixels=self.settings.max_image_pixels)
        archive = self.archive_of(ref.id) if self.archive_of is not None else None
        if archive is not None:
            local = self.objects.fetch(archive, self.data_dir / ref.id / archive.rsplit("/", 1)[1])
            run.config = run.config.model_copy(update={"dataset": str(local)})
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

