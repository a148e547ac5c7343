"""Running one job: claim it, keep its lease alive, run the job kind's runner (the ``RUNNERS``
table), report progress, record the result. The job's states, the claim and its fencing are
kgan_service.jobs'; this module does the work in between and only ever writes files under its
own attempt's key, so a stale worker cannot touch a newer attempt's files either.

Files: the worker reads and writes the artifact store (kgan_service.store, KGAN_ARTIFACT_URL) and
its own scratch folder (worker/scratch.py), nothing else, so workers on other hosts need only
PostgreSQL, Redis and the store. An attempt trains in scratch; every checkpoint it saves is put
into the store under ``runs/<job>/attempt-NNNN``, its pictures and results when it ends; then its
scratch folder is removed.

Resume: a new attempt starts from the newest checkpoint any earlier attempt uploaded, so a
killed worker loses at most one checkpoint interval.

Shutdown: a worker told to stop (SIGTERM; see worker/tasks.py) sets the running job's Stop with
reason "shutdown"; the trainer checkpoints at its next step and the job goes back to ``queued``
with a fresh message, so another worker (or this one, restarted) carries on from there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kgan_service import jobs as lifecycle
from kgan_service.artifact_folder import file_sha256
from kgan_service.db import Database, utcnow
from kgan_service.jobs import Claim, Output
from kgan_service.models import Artifact, Dataset, JobKind, Model, uploaded_archive_of
from kgan_service.settings import Settings
from kgan_service.store import ArtifactObjects, StoreError, attempt_key, job_key, open_store
from kgan_service.workers import worker_identity
from worker.scratch import CheckpointUpload, Scratch

log = logging.getLogger("kgan.worker")

CHECKPOINT_FILES = ("checkpoint.safetensors", "run.json")


def out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, or torch's on a CPU or a GPU."""
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


def config_values(params: dict[str, Any], *source_fields: str) -> dict[str, Any]:
    """A job's stored params as its config's own fields: the params name where the data (and
    the model) come from, which the runner turns into paths on this worker, and the kind of
    worker they prefer (which only picked the queue: this worker trains on its own device)."""
    return {name: value for name, value in params.items() if name not in (*source_fields, "device")}


class Stop:
    """Why a running job should stop at its next report (set by the heartbeat or the callback)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def __bool__(self) -> bool:
        # A shutdown request is only a flag (set in a signal handler, where taking the event's
        # lock could deadlock); the training thread turns it into a stop here.
        if SHUTDOWN.requested and not self.event.is_set():
            self.set("shutdown")
        return self.event.is_set()


class Shutdown:
    """This process was asked to stop: the running job (if any) checkpoints and is re-queued."""

    def __init__(self) -> None:
        self.requested = False
        self.stop: Stop | None = None

    def request(self) -> bool:
        """Safe in a signal handler (takes no lock). Returns whether a job is running."""
        self.requested = True
        return self.stop is not None


SHUTDOWN = Shutdown()


class JobRunner:
    def __init__(self, settings: Settings, db: Database | None = None, objects: ArtifactObjects | None = None):
        self.settings = settings
        self.db = db or Database(settings)
        self.objects = objects or open_store(settings.artifact_store_url)
        self.scratch = Scratch(settings.scratch, self.objects, settings.worker_cache_bytes)
        self.me = worker_identity()
        self._queue = None

    def send(self, job_id: str, device: str | None = None) -> None:
        """Put a job's message (back) on the queue, with this runner's settings."""
        from kgan_service.queue import JobQueue

        if self._queue is None:
            self._queue = JobQueue(self.settings)
        if device is None:
            self._queue.send(job_id)
        else:
            self._queue.send(job_id, device=device)

    def deadline(self, started_at: datetime) -> datetime:
        return lifecycle.deadline(started_at, self.settings)

    def claim(self, job_id: str) -> Claim | None:
        return lifecycle.claim(self.db, self.settings, job_id, self.me)

    def fenced(self, claim: Claim, **values) -> bool:
        """Every write of a running attempt goes through here (the lifecycle's fenced write)."""
        return lifecycle.fenced(self.db, claim, **values)

    def cancel_requested(self, claim: Claim) -> bool:
        return lifecycle.cancel_requested(self.db, claim.job_id)

    # --- heartbeat -----------------------------------------------------------------------

    def time_limit_detail(self) -> str:
        return lifecycle.time_limit_detail(self.settings)

    def _heartbeat(self, claim: Claim, stop: Stop, finished: threading.Event) -> None:
        deadline = self.deadline(claim.started_at)
        while not finished.wait(self.settings.heartbeat_s):
            try:
                if utcnow() > deadline:
                    stop.set("time-limit")
                if not lifecycle.heartbeat(self.db, self.settings, claim):
                    stop.set("superseded")
                    return
                if self.cancel_requested(claim):
                    stop.set("cancelled")
            except Exception:  # a database blip: the lease has slack for a few missed beats
                log.exception("heartbeat for job %s failed", claim.job_id)

    # --- running -------------------------------------------------------------------------

    def run(self, job_id: str) -> str:
        if SHUTDOWN.requested:
            # This worker is going away: hand the message back untouched.
            lifecycle.dispatch_again(self.db, self.send, job_id)
            return "requeued"
        claim = self.claim(job_id)
        if claim is None:
            return "skipped"
        log.info("job %s attempt %s started on %s", job_id, claim.attempt, self.me)
        stop, finished = Stop(), threading.Event()
        SHUTDOWN.stop = stop
        beat = threading.Thread(target=self._heartbeat, args=(claim, stop, finished), daemon=True,
                                name=f"heartbeat-{job_id}")
        beat.start()
        try:
            runner = RUNNERS.get(claim.kind)
            if runner is None:
                self.fail(claim, "Unknown job kind", f"This worker cannot run jobs of kind {claim.kind!r}.")
                return "failed"
            return runner(self, claim, stop)
        except Exception as exc:
            return self.record_exception(claim, exc)
        finally:
            SHUTDOWN.stop = None
            finished.set()
            beat.join(timeout=5)
            # Whatever the attempt kept is in the store now; a later attempt fetches it from there.
            self.scratch.remove_attempt(job_id, claim.attempt)

    def record_exception(self, claim: Claim, exc: Exception) -> str:
        from pydantic import ValidationError

        from kgan_core.checkpoint import CheckpointError
        from kgan_core.data import DatasetError
        from kgan_core.models import ArchitectureError
        from kgan_core.prior import PriorError
        from kgan_core.train import TrainingError
        from kgan_core.visualise import VisualisationError

        if out_of_memory(exc):
            # Retrying would run out again: fail once, saying why and what to change.
            log.warning("job %s ran out of memory: %s", claim.job_id, exc)
            self.fail(claim, "Out of memory", f"The job ran out of memory on its worker ({str(exc)[:200]}); "
                      f"{lifecycle.OUT_OF_MEMORY_ADVICE}.")
        elif isinstance(exc, DatasetError | CheckpointError | ArchitectureError | TrainingError | ValidationError
                        | PriorError | VisualisationError):
            log.info("job %s failed: %s", claim.job_id, exc)
            self.fail(claim, "The job's settings do not work with its data", str(exc))
        else:
            log.exception("job %s crashed", claim.job_id)
            self.fail(claim, "The job crashed", f"{type(exc).__name__}: {exc}. The last checkpoint is kept; "
                      "the worker log has the traceback.")
        return "failed"

    def fail(self, claim: Claim, title: str, detail: str) -> None:
        lifecycle.record_failure(self.db, claim, title, detail)

    def attempt_dir(self, claim: Claim) -> Path:
        """This attempt's folder in scratch; what it writes there reaches the store under
        attempt_key(job, attempt) (see upload)."""
        return self.scratch.attempt_dir(claim.job_id, claim.attempt)

    def run_dir(self, claim: Claim) -> tuple[Path, int | None]:
        """This attempt's folder, seeded with the newest checkpoint any earlier attempt uploaded,
        and that checkpoint's step (None when the attempt starts afresh)."""
        run_dir = self.attempt_dir(claim)
        if (run_dir / CHECKPOINT_FILES[0]).exists():
            return run_dir, None
        mine = attempt_key(claim.job_id, claim.attempt)
        keys = {info.key for info in self.objects.list(job_key(claim.job_id))}
        best, best_step = None, -1
        for summary_key in sorted(k for k in keys if k.endswith("/" + CHECKPOINT_FILES[1])):
            folder = summary_key.rsplit("/", 1)[0]
            # Only an attempt's own files: not its pictures/ or anything deeper.
            if folder == mine or folder.count("/") != 2 or f"{folder}/{CHECKPOINT_FILES[0]}" not in keys:
                continue
            try:
                step = int(json.loads(self.objects.get_bytes(summary_key))["step"])
            except (ValueError, KeyError, TypeError, StoreError):
                continue
            if step > best_step:
                best, best_step = folder, step
        if best is not None:
            log.info("job %s attempt %s resumes from %s (step %s, in the store)", claim.job_id, claim.attempt,
                     best.rsplit("/", 1)[1], best_step)
            for name in CHECKPOINT_FILES:
                self.objects.fetch(f"{best}/{name}", run_dir / name)  # written whole or not at all
        return run_dir, (best_step if best is not None else None)

    def upload(self, claim: Claim, path: Path) -> str:
        """Put a file of this attempt's folder into the store; its key."""
        run_dir = self.attempt_dir(claim)
        key = f"{attempt_key(claim.job_id, claim.attempt)}/{Path(path).relative_to(run_dir).as_posix()}"
        self.objects.put_file(key, path)
        return key

    def data_source(self, claim: Claim, params: dict[str, Any]) -> str | None:
        """What kgan_core should load: a built-in name or the uploaded archive's path."""
        dataset_id = params.get("dataset_id")
        if dataset_id is None:
            return params["dataset"]
        with self.db.session() as s:
            dataset = s.get(Dataset, dataset_id)
            found = None if dataset is None else (dataset.source, dataset.builtin or "", dataset.path or "")
        if found is None:
            self.fail(claim, "Dataset gone", f"Dataset {dataset_id} no longer exists.")
            return None
        kind, builtin, key = found
        return builtin if kind == "builtin" else str(self.scratch.cached(key))

    def model_dir(self, model_id: str) -> Path:
        """A trained model's checkpoint and run.json, in the scratch cache."""
        with self.db.session() as s:
            run_path = s.get(Model, model_id).run_path
        for name in CHECKPOINT_FILES:
            path = self.scratch.cached(f"{run_path}/{name}")
        return path.parent

    def load_data(self, source: str, image_size: int | None, channels: int | None, limit: int | None, **options):
        """The job's data, loaded by the rules its upload was checked by: the pixel limit is this
        server's KGAN_MAX_IMAGE_PIXELS, as it was for the upload."""
        from kgan_core.data import load_dataset

        return load_dataset(source, root=self.data_root(), image_size=image_size, channels=channels, limit=limit,
                            max_pixels=self.settings.max_image_pixels, **options)

    def data_root(self) -> str:
        from kgan_core.data.catalogue import builtin_root

        return str(builtin_root(self.settings.builtin_data_root))

    def run_train(self, claim: Claim, stop: Stop) -> str:
        from kgan_core.train import TrainConfig, train

        source = self.data_source(claim, claim.params)
        if source is None:
            return "failed"
        config = TrainConfig(dataset=source, data_root=self.data_root(), device=self.settings.worker_device,
                             **config_values(claim.params, "dataset", "dataset_id"))
        data = self.load_data(config.dataset, config.image_size, config.channels, config.limit,
                              n_points=config.n_points, seed=config.seed)
        run_dir, resumed_from = self.run_dir(claim)
        config = same_archive_as_checkpoint(config, run_dir)
        deadline = self.deadline(claim.started_at)
        events: list[str] = []
        # Shown in the job's progress: which attempt reports, and where it took over (what a lost
        # worker cost). Written now, so a resumed job shows its checkpoint's step straight away.
        extra = {"attempt": claim.attempt, "attempt_started_at_step": resumed_from or 0, "reported": True}
        if resumed_from is not None:
            events.append(f"attempt {claim.attempt} resumed from the checkpoint at step {resumed_from}")
            self.fenced(claim, step=resumed_from, eta_s=None, progress={"events": events[-20:], **extra})

        def report(progress) -> bool:
            events.extend(progress.events)
            ok = self.fenced(claim, step=progress.step, total=progress.total, eta_s=progress.eta_s, progress={
                "d_loss": progress.d_loss, "g_loss": progress.g_loss, "wasserstein": progress.wasserstein,
                "tile_sizes": progress.tile_sizes, "events": events[-20:], "elapsed_s": round(progress.elapsed_s, 3),
                **extra})
            self._check_stop(claim, stop, ok)
            if utcnow() > deadline:
                stop.set("time-limit")
            return not stop

        upload = CheckpointUpload(self.objects, run_dir, attempt_key(claim.job_id, claim.attempt))

        def should_stop() -> bool:
            # Asked between steps, after the trainer saved the previous step's checkpoint (if it
            # did): the moment to put a new one into the store.
            upload()
            return bool(stop)

        started = time.perf_counter()
        # The heartbeat thread notices a cancel or a lost lease; the trainer asks after every step.
        result = train(config, run_dir, callback=report, resume=True, should_stop=should_stop, dataset=data)
        upload()  # the checkpoint of the last step (or of the stop)
        log.info("job %s attempt %s: step %s after %.1fs (stopped=%s, %s)", claim.job_id, claim.attempt,
                 result.step, time.perf_counter() - started, result.stopped, stop.reason)
        if result.stopped:
            return self.record_stop(claim, stop, result.step)
        return self.record_model(claim, run_dir, render_pictures(run_dir, self.settings.worker_device))

    def record_stop(self, claim: Claim, stop: Stop, step: int | None = None) -> str:
        """A stopped job; ``step`` is where its last checkpoint was written (None if it has none)."""
        if stop.reason == "cancelled":
            lifecycle.record_cancelled(self.db, claim)
            return "cancelled"
        if stop.reason == "time-limit":
            self.fail(claim, "Time limit reached", self.time_limit_detail())
            return "failed"
        if stop.reason == "shutdown":
            # Back to the queue, not failed: the next attempt resumes from the checkpoint just written.
            if not lifecycle.hand_back(self.db, claim, step):
                return "superseded"
            log.info("job %s attempt %s checkpointed for shutdown; re-queued", claim.job_id, claim.attempt)
            lifecycle.dispatch(self.db, self.send, claim.job_id, claim.params)
            return "requeued"
        return "superseded"

    def output(self, claim: Claim, kind: str, path: Path, media_type: str, member: int | None = None,
               meta: dict | None = None) -> Output:
        """A file of this attempt as an artifact row, put into the store first: the row (written
        by the fenced success) never names an object that is not there."""
        return Output(kind=kind, key=self.upload(claim, path), filename=path.name, media_type=media_type,
                      size_bytes=path.stat().st_size, sha256=file_sha256(path), member=member, meta=meta or {})

    def record_model(self, claim: Claim, run_dir: Path, pictures: list[tuple[str, Path, int, dict]] = ()) -> str:
        """The model row, its artifacts (with ``pictures``: (kind, path, member, meta) PNGs) and
        `succeeded`, in one fenced transaction."""
        summary = json.loads((run_dir / "run.json").read_text())
        meta = {"step": summary["step"], "metrics": summary.get("metrics", {})}
        outputs = [self.output(claim, "checkpoint", run_dir / "checkpoint.safetensors", "application/octet-stream",
                               meta=meta),
                   self.output(claim, "run-summary", run_dir / "run.json", "application/json", meta=meta)]
        outputs += [self.output(claim, kind, path, "image/png", member, meta) for kind, path, member, meta in pictures]
        model = {"run_path": attempt_key(claim.job_id, claim.attempt), "k": summary["config"]["k"],
                 "step": summary["step"],
                 "dataset_kind": summary["dataset"]["kind"], "item_shape": summary["dataset"]["item_shape"],
                 "config": summary["config"], "spec": summary["spec"], "tile_sizes": summary["tile_sizes"],
                 "tile_shares": summary["tile_shares"], "metrics": summary.get("metrics", {})}
        return lifecycle.record_success(self.db, claim, outputs, model=model, step=summary["step"])

    def register(self, claim: Claim, files: list[tuple[str, Path, str, int | None, dict]],
                 model_id: str | None) -> str:
        """Record output files as artifacts and mark the job succeeded, in one fenced transaction."""
        outputs = [self.output(claim, kind, path, media, member, meta) for kind, path, media, member, meta in files]
        return lifecycle.record_success(self.db, claim, outputs, model_id=model_id)

    def run_train_prior(self, claim: Claim, stop: Stop) -> str:
        """A learned image prior. It has no checkpoints, so a new attempt starts it afresh."""
        from kgan_core.prior import PriorConfig, train_prior

        params = claim.params
        source = self.data_source(claim, params)
        if source is None:
            return "failed"
        model_id = params.get("model_id")
        run = str(self.model_dir(model_id)) if model_id else None
        vgg = str(self.settings.vgg_weights) if self.settings.vgg_weights else None
        config = PriorConfig(dataset=source, data_root=self.data_root(), device=self.settings.worker_device, run=run,
                             vgg_weights=vgg, **config_values(params, "dataset", "dataset_id", "model_id"))
        data = self.load_data(config.dataset, config.image_size, config.channels, config.limit)
        run_dir = self.attempt_dir(claim)

        def report(progress) -> bool:
            rate = progress.step / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
            ok = self.fenced(claim, step=progress.step, total=progress.total,
                             eta_s=(progress.total - progress.step) / rate if rate else None,
                             progress={"losses": progress.losses, "heldout_mse": progress.heldout_mse,
                                       "elapsed_s": round(progress.elapsed_s, 3)})
            self._check_stop(claim, stop, ok)
            return not stop

        result = train_prior(config, run_dir / "prior.safetensors", callback=report, dataset=data)
        if stop.event.is_set():  # not bool(stop): a shutdown asked for after the last step changes nothing
            return self.record_stop(claim, stop)
        meta = {"metrics": result.metrics, "encoder": config.encoder, "item_shape": list(result.prior.item_shape)}
        self.fenced(claim, progress={"metrics": result.metrics})
        return self.register(claim, [("prior", result.path, "application/octet-stream", None, meta)], model_id)

    def run_visualise(self, claim: Claim, stop: Stop) -> str:
        """One visualisation of a model; it is short, so it stops only when it is superseded."""
        from kgan_core.run import load_run
        from kgan_core.visualise import options_of, visualise

        params = claim.params
        what, member, seed = params["what"], params.get("member"), params.get("seed", 0)
        options = dict(params.get("options") or {})
        if params.get("prior_id") is not None:
            with self.db.session() as s:
                prior_key = s.get(Artifact, params["prior_id"]).path
            options["prior"] = str(self.scratch.cached(prior_key))
        if self.settings.vgg_weights and "vgg_weights" in options_of(what):
            options["vgg_weights"] = str(self.settings.vgg_weights)
        run = load_run(self.model_dir(params["model_id"]), device=_device(self.settings.worker_device),
                       max_pixels=self.settings.max_image_pixels)  # the limit its training data loaded with
        with self.db.session() as s:
            uploaded = uploaded_archive_of(s, params["model_id"])
        if uploaded is not None:
            # run.json names the archive where the training worker had it; here it is elsewhere.
            run.config = run.config.model_copy(update={"dataset": str(self.scratch.cached(uploaded))})
        vis = visualise(run, what, member, seed=seed, **options)
        run_dir = self.attempt_dir(claim)
        name = what + (f"-member{member}" if member is not None else "") + ".png"
        png_path, _json_path = vis.save(run_dir / name)
        meta = {"title": vis.title, "numbers": vis.numbers, "timings": vis.timings, "seed": seed,
                "options": params.get("options") or {}}
        files = [(what, png_path, "image/png", member, meta)]
        if vis.images is not None:  # the images the picture shows, for analysis without parsing the grid
            raw = {"title": vis.title, "shape": list(vis.images.shape), "dtype": "float32",
                   "range": "model range [-1, 1]", "axes": "rows, columns, channels, height, width"}
            files.append((f"{what}-images", png_path.with_suffix(".npy"), "application/x-npy", member, raw))
        return self.register(claim, files, params["model_id"])

    def _check_stop(self, claim: Claim, stop: Stop, wrote: bool) -> None:
        if not wrote:
            stop.set("superseded")
        elif self.cancel_requested(claim):
            stop.set("cancelled")


def same_archive_as_checkpoint(config, run_dir: Path):
    """The config to resume with. An uploaded archive is where each worker's cache keeps it, so
    a checkpoint written on another host names the same archive by another path, and the
    trainer refuses a resume whose config differs: name it as the checkpoint does (the data is
    already loaded from this worker's copy; the name is only compared and recorded)."""
    try:
        saved = json.loads((run_dir / CHECKPOINT_FILES[1]).read_text())["config"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return config
    if not isinstance(saved, str) or saved == config.dataset:
        return config
    # The same store key under another cache folder: '<scratch>/cache/datasets/<id>/images.zip'.
    ours, theirs = Path(config.dataset).parts, Path(saved).parts
    if len(ours) >= 4 and ours[-3] == "datasets" and ours[-3:] == theirs[-3:] and ours[-4] == theirs[-4] == "cache":
        return config.model_copy(update={"dataset": saved})
    return config


# The runner of each job kind: (runner, claim, stop) -> how the attempt ended. Looked up on the
# runner when a job runs, so a kind always gets the method as the class has it then.
RUNNERS: dict[str, Callable[[JobRunner, Claim, Stop], str]] = {
    JobKind.TRAIN: lambda runner, claim, stop: runner.run_train(claim, stop),
    JobKind.TRAIN_PRIOR: lambda runner, claim, stop: runner.run_train_prior(claim, stop),
    JobKind.VISUALISE: lambda runner, claim, stop: runner.run_visualise(claim, stop),
}


# Drawn for every member when training succeeds, so a fetched model comes with its pictures:
# (visualisation, options) by the kind of data.
MEMBER_PICTURES = {"images": (("samples", {"n": 64}), ("medoid", {"n": 256}), ("real-tile", {})),
                   "points": (("samples", {"n": 256}),)}


def render_pictures(run_dir: Path, device: str) -> list[tuple[str, Path, int, dict]]:
    """Each member's samples (and, for images, its medoid and real images of its tile) as PNGs in
    run_dir/pictures: (kind, path, member, meta) for record_model. A picture that fails is
    logged and left out; the trained model is recorded all the same."""
    from kgan_core.run import load_run
    from kgan_core.visualise import visualise

    out = run_dir / "pictures"
    out.mkdir(exist_ok=True)
    run = load_run(run_dir, device=_device(device))
    wanted = MEMBER_PICTURES[run.dataset_kind]
    made = []
    for member in range(run.k):
        for what, options in wanted:
            try:
                vis = visualise(run, what, member, seed=0, **options)
                path, _numbers = vis.save(out / f"{what}-member{member}.png")
            except Exception:
                log.exception("could not draw %s of member %s in %s; the model is kept without it",
                              what, member, run_dir)
                continue
            made.append((what, path, member, {"title": vis.title, "numbers": vis.numbers, "seed": 0,
                                              "options": options, "step": run.step}))
    return made


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _device(name: str) -> str:
    return ("cuda" if _cuda() else "cpu") if name == "auto" else name
