"""The judge: a network trained on the data alone, never on anything it judges.

Labelled image data (MNIST, Fashion-MNIST, a labelled folder) gets a small CNN classifier
trained with a held-out split; its features are the penultimate layer and its held-out
accuracy is recorded. Unlabelled data (or labels that cannot train a classifier, such as
LFW's 5,749 people) gets a convolutional autoencoder: it needs no labels, trains in
seconds, shares nothing with the generators, critics or the learned prior, and its code
must keep whatever tells one image of the data from another (or the reconstruction
fails), which is what Fréchet distance and precision/recall compare. Its held-out
reconstruction error is recorded.

Trained judges are cached by the dataset's fingerprint (its pixels and labels), so every
run, benchmark and visualisation on the same data is judged by the same network.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import nn
from torch.nn import functional as F

from kgan_core.checkpoint import atomic_write_bytes
from kgan_core.data import Dataset
from kgan_core.judge.networks import JUDGE_SIZE, Autoencoder, Classifier, fit_input

# Bump when training or architecture change: an old cached judge is then retrained, not reused.
JUDGE_VERSION = 1
HELD_OUT_SHARE = 0.2
# Enough items for the judge to learn the data; more only costs CPU time (LFW has 13,233 faces).
MAX_TRAIN_ITEMS = 20_000
# A class needs this many images (median over classes) for a classifier to learn it: LFW's
# people (most have one photo) fall back to the autoencoder.
MIN_ITEMS_PER_CLASS = 20
MAX_CLASSES = 100


class JudgeError(ValueError):
    """The judge cannot do what was asked (point data, class probabilities of unlabelled data)."""


def default_cache_dir() -> Path:
    """``$KGAN_CACHE_DIR/judges``, else ``~/.cache/kgan/judges``."""
    root = os.environ.get("KGAN_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "kgan") / "judges"


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of what the judge learns from: pixels, labels and class names (not the dataset's name)."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": JUDGE_VERSION, "kind": dataset.kind, "shape": list(dataset.x.shape),
                         "classes": list(dataset.classes or ())}).encode())
    h.update(dataset.x.contiguous().cpu().numpy().tobytes())
    if dataset.labels is not None:
        h.update(dataset.labels.cpu().numpy().tobytes())
    return h.hexdigest()


def is_classifiable(dataset: Dataset) -> bool:
    """Whether the labels can train a classifier: 2..MAX_CLASSES classes with enough images each."""
    if dataset.labels is None:
        return False
    counts = torch.bincount(dataset.labels)
    counts = counts[counts > 0]
    return 2 <= len(counts) <= MAX_CLASSES and float(counts.float().median()) >= MIN_ITEMS_PER_CLASS


@dataclass
class Judge:
    """A trained judge network and what is known about how well it judges."""

    network: Classifier | Autoencoder
    channels: int
    class_names: tuple[str, ...] | None
    held_out_accuracy: float | None   # classifier: share of held-out images classified right
    held_out_error: float | None      # autoencoder: held-out mean squared error, model range
    fingerprint: str
    dataset_name: str
    n_train: int
    n_held_out: int
    train_cpu_s: float

    @property
    def labelled(self) -> bool:
        return isinstance(self.network, Classifier)

    @property
    def kind(self) -> str:
        return "classifier" if self.labelled else "autoencoder"

    @property
    def image_size(self) -> int:
        return JUDGE_SIZE

    def describe(self) -> dict:
        """What a table or run.json should say about the judge."""
        return {"kind": self.kind, "dataset": self.dataset_name, "fingerprint": self.fingerprint[:16],
                "held_out_accuracy": self.held_out_accuracy, "held_out_error": self.held_out_error,
                "n_train": self.n_train, "n_held_out": self.n_held_out, "image_size": JUDGE_SIZE}

    def _batches(self, images: torch.Tensor, fn, grad: bool, batch: int = 512) -> torch.Tensor:
        self.network.eval()
        device = next(self.network.parameters()).device
        outs = []
        with torch.set_grad_enabled(grad):
            for start in range(0, images.shape[0], batch):
                chunk = fit_input(images[start:start + batch].to(device), self.channels)
                outs.append(fn(chunk))
        return torch.cat(outs) if outs else torch.empty(0)

    def features(self, images: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1], any size and 1 or 3 channels -> (N, FEATURE_DIM) float."""
        return self._batches(images, self.network.features, grad)

    def predict_proba(self, images: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """(N, n_classes) class probabilities; JudgeError for a judge of unlabelled data."""
        if not self.labelled:
            raise JudgeError(f"the judge of {self.dataset_name!r} is an autoencoder (the data has no usable "
                             "labels): it gives features, not class probabilities")
        return self._batches(images, lambda x: F.softmax(self.network(x), dim=1), grad)

    def to(self, device: torch.device | str) -> Judge:
        self.network.to(device)
        return self

    # persistence ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        meta = {"version": JUDGE_VERSION, "kind": self.kind, "channels": self.channels,
                "class_names": list(self.class_names) if self.class_names is not None else None,
                "held_out_accuracy": self.held_out_accuracy, "held_out_error": self.held_out_error,
                "fingerprint": self.fingerprint, "dataset_name": self.dataset_name, "n_train": self.n_train,
                "n_held_out": self.n_held_out, "train_cpu_s": self.train_cpu_s}
        state = {k: v.detach().contiguous().cpu() for k, v in self.network.state_dict().items()}
        return save(state, metadata={"judge": json.dumps(meta)})

    @classmethod
    def from_file(cls, path: Path) -> Judge:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = json.loads((f.metadata() or {})["judge"])
        state = load(path.read_bytes())
        if meta["kind"] == "classifier":
            network: Classifier | Autoencoder = Classifier(meta["channels"], len(meta["class_names"]))
        else:
            network = Autoencoder(meta["channels"])
        network.load_state_dict(state)
        network.eval().requires_grad_(False)
        names = tuple(meta["class_names"]) if meta["class_names"] is not None else None
        return cls(network, meta["channels"], names, meta["held_out_accuracy"], meta["held_out_error"],
                   meta["fingerprint"], meta["dataset_name"], meta["n_train"], meta["n_held_out"],
                   meta["train_cpu_s"])


def judge_for(dataset: Dataset, cache_dir: str | os.PathLike | None = None, seed: int = 0, *,
              train: bool = True) -> Judge | None:
    """The judge of ``dataset``: loaded from the cache, else trained (and cached).

    cache_dir: default ``default_cache_dir()``. seed: the judge's own training seed (part of
    the cache key). train=False returns None instead of training a missing judge, for
    callers that must stay cheap (end-of-training health of a tiny run).
    """
    if dataset.kind != "images":
        raise JudgeError(f"{dataset.name!r} is point data: it is judged in data space, not by a judge network")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    fingerprint = dataset_fingerprint(dataset)
    path = folder / f"{fingerprint[:32]}-seed{seed}.safetensors"
    if path.is_file():
        try:
            judge = Judge.from_file(path)
            if judge.fingerprint == fingerprint:
                return judge
        except (OSError, KeyError, ValueError, RuntimeError):
            pass  # a corrupt or foreign file: train again and overwrite it
    if not train:
        return None
    judge = train_judge(dataset, seed=seed, fingerprint=fingerprint)
    atomic_write_bytes(path, judge.to_bytes())
    return judge


# --- training ----------------------------------------------------------------------------


def _split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = max(1, int(round(n * HELD_OUT_SHARE)))
    return order[n_held:][:MAX_TRAIN_ITEMS], order[:n_held][:MAX_TRAIN_ITEMS // 4]


def held_out_rows(n: int, seed: int = 0) -> torch.Tensor:
    """The rows of an n-item dataset that train_judge (with this seed) holds out: judging them
    measures the judge on images it never saw."""
    return _split(n, seed)[1]


def _jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 2 px and scale by ±8 %: the classifier must not hinge on exact
    placement, which generated digits never match."""
    n = x.shape[0]
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.08
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * (2 * 2 / JUDGE_SIZE)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Pixels shifted in from outside are the background (-1), not zeros (mid-grey).
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


def train_judge(dataset: Dataset, *, seed: int = 0, fingerprint: str | None = None,
                updates: int | None = None) -> Judge:
    """Train a classifier (labelled data) or an autoencoder (unlabelled) on the dataset itself."""
    started = time.process_time()
    labelled = is_classifiable(dataset)
    x = fit_input(dataset.to_model(dataset.x), dataset.x.shape[1])
    train_rows, held_rows = _split(dataset.n, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        channels = dataset.x.shape[1]
        if labelled:
            n_classes = len(dataset.classes) if dataset.classes else int(dataset.labels.max()) + 1
            network: Classifier | Autoencoder = Classifier(channels, n_classes)
        else:
            network = Autoencoder(channels)
        # About 8 passes over the data, at least 500 updates for tiny data, at most 3,000 for
        # large: 98.8 % held-out on MNIST's 10,000 digits in about a CPU-minute (1,000 updates).
        batch = 64
        n_updates = updates or max(500, min(3000, 8 * len(train_rows) // batch))
        opt = torch.optim.Adam(network.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=n_updates)
        network.train()
        for _ in range(n_updates):
            rows = train_rows[torch.randint(len(train_rows), (batch,), generator=g)]
            inputs = _jitter(x[rows], g)
            if labelled:
                loss = F.cross_entropy(network(inputs), dataset.labels[rows])
            else:
                loss = F.mse_loss(network(inputs), inputs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        network.eval().requires_grad_(False)
    accuracy, error = _held_out(network, x[held_rows], dataset.labels[held_rows] if labelled else None)
    names = None
    if isinstance(network, Classifier):
        names = dataset.classes or tuple(str(i) for i in range(network.head.out_features))
    return Judge(network, int(dataset.x.shape[1]), names, accuracy, error,
                 fingerprint or dataset_fingerprint(dataset), dataset.name, len(train_rows), len(held_rows),
                 time.process_time() - started)


@torch.no_grad()
def _held_out(network: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[float | None, float | None]:
    outs = torch.cat([network(x[s:s + 512]) for s in range(0, len(x), 512)])
    if labels is not None:
        return float((outs.argmax(1) == labels).float().mean()), None
    return None, float(F.mse_loss(outs, x))
