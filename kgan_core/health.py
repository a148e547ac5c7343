"""Member health: is each member learning its tile, and if not, how is it failing?

Five checks per member, each a number, a threshold and a flag:

- **collapse**: the diversity of the member's samples over its tile's (mean pairwise
  distance, in the judge's features when a judge is at hand, else in pixels / data space);
- **critic_inversion**: the member's critic scores its own fakes above real tile images;
- **wasserstein**: the logged Wasserstein estimate ends negative, or diverges;
- **hf_artefacts**: the share of spectral energy above half the Nyquist frequency, over the
  tile's (checkerboards, stripes, pixel noise); images only;
- **saturation**: images whose pixels sit at one value more than the tile's do (a dead or
  saturated output layer); images only.

``assess`` computes them from plain tensors and callables; ``health_at_end`` (called when
training ends) and ``run_health`` (``kgan health RUN_DIR``) feed it a trainer or a saved run.
The result is JSON, stored under ``metrics["health"]`` in run.json and the checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kgan_core.judge import Judge, judge_for, mean_pairwise_distance

HEALTH_VERSION = 1
SAMPLES_PER_MEMBER = 256

# Samples less than half as diverse as their tile cover at most part of it: two halves of a
# real tile measure ~1.0, a generator that ignores z measures ~0.
COLLAPSE_BELOW = 0.5
# (mean D(real) - mean D(fake)) / std D(real). With 256 draws each, two samples of the same
# distribution give |value| < 0.1 almost always; below -0.25 the critic really prefers the fakes.
INVERSION_BELOW = -0.25
# The last quarter of the logged Wasserstein estimates: below 0 the critic rates fakes above
# real on its own training batches; more than DIVERGE_FACTOR times the lowest earlier quarter
# (and rising by more than the estimate's own step-to-step noise) means it is growing apart.
# A member that matches its tile has an estimate near 0 that is negative half the time, so
# "negative" needs the mean to sit below 0 by more than NOISE_SE standard errors of itself
# (ring8: −0.03 with a standard error of 0.06 for a member as wide as its mode).
WASSERSTEIN_BELOW = 0.0
NOISE_SE = 2.0
DIVERGE_FACTOR = 2.0
# Twice the tile's share of energy above half Nyquist is visible texture the data lacks;
# different halves of a real tile differ by a few per cent.
HF_RATIO_ABOVE = 2.0
# Pixels away from the images' most common value (strokes, texture): fewer than half the
# tile's share means the output is stuck at one value (a saturated tanh, a dead layer).
SATURATION_BELOW = 0.5

IMAGE_ONLY = ("hf_artefacts", "saturation")


# --- the single checks ---------------------------------------------------------------------


def _check(value: float | None, threshold: float, flagged: bool, detail: str) -> dict[str, Any]:
    # JSON (and PostgreSQL's json) has no infinity: an unmeasurable ratio is stored as null.
    finite = value is not None and math.isfinite(value)
    return {"value": round(float(value), 4) if finite else None, "threshold": threshold,
            "flagged": bool(flagged), "detail": detail}


def collapse_check(sample_features: torch.Tensor, real_features: torch.Tensor, space: str) -> dict[str, Any]:
    real = mean_pairwise_distance(real_features)
    ratio = mean_pairwise_distance(sample_features) / real if real > 0 else 1.0
    return _check(ratio, COLLAPSE_BELOW, ratio < COLLAPSE_BELOW,
                  f"sample diversity / tile diversity in {space} (mean pairwise distance)")


def inversion_check(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> dict[str, Any]:
    fake_scores, real_scores = fake_scores.double(), real_scores.double()
    spread = float(real_scores.std()) or 1.0
    gap = (float(real_scores.mean()) - float(fake_scores.mean())) / spread
    return _check(gap, INVERSION_BELOW, gap < INVERSION_BELOW,
                  "(mean critic score of real tile images - of fakes) / spread of real scores; the trainer "
                  "holds no images out, so these are tile images the critic trained on")


def wasserstein_check(series: list[float]) -> dict[str, Any]:
    if len(series) < 8:
        return _check(None, WASSERSTEIN_BELOW, False, f"only {len(series)} logged estimates; needs 8 to judge")
    w = torch.tensor(series, dtype=torch.float64)
    quarters = torch.tensor_split(w, 4)
    last = float(quarters[-1].mean())
    lowest_earlier = min(float(q.mean()) for q in quarters[1:-1])
    noise = float(quarters[-1].std()) if len(quarters[-1]) > 1 else 0.0
    diverging = last > DIVERGE_FACTOR * max(lowest_earlier, 0.0) and last - lowest_earlier > 3 * noise and last > 0
    standard_error = noise / math.sqrt(len(quarters[-1]))
    negative = last < WASSERSTEIN_BELOW - NOISE_SE * standard_error
    state = "negative" if negative else "diverging" if diverging else "ok"
    return _check(last, WASSERSTEIN_BELOW, negative or diverging,
                  f"mean of the last quarter of logged estimates ({state}; lowest earlier quarter "
                  f"{lowest_earlier:.4g}, flagged when below {WASSERSTEIN_BELOW} by more than {NOISE_SE:g} "
                  f"standard errors ({standard_error:.3g}) or above {DIVERGE_FACTOR}x that)")


def high_frequency_share(images: torch.Tensor) -> float:
    """Share of (mean-removed) spectral energy beyond half the Nyquist frequency, radially."""
    x = images.double().flatten(0, -3)  # (N*C, H, W)
    x = x - x.mean((-2, -1), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(x).abs() ** 2, dim=(-2, -1)).sum(0)
    h, w = power.shape
    fy = (torch.arange(h, dtype=torch.float64) - h // 2) / (h / 2)
    fx = (torch.arange(w, dtype=torch.float64) - w // 2) / (w / 2)
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()  # 1.0 = Nyquist along an axis
    total = float(power.sum())
    return float(power[radius > 0.5].sum()) / total if total > 0 else 0.0


def hf_check(samples: torch.Tensor, real: torch.Tensor) -> dict[str, Any]:
    real_share = high_frequency_share(real)
    ratio = high_frequency_share(samples) / real_share if real_share > 0 else float("inf")
    return _check(ratio, HF_RATIO_ABOVE, ratio > HF_RATIO_ABOVE,
                  f"share of spectral energy above half Nyquist, samples / tile (tile: {real_share:.4f})")


def off_mode_share(images: torch.Tensor) -> float:
    """Share of pixels farther than one 64th of the range from the images' most common value."""
    x = images.double().clamp(-1, 1).flatten()
    counts = torch.histc(x, bins=64, min=-1.0, max=1.0)
    centre = -1.0 + (int(counts.argmax()) + 0.5) * (2.0 / 64)
    return float(((x - centre).abs() > 2.0 / 64).double().mean())


def saturation_check(samples: torch.Tensor, real: torch.Tensor) -> dict[str, Any]:
    real_off = off_mode_share(real)
    ratio = off_mode_share(samples) / real_off if real_off > 0 else 1.0
    return _check(ratio, SATURATION_BELOW, ratio < SATURATION_BELOW,
                  f"share of pixels away from the most common value, samples / tile (tile: {real_off:.3f})")


def member_checks(samples: torch.Tensor, real: torch.Tensor, *, fake_scores: torch.Tensor | None,
                  real_scores: torch.Tensor | None, wasserstein: list[float] | None,
                  judge: Judge | None, kind: str) -> dict[str, dict[str, Any]]:
    """Every check that applies to one member: samples and real tile items in the model range."""
    if kind == "images" and judge is not None:
        sample_features, real_features, space = judge.features(samples), judge.features(real), "judge features"
    else:
        sample_features, real_features = samples.flatten(1), real.flatten(1)
        space = "pixels" if kind == "images" else "data space"
    checks = {"collapse": collapse_check(sample_features, real_features, space)}
    if fake_scores is not None and real_scores is not None:
        checks["critic_inversion"] = inversion_check(fake_scores, real_scores)
    if wasserstein is not None:
        checks["wasserstein"] = wasserstein_check(wasserstein)
    if kind == "images":
        checks["hf_artefacts"] = hf_check(samples, real)
        checks["saturation"] = saturation_check(samples, real)
    return checks


# --- a whole run -----------------------------------------------------------------------------


def tile_rows(assignment: torch.Tensor | None, k: int, n: int) -> list[torch.Tensor]:
    """Each member's data rows; None (assignment="none") means every member has all of them."""
    if assignment is None:
        return [torch.arange(n)] * k
    assignment = assignment.cpu()
    return [torch.nonzero(assignment == j).flatten() for j in range(k)]


def assess(*, generate: Callable[[torch.Tensor], torch.Tensor], critic: Callable[[torch.Tensor], torch.Tensor],
           items: Callable[[torch.Tensor], torch.Tensor], rows: list[torch.Tensor], history: list[dict],
           latent_dim: int, kind: str, judge: Judge | None, device: torch.device | str = "cpu",
           n: int = SAMPLES_PER_MEMBER, seed: int = 0) -> dict[str, Any]:
    """Health of k members.

    generate: z (k, n, latent) -> samples (k, n, ...); critic: (k, n, ...) -> scores (k, n);
    items: data rows -> real items in the model range; rows: each member's tile rows;
    history: the trainer's log (each entry's "wasserstein" holds one estimate per member).
    """
    k = len(rows)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(k, n, latent_dim, generator=g).to(device)
    real_rows = [r[torch.randint(len(r), (n,), generator=g)] if len(r) else r for r in rows]
    with torch.no_grad():
        samples = generate(z).float()
        fake_scores = critic(samples).cpu()
        real = torch.stack([items(r.to(device)).float() if len(r) else torch.zeros_like(samples[0])
                            for r in real_rows])
        real_scores = critic(real).cpu()
    samples, real = samples.cpu(), real.cpu()
    series = [[entry["wasserstein"][j] for entry in history if "wasserstein" in entry] for j in range(k)]
    members = []
    for j in range(k):
        if len(rows[j]) < 2:
            members.append({"member": j, "flags": [], "checks": {},
                            "note": "the tile holds fewer than 2 items: nothing to compare with"})
            continue
        checks = member_checks(samples[j], real[j], fake_scores=fake_scores[j], real_scores=real_scores[j],
                               wasserstein=series[j], judge=judge, kind=kind)
        members.append({"member": j, "flags": [name for name, c in checks.items() if c["flagged"]],
                        "checks": checks})
    skipped = {name: "image-only check; this run models points" for name in IMAGE_ONLY} if kind != "images" else {}
    return {
        "version": HEALTH_VERSION, "samples_per_member": n, "seed": seed,
        "feature_space": "judge" if judge is not None and kind == "images" else
        ("pixels" if kind == "images" else "data"),
        "judge": judge.describe() if judge is not None and kind == "images" else None,
        "skipped": skipped, "members": members,
        "flagged_members": [m["member"] for m in members if m["flags"]],
    }


def health_at_end(trainer) -> dict[str, Any]:
    """End-of-training health of a ``KGANTrainer``: the judge only if it is cached already.

    Training a judge (a CPU-minute on MNIST) would dominate a tiny run, so without a cached
    judge the collapse check measures diversity in pixels and the result says so;
    ``kgan health RUN_DIR`` recomputes it with the judge.
    """
    dataset = trainer.dataset
    judge = None
    if dataset.kind == "images":
        judge = judge_for(dataset, train=False)
        if judge is not None:
            judge.to(trainer.device)
    critic = trainer.members.stacked()[1]
    shared = trainer.config.assignment == "none"
    rows = tile_rows(None if shared else trainer.tiles.assignment, trainer.config.k, dataset.n)
    health = assess(generate=trainer.members.generate, critic=critic,
                    items=lambda r: dataset.to_model(trainer.data[r]), rows=rows, history=trainer.history,
                    latent_dim=trainer.spec.latent_dim, kind=dataset.kind, judge=judge, device=trainer.device,
                    seed=trainer.config.seed)
    if dataset.kind == "images" and judge is None:
        health["note"] = ("no cached judge for this data, so collapse is measured in pixels; "
                          "`kgan health RUN_DIR` trains the judge and measures it in the judge's features")
    return health


def run_health(run, *, judge: Judge | None | bool = True, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Health of a saved run (``kgan_core.run.Run``). judge: a Judge, True (load or train
    the data's judge), or False/None (no judge: collapse in pixels)."""
    dataset = run.dataset
    if judge is True:
        judge = judge_for(dataset, cache_dir=cache_dir) if dataset.kind == "images" else None
    judge = judge or None
    if judge is not None:
        judge.to(run.device)
    shared = run.config.assignment == "none"
    rows = tile_rows(None if shared else run.assignment, run.k, dataset.n)
    data = dataset.x
    return assess(generate=run.generator, critic=run.critic, items=lambda r: dataset.to_model(data[r.cpu()]),
                  rows=rows, history=run.history, latent_dim=run.spec.latent_dim, kind=dataset.kind,
                  judge=judge, device=run.device, seed=run.config.seed)


def store_health(run_dir: str | Path, health: dict[str, Any]) -> None:
    """Write health into the run's checkpoint state and run.json (both renamed into place)."""
    from kgan_core import checkpoint as ckpt_io

    run_dir = Path(run_dir)
    saved = ckpt_io.load_checkpoint(run_dir)
    saved.state.setdefault("metrics", {})["health"] = health
    summary_path = run_dir / ckpt_io.RUN_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.setdefault("metrics", {})["health"] = health
    ckpt_io.save_checkpoint(run_dir, saved, summary)


def flags_by_member(health: dict[str, Any] | None) -> dict[str, list[str]]:
    """{"0": [], "3": ["collapse", "hf_artefacts"], ...}: the short form for ``kgan info``."""
    if not health:
        return {}
    return {str(m["member"]): m["flags"] for m in health.get("members", [])}
