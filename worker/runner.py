"""Running one job: claim it, keep its lease alive, train, report progress, record the result.

Fencing: a claim increments the job's ``attempt`` in a transaction, and every later write
says ``WHERE id = … AND attempt = <mine> AND status = 'running'``. A worker whose lease was
taken over (it stalled, or the reconciler re-queued it) finds its writes refused, stops, and
never touches the newer attempt's rows; on disk it only ever writes its own attempt folder.

Resume: a new attempt starts from the newest checkpoint any earlier attempt left behind, so a
killed worker loses at most one checkpoint interval.

Shutdown: a worker told to stop (SIGTERM; see worker/tasks.py) sets the running job's Stop with
reason "shutdown"; the trainer checkpoints at its next step and the job goes back to ``queued``
with a fresh message, so another worker (or this one, restarted) carries on from there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from api.db import Database, utcnow
from api.jobs import dispatch, fail_if_lost_too_often, holder_is_dead, worker_identity
from api.models import Artifact, Dataset, Job, Model
from api.settings import Settings
from api.storage import ArtifactStore, file_sha256

log = logging.getLogger("kgan.worker")

CHECKPOINT_FILES = ("checkpoint.safetensors", "run.json")
MAX_ERROR_DETAIL_CHARS = 2000


def out_of_memory(exc: BaseException) -> bool:
    """An allocation that failed: Python's MemoryError, or torch's on a CPU or a GPU."""
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


OUT_OF_MEMORY_ADVICE = ("make it smaller (k, width, batch_size, image_size) or give the workers more memory "
                        "(KGAN_WORKER_MEMORY_BYTES is what submissions are checked against)")


def fail_oom_killed(db: Database, job_id: str, worker: str) -> bool:
    """The kernel's OOM killer took ``worker``, the pool process running ``job_id``: fail the
    job once instead of letting the next delivery retry it. Matches while that process is still
    the holder, or once the API's reconciler has re-queued it (no later claim yet); a job some
    other process has claimed since is left alone. Returns whether the job was failed."""
    now = utcnow()
    held_by_it = (Job.status == "running") & (Job.worker == worker)
    requeued_after_it = (Job.status == "queued") & Job.worker.is_(None) & (Job.attempt > 0)
    with db.session() as s:
        done = s.execute(update(Job).where(Job.id == job_id, held_by_it | requeued_after_it).values(
            status="failed", error_title="Out of memory", finished_at=now, eta_s=None, updated_at=now,
            error_detail="The kernel's out-of-memory killer stopped the job's worker process; running it "
                         f"again would run out again, so it is not retried: {OUT_OF_MEMORY_ADVICE}."))
        return done.rowcount == 1


@dataclass
class Claim:
    job_id: str
    attempt: int
    kind: str
    params: dict
    dataset_id: str | None
    started_at: object


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
    def __init__(self, settings: Settings, db: Database | None = None):
        self.settings = settings
        self.db = db or Database(settings)
        self.store = ArtifactStore(settings.artifacts)
        self.me = worker_identity()
        self._celery = None

    def send(self, job_id: str) -> None:
        """Put a job's message (back) on the queue, with this runner's settings."""
        from worker.celery_app import RUN_JOB, make_celery

        if self._celery is None:
            self._celery = make_celery(self.settings)
        self._celery.send_task(RUN_JOB, args=[job_id], queue=self.settings.queue)

    def deadline(self, started_at):
        return started_at + timedelta(seconds=self.settings.job_time_limit_s)

    # --- claiming ----------------------------------------------------------------------

    def claim(self, job_id: str) -> Claim | None:
        now = utcnow()
        with self.db.session() as s:
            job = s.execute(select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()
            if job is None:
                log.warning("job %s does not exist; dropping its message", job_id)
                return None
            if job.status in ("succeeded", "failed", "cancelled"):
                return None
            if job.status == "running":
                expired = job.lease_expires_at is not None and job.lease_expires_at < now
                if not (expired or holder_is_dead(job.worker)):
                    log.info("job %s is running on %s; dropping a duplicate message", job_id, job.worker)
                    return None
            if job.cancel_requested:
                job.status, job.finished_at = "cancelled", now
                return None
            if job.started_at is not None and self.deadline(job.started_at) < now:
                job.status, job.finished_at = "failed", now
                job.error_title, job.error_detail = "Time limit reached", self.time_limit_detail()
                return None
            if fail_if_lost_too_often(job, self.settings, now):
                return None
            job.attempt += 1
            job.status, job.worker = "running", self.me
            # What an earlier attempt reported describes a process that is gone: until this one
            # reports (progress.attempt then names it), the progress says only that it has not.
            if job.attempt > 1:
                job.progress, job.eta_s = {"reported": False}, None
            job.heartbeat_at, job.lease_expires_at = now, now + timedelta(seconds=self.settings.lease_s)
            job.started_at = job.started_at or now
            return Claim(job.id, job.attempt, job.kind, dict(job.params), job.dataset_id, job.started_at)

    def fenced(self, claim: Claim, **values) -> bool:
        """Write to the job row only if this attempt still owns it."""
        with self.db.session() as s:
            done = s.execute(update(Job).where(Job.id == claim.job_id, Job.attempt == claim.attempt,
                                               Job.status == "running").values(updated_at=utcnow(), **values))
            return done.rowcount == 1

    # --- heartbeat -----------------------------------------------------------------------

    def time_limit_detail(self) -> str:
        return (f"The job ran past this server's limit of {self.settings.job_time_limit_s} s from its first start "
                "(KGAN_JOB_TIME_LIMIT_S); its last checkpoint is kept.")

    def _heartbeat(self, claim: Claim, stop: Stop, finished: threading.Event) -> None:
        deadline = self.deadline(claim.started_at)
        while not finished.wait(self.settings.heartbeat_s):
            try:
                now = utcnow()
                if now > deadline:
                    stop.set("time-limit")
                if not self.fenced(claim, heartbeat_at=now,
                                   lease_expires_at=now + timedelta(seconds=self.settings.lease_s)):
                    stop.set("superseded")
                    return
                with self.db.session() as s:
                    if s.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id)):
                        stop.set("cancelled")
            except Exception:  # a database blip: the lease has slack for a few missed beats
                log.exception("heartbeat for job %s failed", claim.job_id)

    # --- running -------------------------------------------------------------------------

    def run(self, job_id: str) -> str:
        if SHUTDOWN.requested:
            # This worker is going away: hand the message back untouched.
            dispatch(self.db, self.send, job_id)
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
            if claim.kind == "train":
                return self.run_train(claim, stop)
            if claim.kind == "train_prior":
                return self.run_train_prior(claim, stop)
            if claim.kind == "visualise":
                return self.run_visualise(claim)
            self.fail(claim, "Unknown job kind", f"This worker cannot run jobs of kind {claim.kind!r}.")
            return "failed"
        except Exception as exc:
            return self.record_exception(claim, exc)
        finally:
            SHUTDOWN.stop = None
            finished.set()
            beat.join(timeout=5)

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
                      f"{OUT_OF_MEMORY_ADVICE}.")
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
        # A message may quote what the job was given; never store (and serve) more than a few lines of it.
        if len(detail) > MAX_ERROR_DETAIL_CHARS:
            detail = detail[:MAX_ERROR_DETAIL_CHARS] + " ... (cut)"
        self.fenced(claim, status="failed", error_title=title[:200], error_detail=detail, finished_at=utcnow(),
                    eta_s=None)

    def run_dir(self, claim: Claim) -> tuple[Path, int | None]:
        """This attempt's folder, seeded with the newest checkpoint of any earlier attempt, and
        that checkpoint's step (None when the attempt starts afresh)."""
        run_dir = self.store.attempt_dir(claim.job_id, claim.attempt)
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / CHECKPOINT_FILES[0]).exists():
            return run_dir, None
        best, best_step = None, -1
        for earlier in sorted(self.store.job_dir(claim.job_id).glob("attempt-*")):
            summary = earlier / "run.json"
            if earlier == run_dir or not (earlier / CHECKPOINT_FILES[0]).is_file() or not summary.is_file():
                continue
            try:
                step = int(json.loads(summary.read_text())["step"])
            except (ValueError, KeyError, OSError):
                continue
            if step > best_step:
                best, best_step = earlier, step
        if best is not None:
            log.info("job %s attempt %s resumes from %s (step %s)", claim.job_id, claim.attempt, best.name, best_step)
            for name in CHECKPOINT_FILES:
                # Copy, then rename: the old attempt may still be writing its own files.
                tmp = run_dir / f".{name}.copy"
                shutil.copyfile(best / name, tmp)
                os.replace(tmp, run_dir / name)
        return run_dir, (best_step if best is not None else None)

    def data_source(self, claim: Claim, params) -> str | None:
        """What kgan_core should load: a built-in name or the uploaded archive's path."""
        from api.datasets import dataset_source

        if params.dataset_id is None:
            return params.dataset
        with self.db.session() as s:
            dataset = s.get(Dataset, params.dataset_id)
            source = dataset_source(dataset, self.store) if dataset else None
        if source is None:
            self.fail(claim, "Dataset gone", f"Dataset {params.dataset_id} no longer exists.")
        return source

    def model_dir(self, model_id: str) -> Path:
        with self.db.session() as s:
            return self.store.path(s.get(Model, model_id).run_path)

    def run_train(self, claim: Claim, stop: Stop) -> str:
        from api.datasets import builtin_root
        from api.params import TrainParams
        from kgan_core.train import train

        params = TrainParams.model_validate(claim.params)
        source = self.data_source(claim, params)
        if source is None:
            return "failed"
        config = params.to_config(source, str(builtin_root(self.settings)), self.settings.worker_device)
        run_dir, resumed_from = self.run_dir(claim)
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
            if not ok:
                stop.set("superseded")
            else:
                with self.db.session() as s:
                    if s.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id)):
                        stop.set("cancelled")
            if utcnow() > deadline:
                stop.set("time-limit")
            return not stop

        started = time.perf_counter()
        # The heartbeat thread notices a cancel or a lost lease; the trainer asks after every step.
        result = train(config, run_dir, callback=report, resume=True, should_stop=stop.__bool__)
        log.info("job %s attempt %s: step %s after %.1fs (stopped=%s, %s)", claim.job_id, claim.attempt,
                 result.step, time.perf_counter() - started, result.stopped, stop.reason)
        if result.stopped:
            return self.record_stop(claim, stop, result.step)
        return self.record_model(claim, run_dir, render_pictures(run_dir, self.settings.worker_device))

    def record_stop(self, claim: Claim, stop: Stop, step: int | None = None) -> str:
        """A stopped job; ``step`` is where its last checkpoint was written (None if it has none)."""
        now = utcnow()
        if stop.reason == "cancelled":
            self.fenced(claim, status="cancelled", finished_at=now, eta_s=None)
            return "cancelled"
        if stop.reason == "time-limit":
            self.fail(claim, "Time limit reached", self.time_limit_detail())
            return "failed"
        if stop.reason == "shutdown":
            # Back to the queue, not failed: the next attempt resumes from the checkpoint just written.
            at_step = {} if step is None else {"step": step}
            if not self.fenced(claim, status="queued", worker=None, lease_expires_at=None, enqueued_at=None,
                               eta_s=None, handed_back=Job.handed_back + 1, **at_step):
                return "superseded"
            log.info("job %s attempt %s checkpointed for shutdown; re-queued", claim.job_id, claim.attempt)
            dispatch(self.db, self.send, claim.job_id)
            return "requeued"
        return "superseded"

    def record_model(self, claim: Claim, run_dir: Path, pictures: list[tuple[str, Path, int, dict]] = ()) -> str:
        """The model row, its artifacts (with ``pictures``: (kind, path, member, meta) PNGs) and
        `succeeded`, in one fenced transaction."""
        summary = json.loads((run_dir / "run.json").read_text())
        files = [("checkpoint", "checkpoint.safetensors", "application/octet-stream"),
                 ("run-summary", "run.json", "application/json")]
        hashed = [(kind, name, media, file_sha256(run_dir / name), (run_dir / name).stat().st_size)
                  for kind, name, media in files]
        now = utcnow()
        with self.db.session() as s:
            job = s.execute(select(Job).where(Job.id == claim.job_id).with_for_update()).scalar_one()
            if job.attempt != claim.attempt or job.status != "running":
                return "superseded"
            model = Model(owner_id=job.owner_id, job_id=job.id, attempt=claim.attempt,
                          run_path=self.store.relative(run_dir), k=summary["config"]["k"], step=summary["step"],
                          dataset_kind=summary["dataset"]["kind"], item_shape=summary["dataset"]["item_shape"],
                          config=summary["config"], spec=summary["spec"], tile_sizes=summary["tile_sizes"],
                          tile_shares=summary["tile_shares"], metrics=summary.get("metrics", {}))
            s.add(model)
            s.flush()
            for kind, name, media, sha, size in hashed:
                meta = {"step": summary["step"], "metrics": summary.get("metrics", {})}
                s.add(Artifact(owner_id=job.owner_id, job_id=job.id, model_id=model.id, kind=kind, filename=name,
                               path=self.store.relative(run_dir / name), media_type=media, size_bytes=size,
                               sha256=sha, meta=meta))
            for kind, path, member, meta in pictures:
                s.add(Artifact(owner_id=job.owner_id, job_id=job.id, model_id=model.id, member=member, kind=kind,
                               filename=path.name, path=self.store.relative(path), media_type="image/png",
                               size_bytes=path.stat().st_size, sha256=file_sha256(path), meta=meta))
            job.status, job.finished_at, job.eta_s = "succeeded", now, None
            job.step = summary["step"]
        return "succeeded"

    def register(self, claim: Claim, files: list[tuple[str, Path, str, int | None, dict]],
                 model_id: str | None) -> str:
        """Record output files as artifacts and mark the job succeeded, in one fenced transaction."""
        hashed = [(kind, path, media, member, meta, file_sha256(path), path.stat().st_size)
                  for kind, path, media, member, meta in files]
        with self.db.session() as s:
            job = s.execute(select(Job).where(Job.id == claim.job_id).with_for_update()).scalar_one()
            if job.attempt != claim.attempt or job.status != "running":
                return "superseded"
            for kind, path, media, member, meta, sha, size in hashed:
                s.add(Artifact(owner_id=job.owner_id, job_id=job.id, model_id=model_id, member=member, kind=kind,
                               filename=path.name, path=self.store.relative(path), media_type=media,
                               size_bytes=size, sha256=sha, meta=meta))
            job.status, job.finished_at, job.eta_s, job.step = "succeeded", utcnow(), None, job.total
        return "succeeded"

    def run_train_prior(self, claim: Claim, stop: Stop) -> str:
        """A learned image prior. It has no checkpoints, so a new attempt starts it afresh."""
        from api.datasets import builtin_root
        from api.params import PriorParams
        from kgan_core.prior import train_prior

        params = PriorParams.model_validate(claim.params)
        source = self.data_source(claim, params)
        if source is None:
            return "failed"
        run = str(self.model_dir(params.model_id)) if params.model_id else None
        vgg = str(self.settings.vgg_weights) if self.settings.vgg_weights else None
        config = params.to_config(source, str(builtin_root(self.settings)), self.settings.worker_device, run, vgg)
        run_dir = self.store.attempt_dir(claim.job_id, claim.attempt)
        run_dir.mkdir(parents=True, exist_ok=True)

        def report(progress) -> bool:
            rate = progress.step / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
            ok = self.fenced(claim, step=progress.step, total=progress.total,
                             eta_s=(progress.total - progress.step) / rate if rate else None,
                             progress={"losses": progress.losses, "heldout_mse": progress.heldout_mse,
                                       "elapsed_s": round(progress.elapsed_s, 3)})
            self._check_stop(claim, stop, ok)
            return not stop

        result = train_prior(config, run_dir / "prior.safetensors", callback=report)
        if stop.event.is_set():  # not bool(stop): a shutdown asked for after the last step changes nothing
            return self.record_stop(claim, stop)
        meta = {"metrics": result.metrics, "encoder": params.encoder, "item_shape": list(result.prior.item_shape)}
        self.fenced(claim, progress={"metrics": result.metrics})
        return self.register(claim, [("prior", result.path, "application/octet-stream", None, meta)],
                             params.model_id)

    def run_visualise(self, claim: Claim) -> str:
        from api.params import VisualiseParams
        from kgan_core.run import load_run
        from kgan_core.visualise import options_of, visualise

        params = VisualiseParams.model_validate(claim.params)
        options = dict(params.options)
        if params.prior_id is not None:
            with self.db.session() as s:
                options["prior"] = str(self.store.path(s.get(Artifact, params.prior_id).path))
        if self.settings.vgg_weights and "vgg_weights" in options_of(params.what):
            options["vgg_weights"] = str(self.settings.vgg_weights)
        run = load_run(self.model_dir(params.model_id), device=_device(self.settings.worker_device))
        vis = visualise(run, params.what, params.member, seed=params.seed, **options)
        run_dir = self.store.attempt_dir(claim.job_id, claim.attempt)
        name = params.what + (f"-member{params.member}" if params.member is not None else "") + ".png"
        png_path, _json_path = vis.save(run_dir / name)
        meta = {"title": vis.title, "numbers": vis.numbers, "timings": vis.timings, "seed": params.seed,
                "options": params.options}
        files = [(params.what, png_path, "image/png", params.member, meta)]
        if vis.images is not None:  # the images the picture shows, for analysis without parsing the grid
            raw = {"title": vis.title, "shape": list(vis.images.shape), "dtype": "float32",
                   "range": "model range [-1, 1]", "axes": "rows, columns, channels, height, width"}
            files.append((f"{params.what}-images", png_path.with_suffix(".npy"), "application/x-npy", params.member,
                          raw))
        return self.register(claim, files, params.model_id)

    def _check_stop(self, claim: Claim, stop: Stop, wrote: bool) -> None:
        if not wrote:
            stop.set("superseded")
            return
        with self.db.session() as s:
            if s.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id)):
                stop.set("cancelled")


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
