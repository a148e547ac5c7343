"""Every judge number beside its controls.

``scores_with_controls(samples, real, judge)`` splits the real images (a member's tile, or
the whole data for the ensemble) into two halves: half A is the reference, half B is the
**real** control (the floor: what real images not in the reference score). Beside it, the
same metrics for images that must score badly: uniform **noise**, **blank** images (all −1
and all +1) and the reference's **tile mean** repeated (the ceiling: a blur that matches the
average exactly, which a metric of realism must not reward). A metric whose real control
does not beat every bad control by its margin is **uninformative**: whatever the samples
score on it says nothing, and a table must say so instead of reporting it as met.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kgan_core.judge.judge import Judge
from kgan_core.judge.metrics import class_histogram, frechet_distance, histogram_kl, precision_recall

BAD_CONTROLS = ("noise", "blank_black", "blank_white", "tile_mean")
CONTROLS = ("real", *BAD_CONTROLS)

# name -> (better: "lower"/"higher", margin). A lower-is-better metric is informative when
# real scores at most `margin` times the best bad control (FD of real halves vs a blank is
# usually 10-100x apart; within 2x the metric cannot tell a blur from a digit). A share in
# [0, 1] is informative when real beats every bad control by `margin` (0.2 = a fifth of all
# images, far beyond the sampling noise of a few hundred images).
METRICS: dict[str, tuple[str, float]] = {
    "fd": ("lower", 0.5),
    "precision": ("higher", 0.2),
    "precision_core": ("higher", 0.2),
    "recall": ("higher", 0.2),
    "majority_share": ("higher", 0.2),
    "confidence_median": ("higher", 0.2),
    "class_kl": ("lower", 0.5),
}


def control_images(reference: torch.Tensor, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The bad controls, n images shaped like the reference (model range [-1, 1])."""
    shape = (n, *reference.shape[1:])
    g = torch.Generator().manual_seed(seed)
    return {
        "noise": torch.rand(shape, generator=g) * 2 - 1,
        "blank_black": torch.full(shape, -1.0),
        "blank_white": torch.full(shape, 1.0),
        "tile_mean": reference.float().mean(0, keepdim=True).expand(shape).clone(),
    }


def better(metric: str, a: float, b: float) -> bool:
    """Whether value a is strictly better than b on this metric."""
    return a < b if METRICS[metric][0] == "lower" else a > b


def is_informative(metric: str, values: dict[str, float]) -> bool:
    """Whether the real control beats every bad control present by the metric's margin."""
    direction, margin = METRICS[metric]
    bad = [values[c] for c in BAD_CONTROLS if c in values]
    if "real" not in values or not bad:
        return False
    if direction == "lower":
        return values["real"] <= margin * min(bad)
    return values["real"] >= max(bad) + margin


@dataclass
class ScoredMetric:
    name: str
    better: str                     # "lower" or "higher"
    values: dict[str, float]        # candidate name -> value (samples, controls, extras)
    informative: bool               # real beats every bad control by the margin
    beats_bad_controls: bool        # the samples beat every bad control
    to_real: float                  # samples / real (lower-better) or real - samples (higher-better)


@dataclass
class Scores:
    """The samples' numbers with every control beside them (``to_dict`` for JSON, ``table`` for text)."""

    sample_name: str
    n: int
    reference_majority: int | None
    class_names: tuple[str, ...] | None
    metrics: dict[str, ScoredMetric] = field(default_factory=dict)
    histograms: dict[str, list[float]] = field(default_factory=dict)

    def value(self, metric: str, candidate: str | None = None) -> float:
        return self.metrics[metric].values[candidate or self.sample_name]

    def to_dict(self) -> dict:
        return {"samples": self.sample_name, "n": self.n, "reference_majority": self.reference_majority,
                "metrics": {m.name: {"better": m.better, "values": m.values, "informative": m.informative,
                                     "beats_bad_controls": m.beats_bad_controls, "to_real": m.to_real}
                            for m in self.metrics.values()},
                "histograms": self.histograms}

    def table(self) -> str:
        """One row per candidate, one column per metric; uninformative metrics are marked."""
        candidates = list(next(iter(self.metrics.values())).values) if self.metrics else []
        header = ["", *(m.name + ("" if m.informative else " (uninformative)") for m in self.metrics.values())]
        rows = [[c, *(f"{m.values[c]:.3f}" for m in self.metrics.values())] for c in candidates]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows])


def scores_with_controls(samples: torch.Tensor, real: torch.Tensor, judge: Judge, *, seed: int = 0,
                         extra: dict[str, torch.Tensor] | None = None, sample_name: str = "samples",
                         k_nn: int = 3, max_items: int = 2000) -> Scores:
    """Judge samples against real images, with the real split-half and bad controls beside them.

    samples: (N, C, H, W) generated images, model range. real: the tile's (or data's) real
    images, uint8 or model range; needs at least 8. extra: more candidates judged the same
    way (an untrained generator, a single GAN, a PCA reconstruction ...). Every candidate is
    cut to the same n (the smaller of the samples and half the real images, at most
    max_items) so no row wins on sample size.
    """
    if real.dtype == torch.uint8:
        real = real.float().div(127.5).sub(1.0)
    if len(real) < 8:
        raise ValueError(f"judging needs at least 8 real images to split in halves, got {len(real)}")
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    half = len(real) // 2
    reference, held = real[order[:half]][:max_items], real[order[half:]]
    n = min(len(samples), len(held), max_items)
    candidates = {sample_name: samples[:n].float(), "real": held[:n].float(),
                  **control_images(reference, n, seed)}
    for name, images in (extra or {}).items():
        candidates[name] = images[:n].float()

    ref_features = judge.features(reference)
    features = {name: judge.features(images) for name, images in candidates.items()}
    values: dict[str, dict[str, float]] = {m: {} for m in ("fd", "precision", "precision_core", "recall")}
    for name, f in features.items():
        values["fd"][name] = frechet_distance(f, ref_features)
        pr = precision_recall(ref_features, f, k=k_nn)
        for key, value in pr.items():
            values[key][name] = value

    scores = Scores(sample_name, n, None, judge.class_names)
    if judge.labelled:
        ref_classes = class_histogram(judge.predict_proba(reference))
        scores.reference_majority = ref_classes["majority"]
        scores.histograms["reference"] = ref_classes["histogram"]
        for key in ("majority_share", "confidence_median", "class_kl"):
            values[key] = {}
        for name, images in candidates.items():
            probs = judge.predict_proba(images)
            seen = class_histogram(probs)
            scores.histograms[name] = seen["histogram"]
            # Share of images the judge puts in the reference's majority class (the tile's digit).
            values["majority_share"][name] = seen["histogram"][ref_classes["majority"]]
            values["confidence_median"][name] = seen["confidence_median"]
            values["class_kl"][name] = histogram_kl(ref_classes["histogram"], seen["histogram"])

    for metric, per_candidate in values.items():
        direction, _ = METRICS[metric]
        sample_value, real_value = per_candidate[sample_name], per_candidate["real"]
        beats = all(better(metric, sample_value, per_candidate[c]) for c in BAD_CONTROLS)
        if direction == "lower":
            to_real = sample_value / real_value if real_value > 0 else float("inf")
        else:
            to_real = real_value - sample_value
        scores.metrics[metric] = ScoredMetric(metric, direction, per_candidate, is_informative(metric, per_candidate),
                                              beats, to_real)
    return scores
