"""What every visualisation returns, and the small helpers they share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from kgan_core.render import labelled_png_bytes
from kgan_core.visualise.errors import OptionError, VisualisationError


@dataclass
class Visualisation:
    """One rendered visualisation: the labelled picture and the numbers behind it."""

    what: str
    member: int | None
    seed: int
    title: str
    image: Image.Image
    numbers: dict[str, Any] = field(default_factory=dict)
    # Wall-clock seconds, kept apart from the numbers so those stay identical for a seed.
    timings: dict[str, float] = field(default_factory=dict)
    # The images the picture shows, model range, (rows, columns, C, H, W): written beside the
    # PNG as .npy so a claim can be checked without parsing the grid. None for pictures that
    # are not made of images (matrices, curves, scatter plots): their numbers are the JSON.
    images: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images is None:
            # Grids rendered by labelled_grid carry the tensor they were drawn from.
            self.images = self.image.info.get("kgan_images")
        if self.images is not None:
            self.images = self.images.detach().float().cpu()

    def npy(self) -> bytes | None:
        """The images as a NumPy .npy file (float32, model range), or None."""
        if self.images is None:
            return None
        import io

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, self.images.numpy().astype(np.float32), allow_pickle=False)
        return buf.getvalue()

    def png(self) -> bytes:
        return labelled_png_bytes(self.image)

    def json(self) -> str:
        return json.dumps({"what": self.what, "member": self.member, "seed": self.seed, "title": self.title,
                           "numbers": self.numbers, "timings": self.timings}, indent=2, allow_nan=False)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write FILE.png, FILE.json beside it and, for pictures of images, FILE.npy. All are
        rendered before any is written, and each is written atomically, so a failure leaves
        none behind."""
        from kgan_core.checkpoint import atomic_write_bytes

        path = Path(path)
        if path.suffix.lower() != ".png":
            raise OptionError(f"the output file must end in .png (the numbers go beside it as .json), "
                              f"got {path.name!r}")
        png, text, array = self.png(), self.json(), self.npy()
        json_path, npy_path = path.with_suffix(".json"), path.with_suffix(".npy")
        written = []
        try:
            for target, data in ((path, png), (json_path, text.encode()), (npy_path, array)):
                if data is not None:
                    atomic_write_bytes(target, data)
                    written.append(target)
            if array is None:
                npy_path.unlink(missing_ok=True)  # an earlier picture's images would mislead
        except BaseException:
            for target in written:
                target.unlink(missing_ok=True)
            raise
        return path, json_path


def title_for(run, what: str, member: int | None, seed: int, detail: str = "") -> str:
    who = f"member {member} of {run.k}" if member is not None else f"all {run.k} members"
    extra = f" · {detail}" if detail else ""
    return f"{what} · {who} · seed {seed} · step {run.step}{extra}"


def members_of(run, member: int | None) -> list[int]:
    return list(range(run.k)) if member is None else [run.check_member(member)]


def require_images(run, what: str) -> None:
    if run.dataset_kind != "images":
        raise VisualisationError(f"{what} shows images, and this run models {run.item_shape[0]}-D points; "
                                 "for point runs use samples, cross-member or training-curves")


def require_member(member: int | None, what: str, k: int) -> int:
    if member is None:
        raise OptionError(f"{what} shows one member at a time: pass a member (0 to {k - 1})")
    return member


def bounded_int(name: str, value: Any, lo: int, hi: int) -> int:
    # NaN and infinities are no whole numbers (int() of them raises a message about conversion).
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
            or value in (float("inf"), float("-inf")) or int(value) != value:
        raise OptionError(f"{name} must be a whole number, got {value!r}")
    if not lo <= int(value) <= hi:
        raise OptionError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def bounded_float(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError(f"{name} must be a number, got {value!r}")
    if not lo <= float(value) <= hi:
        raise OptionError(f"{name} must be between {lo} and {hi}, got {value}")
    return float(value)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def member_generator(run, member: int):
    return run.member(member).generator.requires_grad_(False)


def generate(generator, z: torch.Tensor) -> torch.Tensor:
    """Images of a k=1 generator for z of shape (..., latent): (..., C, H, W)."""
    lead = z.shape[:-1]
    with torch.no_grad():
        out = torch.cat([generator(chunk[None])[0] for chunk in z.reshape(-1, z.shape[-1]).split(1024)])
    return out.reshape(*lead, *out.shape[1:])


def rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel difference per image, model range: (..., C, H, W) -> (...)."""
    return (a - b).pow(2).flatten(-3).mean(-1).sqrt()


def change_per_unit(images: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(..., S, C, H, W) images at latent values (S,) along one direction -> (...) mean RMS change
    between neighbouring images per unit of latent value."""
    steps = (values[1:] - values[:-1]).abs().clamp_min(1e-12)
    return (rms(images[..., 1:, :, :, :], images[..., :-1, :, :, :]) / steps).mean(-1)


def tile_items(run, member: int) -> torch.Tensor:
    """The real items of member's tile in the model range (every item for assignment='none')."""
    data = run.dataset
    if run.config.assignment == "none":
        rows = torch.arange(data.n)
    else:
        rows = torch.nonzero(run.assignment.cpu() == member).flatten()
    return data.to_model(data.x[rows]).to(run.device)


def rounded(values, digits: int = 5):
    """Numbers for the JSON sibling, to ``digits`` significant digits (not decimal places: a
    change of 0.0006 must keep its precision, or ratios of rounded numbers drift)."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if isinstance(values, list):
        return [rounded(v, digits) for v in values]
    if isinstance(values, dict):
        return {k: rounded(v, digits) for k, v in values.items()}
    if isinstance(values, float):
        return float(f"{values:.{digits}g}")
    return values
