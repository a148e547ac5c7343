"""An independent judge of generated images, and every number beside its controls.

    from kgan_core.judge import judge_for, scores_with_controls
    judge = judge_for(dataset)                 # trained on the data alone, cached by fingerprint
    judge.features(images)                     # (N, C, H, W) in [-1, 1] -> (N, 64)
    judge.predict_proba(images)                # labelled data only
    print(scores_with_controls(samples, tile_images, judge).table())

Nothing here imports the service, the generators, the critics or the learned prior.
"""

from kgan_core.judge.controls import (
    BAD_CONTROLS,
    CONTROLS,
    METRICS,
    Scores,
    control_images,
    is_informative,
    scores_with_controls,
)
from kgan_core.judge.judge import (
    Judge,
    JudgeError,
    dataset_fingerprint,
    default_cache_dir,
    held_out_rows,
    judge_for,
    train_judge,
)
from kgan_core.judge.metrics import (
    class_histogram,
    frechet_distance,
    histogram_kl,
    mean_pairwise_distance,
    precision_recall,
)
from kgan_core.judge.modes import PROTOCOL_SAMPLES, mode_controls, mode_scores, sampled_mode_scores, stacked_modes
from kgan_core.judge.networks import FEATURE_DIM, JUDGE_SIZE

__all__ = [
    "BAD_CONTROLS", "CONTROLS", "FEATURE_DIM", "JUDGE_SIZE", "METRICS", "Judge", "JudgeError", "Scores",
    "class_histogram", "control_images", "dataset_fingerprint", "default_cache_dir", "frechet_distance",
    "held_out_rows", "histogram_kl", "is_informative", "judge_for", "mean_pairwise_distance", "mode_controls",
    "mode_scores", "PROTOCOL_SAMPLES", "precision_recall", "sampled_mode_scores", "scores_with_controls",
    "stacked_modes", "train_judge",
]
