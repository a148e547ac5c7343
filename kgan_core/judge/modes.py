"""Stacked MNIST's modes: each colour channel read as a digit by the MNIST judge.

The protocol is Metz et al. 2017 ("Unrolled Generative Adversarial Networks", ICLR) as
Srivastava et al. 2017 (VEEGAN, NeurIPS) and Lin et al. 2018 (PacGAN, NeurIPS) run it: draw
26,000 samples, classify the red, green and blue channel each with an MNIST classifier, read
the three digits as one of 1,000 modes (100·d_R + 10·d_G + d_B), and report how many modes
received at least one sample and KL(mode histogram ‖ uniform) in nats. Even a perfect
generator scores KL ≈ 999 / (2 · 26,000) ≈ 0.02 from sampling alone, which is why the real
stacked digits are scored beside every generator (the floor), with the bad controls of
``control_images`` (noise, blank, the mean image) that must score far worse.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kgan_core.judge.controls import BAD_CONTROLS, control_images
from kgan_core.judge.judge import Judge, JudgeError
from kgan_core.metrics import kl_to_uniform

PROTOCOL_SAMPLES = 26_000
N_MODES = 1000
# Images classified at once: 26,000 RGB 28 px images as float are 245 MB; chunks keep it small.
CHUNK = 2000


def stacked_modes(images: torch.Tensor, judge: Judge) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N,) int64 modes 100·d_R + 10·d_G + d_B, each channel's digit
    the MNIST judge's most probable class."""
    if not judge.labelled or judge.class_names is None or len(judge.class_names) != 10 or judge.channels != 1:
        raise JudgeError(f"stacked MNIST needs a judge of single-channel digits (10 classes), got the "
                         f"{judge.kind} of {judge.dataset_name!r}: use judge_for(load_dataset('mnist'))")
    if images.ndim != 4 or images.shape[1] != 3:
        raise JudgeError(f"stacked MNIST images are (N, 3, H, W), one digit per channel; got {tuple(images.shape)}")
    n, _, h, w = images.shape
    digits = judge.predict_proba(images.reshape(n * 3, 1, h, w)).argmax(1).reshape(n, 3)
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def mode_scores(modes: torch.Tensor) -> dict:
    """Modes captured (of 1,000) and KL(mode histogram ‖ uniform) in nats, over len(modes) samples."""
    counts = torch.bincount(modes, minlength=N_MODES)
    return {"modes": int((counts > 0).sum()), "kl": kl_to_uniform(counts), "n": int(modes.numel())}


def sampled_mode_scores(sample: Callable[[int, int], torch.Tensor], judge: Judge,
                        n: int = PROTOCOL_SAMPLES) -> dict:
    """mode_scores of n images drawn as ``sample(count, chunk_index)`` a chunk at a time."""
    modes = []
    for index, start in enumerate(range(0, n, CHUNK)):
        modes.append(stacked_modes(sample(min(CHUNK, n - start), index), judge))
    return mode_scores(torch.cat(modes))


def mode_controls(real: torch.Tensor, judge: Judge, seed: int = 0) -> dict[str, dict]:
    """mode_scores of the real stacked images given (model range; the floor) and of as many of
    each bad control (noise, blank black and white, the real images' mean)."""
    n = real.shape[0]
    scores = {"real": sampled_mode_scores(lambda count, i: real[i * CHUNK:i * CHUNK + count], judge, n)}
    mean = real.float().mean(0, keepdim=True)  # control_images of the mean alone: its "tile_mean" is the mean
    for name in BAD_CONTROLS:
        def draw(count: int, i: int, name: str = name) -> torch.Tensor:
            return control_images(mean, count, seed + i)[name]
        scores[name] = sampled_mode_scores(draw, judge, n)
    return scores
