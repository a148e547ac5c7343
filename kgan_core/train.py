"""k-GAN training (docs/architecture.md §3).

k WGAN members, each with a point mass m_j in data space. The data is cut into the tiles
of the point masses (Voronoi, balanced Laguerre cells, or none), every member trains on its
own tile, and every so often each m_j moves to the medoid of its generator's samples and
the tiles are recomputed: k-medoids with generators as centres.

One training step updates all k members together (``execution="batched"``): the members
are one stacked network (``kgan_core.nn``), so every layer is one kernel instead of k.
``execution="sequential"`` runs the members one after another with their own optimisers on
exactly the same random draws: the reference the batched path is tested against. Neither is
faster everywhere (on a CPU the stacked 64 px convolutions lose to k small ones), so the
default, ``execution="auto"``, times a few steps of each at the start of a run and of each
resume and trains with the faster (``race_executions``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgan_core import checkpoint as ckpt_io
from kgan_core.config import (
    DATA_DEFAULTED_FIELDS,
    RESUMABLE_FIELDS,
    TrainConfig,
    TrainingError,
    dataset_for,
    resolve_device,
    with_data_defaults,
)
from kgan_core.data import Dataset
from kgan_core.models import Critic, Generator, ModelSpec, build_critic, build_generator, default_spec
from kgan_core.nn import slice_state, stack_members, take_member
from kgan_core.sampling import sample_ensemble
from kgan_core.tiles import (
    Tiles,
    assign_balanced,
    assign_voronoi,
    descend,
    kmeans,
    medoid,
    split_empty_tiles,
)


@dataclass
class Progress:
    """What the callback sees: enough to draw a progress bar and a loss curve."""

    step: int
    total: int
    d_loss: list[float]
    g_loss: list[float]
    wasserstein: list[float]
    tile_sizes: list[int]
    elapsed_s: float
    eta_s: float | None
    events: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Return False to stop: the trainer writes a checkpoint first, so the run can be resumed.
Callback = Callable[[Progress], "bool | None"]
# Asked after every step (so it must be cheap, e.g. reading a flag another thread sets):
# True stops the run there, after a checkpoint. Progress reports can be far apart; this is
# what lets a cancel or a shutdown take effect at the next step.
ShouldStop = Callable[[], bool]


@dataclass
class TrainResult:
    step: int
    stopped: bool
    run_dir: Path


# --- the two ways of running a step --------------------------------------------------------


def critic_losses(generator: Generator, critic: Critic, real: torch.Tensor, z: torch.Tensor,
                  eps: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member critic loss (k,) and Wasserstein estimate (k,), for any k."""
    with torch.no_grad():
        fake = generator(z)
    wasserstein = critic(real).mean(1) - critic(fake).mean(1)
    loss = -wasserstein
    if config.loss == "wgan-gp" and config.gp_lambda > 0:
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        # (k, B): member j's scores depend only on mixed[j]. Measured in the critic's own frame
        # (see MLPCritic), so the penalty means the same for a tight tile as for a wide one.
        norms = grad.flatten(2).norm(dim=2) * critic.input_spread()
        loss = loss + config.gp_lambda * ((norms - 1) ** 2).mean(1)
    return loss, wasserstein.detach()


def generator_losses(generator: Generator, critic: Critic, z: torch.Tensor) -> torch.Tensor:
    return -critic(generator(z)).mean(1)


def make_optimizer(params, lr: float, config: TrainConfig) -> torch.optim.Optimizer:
    if config.loss == "wgan-clip":  # the original WGAN recipe the thesis followed
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(config.beta1, config.beta2))


class BatchedMembers:
    """All k members as one stacked generator and one stacked critic."""

    def __init__(self, generator: Generator, critic: Critic, config: TrainConfig):
        self.generator, self.critic, self.config = generator, critic, config
        self.opt_g = make_optimizer(generator.parameters(), config.lr_g, config)
        self.opt_d = make_optimizer(critic.parameters(), config.lr_d, config)

    def critic_step(self, real, z, eps):
        loss, wasserstein = critic_losses(self.generator, self.critic, real, z, eps, self.config)
        self.opt_d.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.opt_d.step()
        if self.config.loss == "wgan-clip":
            clip_weights(self.critic, self.config.clip_value)
        return loss.detach(), wasserstein

    def generator_step(self, z):
        self.critic.requires_grad_(False)
        loss = generator_losses(self.generator, self.critic, z)
        self.opt_g.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.opt_g.step()
        self.critic.requires_grad_(True)
        return loss.detach()

    @torch.no_grad()
    def generate(self, z):
        self.generator.eval()
        try:
            return self.generator(z)
        finally:
            self.generator.train()

    def set_lr_factor(self, factor: float) -> None:
        for opt, base in ((self.opt_g, self.config.lr_g), (self.opt_d, self.config.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def set_frames(self, anchor: torch.Tensor, spread: torch.Tensor) -> None:
        self.generator.set_frame(anchor, spread)
        self.critic.set_frame(anchor, spread)

    def stacked(self) -> tuple[Generator, Critic, dict, dict]:
        return self.generator, self.critic, self.opt_g.state_dict(), self.opt_d.state_dict()


class SequentialMembers:
    """The naive reference: k separate (k=1) networks and optimisers, updated in turn."""

    def __init__(self, generator: Generator, critic: Critic, config: TrainConfig,
                 opt_g: dict | None = None, opt_d: dict | None = None):
        self.config, self.k = config, generator.k
        self.members = [BatchedMembers(take_member(generator, j), take_member(critic, j), config)
                        for j in range(self.k)]
        for j, m in enumerate(self.members):
            if opt_g is not None:
                m.opt_g.load_state_dict(slice_optimizer_state(opt_g, self.k, j))
            if opt_d is not None:
                m.opt_d.load_state_dict(slice_optimizer_state(opt_d, self.k, j))

    def critic_step(self, real, z, eps):
        out = [m.critic_step(real[j:j + 1], z[j:j + 1], eps[j:j + 1]) for j, m in enumerate(self.members)]
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])

    def generator_step(self, z):
        return torch.cat([m.generator_step(z[j:j + 1]) for j, m in enumerate(self.members)])

    def generate(self, z):
        return torch.cat([m.generate(z[j:j + 1]) for j, m in enumerate(self.members)])

    def set_lr_factor(self, factor: float) -> None:
        for m in self.members:
            m.set_lr_factor(factor)

    def set_frames(self, anchor: torch.Tensor, spread: torch.Tensor) -> None:
        for j, m in enumerate(self.members):
            m.set_frames(anchor[j:j + 1], spread[j:j + 1])

    def stacked(self):
        generator = stack_members([m.generator for m in self.members])
        critic = stack_members([m.critic for m in self.members])
        opt_g = stack_optimizer_states([m.opt_g.state_dict() for m in self.members])
        opt_d = stack_optimizer_states([m.opt_d.state_dict() for m in self.members])
        return generator, critic, opt_g, opt_d


def clip_weights(module: torch.nn.Module, c: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.clamp_(-c, c)


def stack_optimizer_states(states: list[dict]) -> dict:
    """k per-member optimiser state dicts -> one for the stacked parameters (members on dim 0)."""
    out = {"param_groups": states[0]["param_groups"], "state": {}}
    for index, first in states[0]["state"].items():
        out["state"][index] = {
            name: value if torch.as_tensor(value).dim() == 0
            else torch.cat([s["state"][index][name] for s in states])
            for name, value in first.items()
        }
    return out


def slice_optimizer_state(state: dict, k: int, index: int) -> dict:
    return {"param_groups": state["param_groups"],
            "state": {i: slice_state(dict(s), k, index) for i, s in state["state"].items()}}


# --- choosing the execution ---------------------------------------------------------------

# Timed steps per path after one warm-up step each: enough to see a difference of more than a
# few percent, and at most ~2 x (1 + RACE_STEPS) steps' time spent on timing.
RACE_STEPS = 3
# Fewer remaining steps than this and the race would cost more than the few percent it can
# save (and the tiny runs of the tests would slow down by half): such runs stay batched.
RACE_MIN_STEPS = 100


def race(steps: dict[str, Callable[[], object]], device: torch.device, repeats: int = RACE_STEPS) -> dict[str, float]:
    """Seconds per call of each step (the fastest of ``repeats``, after one warm-up call each)."""
    def timed(step) -> float:
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    for step in steps.values():  # warm-up: allocations, kernel choice
        timed(step)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved, so a busy neighbour slows both alike
        for name, step in steps.items():
            times[name].append(timed(step))
    # The fastest call: the others were slowed by something other than the path.
    return {name: min(t) for name, t in times.items()}


def race_executions(trainer: KGANTrainer, repeats: int = RACE_STEPS) -> dict[str, float]:
    """Seconds per training step of each path for this run on its device.

    Timed on copies of the members with their own random stream, so the run itself trains
    exactly as if no race had been run. The copies hold a second set of weights while timing.
    """
    cfg, k, device = trainer.config, trainer.config.k, trainer.device
    generator, critic, _, _ = trainer.members.stacked()
    paths = {"batched": BatchedMembers(copy.deepcopy(generator), copy.deepcopy(critic), cfg),
             "sequential": SequentialMembers(generator, critic, cfg)}  # take_member copies
    rng = torch.Generator(device).manual_seed(cfg.seed)
    extra = (1,) * len(trainer.dataset.item_shape)

    def step(members) -> None:
        for _ in range(cfg.n_critic):
            real = trainer.dataset.to_model(trainer.data[trainer.tiles.sample_rows(cfg.batch_size, rng)])
            z = torch.randn(k, cfg.batch_size, trainer.spec.latent_dim, generator=rng, device=device)
            eps = torch.rand(k, cfg.batch_size, *extra, generator=rng, device=device)
            members.critic_step(real, z, eps)
        members.generator_step(torch.randn(k, cfg.batch_size, trainer.spec.latent_dim, generator=rng, device=device))

    return race({name: (lambda m=members: step(m)) for name, members in paths.items()}, device, repeats)


# --- the trainer -------------------------------------------------------------------------


class KGANTrainer:
    """Owns the data on the device, the members, the tiles and the RNG stream of one run."""

    def __init__(self, config: TrainConfig, dataset: Dataset | None = None):
        self.device = resolve_device(config.device)
        self.dataset = dataset if dataset is not None else dataset_for(config)
        self.config = config = with_data_defaults(config, self.dataset.item_shape)
        n, k = self.dataset.n, config.k
        if k > n:
            raise TrainingError(f"k={k} members need at least {k} data items; the dataset has {n}")
        self.spec = default_spec(self.dataset.item_shape, config.arch, config.latent_dim, config.width)
        # Stored form on the device (uint8 images stay uint8: 4x less memory and bandwidth);
        # batches are gathered by index and converted to the model's range on the fly.
        self.data = self.dataset.x.to(self.device)
        self.flat = self.dataset.to_model(self.data).reshape(n, -1)
        self.rng = torch.Generator(self.device).manual_seed(config.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            generator = build_generator(self.spec, k)
            critic = build_critic(self.spec, k)
        self.step = 0
        self.rounds_done = 0
        self.history: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.execution_choice: dict[str, Any] = {}
        self._init_members(generator.to(self.device), critic.to(self.device))
        self.masses = kmeans(self.flat, k, self.rng)
        self._retile()

    def _init_members(self, generator, critic, opt_g=None, opt_d=None, execution: str | None = None):
        # "auto" starts batched; choose_execution may switch once the run is about to train.
        self.execution = execution or ("sequential" if self.config.execution == "sequential" else "batched")
        if self.execution == "sequential":
            self.members = SequentialMembers(generator, critic, self.config, opt_g, opt_d)
        else:
            self.members = BatchedMembers(generator, critic, self.config)
            if opt_g is not None:
                self.members.opt_g.load_state_dict(opt_g)
                self.members.opt_d.load_state_dict(opt_d)

    def choose_execution(self) -> None:
        """With execution="auto", train on the faster path here; run.json and the events say which and why."""
        cfg, remaining = self.config, self.config.steps - self.step
        if cfg.execution != "auto":
            self.execution_choice = {"execution": self.execution, "reason": "asked for"}
            return
        if cfg.k == 1:
            reason = "k=1: both paths are the same computation"
        elif remaining < RACE_MIN_STEPS:
            reason = f"{remaining} steps to go: timing both paths would cost more than it could save"
        else:
            timings = race_executions(self)
            chosen = min(timings, key=timings.get)
            if chosen != self.execution:
                self._init_members(*self.members.stacked(), execution=chosen)
            self.execution_choice = {"execution": chosen, "reason": "faster here",
                                     "seconds_per_step": timings, "device": str(self.device)}
            self.events.append(
                f"step {self.step}: training {chosen} (timed on {self.device}: batched "
                f"{timings['batched'] * 1e3:.1f} ms/step, sequential {timings['sequential'] * 1e3:.1f} ms/step)")
            return
        self.execution_choice = {"execution": self.execution, "reason": reason}

    # tiles ----------------------------------------------------------------------------

    def _retile(self) -> None:
        k, how = self.config.k, self.config.assignment
        if how == "none":
            self.tiles = Tiles.shared(self.dataset.n, k, self.device)
            self._set_generator_frames()
            return
        if how == "balanced":
            assignment = assign_balanced(self.flat, self.masses)
        else:
            assignment = assign_voronoi(self.flat, self.masses)
            self.masses, events = split_empty_tiles(self.flat, self.masses, assignment, self.rng)
            if events:
                self.events.extend(events)
                assignment = assign_voronoi(self.flat, self.masses)
        self.tiles = Tiles.from_assignment(assignment, k)
        self._set_generator_frames()

    def _set_generator_frames(self) -> None:
        """Generators work in their tile's frame: points (MLPGenerator), images (ConvGenerator's anchor)."""
        k = self.config.k
        rows = [self.tiles.order[s:s + n] for s, n in zip(self.tiles.starts.tolist(), self.tiles.sizes.tolist(),
                                                           strict=True)]
        anchor = torch.stack([self.flat[r].mean(0) for r in rows])
        spread = torch.stack([self.flat[r].var(0, unbiased=False).mean().sqrt() for r in rows])
        self.members.set_frames(anchor.reshape(k, -1), spread.clamp_min(1e-6))

    def move_point_masses(self) -> None:
        """Move each m_j to the medoid of G_j's samples (where that helps, see medoid_moves), then re-tile."""
        z = torch.randn(self.config.k, self.config.medoid_samples, self.spec.latent_dim,
                        generator=self.rng, device=self.device)
        samples = self.members.generate(z).reshape(self.config.k, self.config.medoid_samples, -1)
        proposed = torch.stack([medoid(s, self.config.medoid) for s in samples])
        if self.config.medoid_moves == "descent" and self.config.assignment == "voronoi":
            self.masses, changes = descend(self.flat, self.masses, proposed)
            stayed = [f"{j} ({change:+.2%})" for j, change in enumerate(changes) if change >= 0]
            if stayed:
                self.events.append(f"step {self.step}: {len(stayed)} of {self.config.k} point masses stayed, "
                                   f"their medoid would not lower the tiling cost: members " + ", ".join(stayed))
        else:
            self.masses = proposed
        self._retile()

    @property
    def round_every(self) -> int:
        return max(1, self.config.steps // (self.config.rounds + 1))

    # one step ---------------------------------------------------------------------------

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, k = self.config, self.config.k
        extra = (1,) * len(self.dataset.item_shape)
        if cfg.lr_decay == "linear":
            # A function of the step alone, so a resumed run follows the same schedule.
            self.members.set_lr_factor(max(0.0, 1.0 - self.step / cfg.steps))
        for _ in range(cfg.n_critic):
            rows = self.tiles.sample_rows(cfg.batch_size, self.rng)
            real = self.dataset.to_model(self.data[rows])
            z = torch.randn(k, cfg.batch_size, self.spec.latent_dim, generator=self.rng, device=self.device)
            eps = torch.rand(k, cfg.batch_size, *extra, generator=self.rng, device=self.device)
            d_loss, wasserstein = self.members.critic_step(real, z, eps)
        z = torch.randn(k, cfg.batch_size, self.spec.latent_dim, generator=self.rng, device=self.device)
        g_loss = self.members.generator_step(z)
        self.step += 1
        return d_loss, g_loss, wasserstein

    # persistence ------------------------------------------------------------------------

    def checkpoint(self) -> ckpt_io.Checkpoint:
        generator, critic, opt_g, opt_d = self.members.stacked()
        return ckpt_io.Checkpoint(
            config=self.config.model_dump(), spec=self.spec.to_dict(), step=self.step,
            generator=generator.state_dict(), critic=critic.state_dict(), opt_g=opt_g, opt_d=opt_d,
            masses=self.masses, assignment=self.tiles.assignment, rng_state=self.rng.get_state(),
            state={"rounds_done": self.rounds_done, "history": self.history, "events": self.events,
                   "metrics": self.metrics},
        )

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(), "spec": self.spec.to_dict(), "step": self.step,
            "dataset": {"name": self.dataset.name, "kind": self.dataset.kind, "n": self.dataset.n,
                        "item_shape": list(self.dataset.item_shape)},
            "tile_sizes": self.tiles.sizes.tolist(), "tile_shares": self.tiles.shares,
            "metrics": self.metrics, "events": self.events, "history": self.history,
            "execution": self.execution_choice,
        }

    def save(self, run_dir: Path) -> None:
        ckpt_io.save_checkpoint(run_dir, self.checkpoint(), self.summary())

    def restore(self, saved: ckpt_io.Checkpoint) -> None:
        if ModelSpec.from_dict(saved.spec) != self.spec:
            raise ckpt_io.CheckpointError(
                f"the checkpoint holds a {saved.spec['arch']} model for items {saved.spec['item_shape']} "
                f"(latent {saved.spec['latent_dim']}, width {saved.spec['width']}), but this config "
                f"builds {self.spec.to_dict()}; use a new output folder or the checkpoint's config")
        generator = build_generator(self.spec, self.config.k)
        critic = build_critic(self.spec, self.config.k)
        generator.load_state_dict(saved.generator)
        critic.load_state_dict(saved.critic)
        self._init_members(generator.to(self.device), critic.to(self.device), saved.opt_g, saved.opt_d)
        self.masses = saved.masses.to(self.device)
        assignment = saved.assignment.to(self.device)
        if self.config.assignment == "none":
            self.tiles = Tiles.shared(self.dataset.n, self.config.k, self.device)
        else:
            self.tiles = Tiles.from_assignment(assignment, self.config.k)
        self.rng.set_state(saved.rng_state)
        self.step = saved.step
        self.rounds_done = int(saved.state.get("rounds_done", 0))
        self.history = list(saved.state.get("history", []))
        self.events = list(saved.state.get("events", []))
        self.metrics = dict(saved.state.get("metrics", {}))

    # the loop ---------------------------------------------------------------------------

    def fit(self, run_dir: Path, callback: Callback | None = None,
            should_stop: ShouldStop | None = None) -> TrainResult:
        cfg = self.config
        run_dir = Path(run_dir)
        started, start_step = time.perf_counter(), self.step
        reported_events = len(self.events)
        self.choose_execution()
        if self.step == 0:
            self.save(run_dir)
        stopped = False
        while self.step < cfg.steps:
            if self.rounds_done < cfg.rounds and self.step >= (self.rounds_done + 1) * self.round_every:
                self.move_point_masses()
                self.rounds_done += 1
            d_loss, g_loss, wasserstein = self.train_step()
            done = self.step >= cfg.steps
            if self.step % cfg.log_every == 0 or done or len(self.events) > reported_events:
                elapsed = time.perf_counter() - started
                rate = (self.step - start_step) / elapsed if elapsed > 0 else 0.0
                progress = Progress(
                    step=self.step, total=cfg.steps, d_loss=d_loss.tolist(), g_loss=g_loss.tolist(),
                    wasserstein=wasserstein.tolist(), tile_sizes=self.tiles.sizes.tolist(),
                    elapsed_s=elapsed, eta_s=(cfg.steps - self.step) / rate if rate > 0 else None,
                    events=self.events[reported_events:],
                )
                reported_events = len(self.events)
                self.history.append({"step": self.step, "d_loss": progress.d_loss, "g_loss": progress.g_loss,
                                     "wasserstein": progress.wasserstein, "tile_sizes": progress.tile_sizes})
                if callback is not None and callback(progress) is False:
                    stopped = True
            if not done and should_stop is not None and should_stop():
                stopped = True
            if done:
                self.metrics = self.final_metrics()
            if done or stopped or self.step % cfg.checkpoint_every == 0:
                self.save(run_dir)
            if stopped:
                break
        return TrainResult(step=self.step, stopped=stopped, run_dir=run_dir)

    def final_metrics(self) -> dict[str, Any]:
        from kgan_core.health import health_at_end
        from kgan_core.metrics import mode_metrics, normalized_mutual_information

        metrics: dict[str, Any] = {}
        if self.dataset.centres is not None and self.dataset.sigma is not None:
            samples = sample_ensemble(self.members.generate, self.tiles.shares, self.spec.latent_dim,
                                      2500, seed=self.config.seed, device=self.device)
            metrics.update(mode_metrics(samples.cpu(), self.dataset.centres, self.dataset.sigma))
        if self.dataset.labels is not None and self.config.assignment != "none":
            metrics["tile_label_nmi"] = normalized_mutual_information(
                self.tiles.assignment.cpu(), self.dataset.labels)
        metrics["health"] = health_at_end(self)
        return metrics


def train(config: TrainConfig, run_dir: str | Path, *, callback: Callback | None = None,
          resume: bool = True, dataset: Dataset | None = None,
          should_stop: ShouldStop | None = None) -> TrainResult:
    """Train (or resume) a k-GAN run in ``run_dir``.

    Everything that can fail on bad input (dataset, k, architecture, an incompatible
    checkpoint) is checked before anything is written, so a bad request leaves no files.
    """
    run_dir = Path(run_dir)
    saved = ckpt_io.load_checkpoint(run_dir) if resume and ckpt_io.has_checkpoint(run_dir) else None
    if saved is not None:
        # A field left to its data default resumes with the value the run started with.
        config = config.model_copy(update={name: saved.config[name] for name in DATA_DEFAULTED_FIELDS
                                           if getattr(config, name) is None and name in saved.config})
        check_resumable(TrainConfig.model_validate(saved.config), config)
    elif ckpt_io.has_checkpoint(run_dir):
        raise TrainingError(f"{run_dir} already holds a run; resume it or choose a new folder")
    trainer = KGANTrainer(config, dataset)
    if saved is not None:
        trainer.restore(saved)
    return trainer.fit(run_dir, callback, should_stop)


def check_resumable(saved: TrainConfig, new: TrainConfig) -> None:
    a, b = saved.model_dump(), new.model_dump()
    differ = [f"{name}: {a[name]!r} in the checkpoint, {b[name]!r} now"
              for name in a if name not in RESUMABLE_FIELDS and a[name] != b[name]]
    if differ:
        raise ckpt_io.CheckpointError(
            "cannot resume: the folder holds a run with a different configuration ("
            + "; ".join(differ) + "). Use a new output folder, or the same settings.")
