"""What is known about each built-in dataset before loading it, in one table that the loaders'
callers (the CLI's help, the service's checks at submission, its dataset listing and its
workers) all read: its name, whether it holds 2-D points or images, an item's shape before any
resizing, and which files a server must have for it (None when it is generated or shipped
with the software). The loaders themselves are kgan_core.data.builtin's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    kind: str  # "points" | "images"
    item_shape: tuple[int, ...]  # (2,) for points; (channels, height, width) before image_size/channels
    files: str | None  # where its files go under the data root ({root}); None: generated or shipped

    @property
    def points(self) -> bool:
        return self.kind == "points"


BUILTINS: dict[str, BuiltinDataset] = {d.name: d for d in (
    BuiltinDataset("ring8", "points", (2,), None),
    BuiltinDataset("grid25", "points", (2,), None),
    BuiltinDataset("mnist", "images", (1, 28, 28), "MNIST's IDX files in {root}/mnist"),
    # Generated from MNIST's digits, which ship with the software.
    BuiltinDataset("stacked-mnist", "images", (3, 28, 28), None),
    BuiltinDataset("fashion-mnist", "images", (1, 28, 28), "Fashion-MNIST's IDX files in {root}/fashion-mnist"),
    BuiltinDataset("lfw", "images", (3, 250, 250), "the deep-funnelled LFW in {root}/lfw-py"),
    BuiltinDataset("lfw-subset", "images", (1, 25, 25), None),
)}
BUILTIN_NAMES: tuple[str, ...] = tuple(BUILTINS)


def builtin_root(configured: Path | None) -> Path:
    """Where built-ins that need files are looked for: the configured folder, else the default."""
    from kgan_core.data import DEFAULT_ROOT

    return configured or DEFAULT_ROOT
