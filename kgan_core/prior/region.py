"""The region of code space a prior's codes may take (DGN-AM's code constraint).

Nguyen et al. (2016) keep the optimised code inside per-dimension bounds read off the real
codes' distribution, so the decoder is only asked about codes like those it was trained on.
Here the bounds are per-dimension quantiles of the real codes, and, because a code can have
every dimension inside its bounds and still be far from all real codes (a corner of the box),
the code's standardised length is also bounded by what real codes reach. Codes are handled
standardised, u = (h − mean) / std, so one step size suits every dimension.

Nothing pulls a code towards the mean: the mean code of an autoencoder decodes to a blur
(for the old, non-variational prior, to a nearly black image), and activation maximisation
that decays towards it ends there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

QUANTILE = 0.005  # per-dimension bounds: the 0.5 % and 99.5 % quantiles of the real codes
LENGTH_QUANTILE = 0.99  # standardised code length: at most what 99 % of real codes have


def _quantiles(codes: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column q and 1 − q quantiles (by sorting: torch.quantile refuses large inputs)."""
    ordered = codes.sort(0).values
    last = codes.shape[0] - 1
    return ordered[round(q * last)], ordered[round((1 - q) * last)]


@dataclass
class CodeRegion:
    mean: torch.Tensor  # (code_dim,)
    std: torch.Tensor   # (code_dim,)
    lo: torch.Tensor    # (code_dim,) per-dimension lower bound
    hi: torch.Tensor    # (code_dim,) upper bound
    radius: float       # bound on the standardised code's Euclidean length

    @classmethod
    def of(cls, codes: torch.Tensor) -> CodeRegion:
        """The region spanned by real codes (N, code_dim)."""
        codes = codes.detach().double()
        mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)
        lo, hi = _quantiles(codes, QUANTILE)
        lengths = ((codes - mean) / std).clamp((lo - mean) / std, (hi - mean) / std).norm(dim=1)
        radius = float(_quantiles(lengths[:, None], 1 - LENGTH_QUANTILE)[1])
        return cls(*(t.float() for t in (mean, std, lo, hi)), radius)

    @property
    def code_dim(self) -> int:
        return self.mean.shape[0]

    def standardise(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.mean) / self.std

    def code(self, u: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * u

    def project_standardised(self, u: torch.Tensor) -> torch.Tensor:
        """The nearest point of the region (first the box, then the length bound) to u."""
        u = u.clamp((self.lo - self.mean) / self.std, (self.hi - self.mean) / self.std)
        length = u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return u * (self.radius / length).clamp(max=1.0)

    def contains(self, codes: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
        """(N,) whether each code lies in the region."""
        u = self.standardise(codes)
        in_box = ((codes >= self.lo - tol * self.std) & (codes <= self.hi + tol * self.std)).all(-1)
        return in_box & (u.norm(dim=-1) <= self.radius * (1 + tol))

    def sample_standardised(self, lead: tuple[int, ...], generator: torch.Generator, sd: float = 1.0) -> torch.Tensor:
        """Random standardised codes: each dimension normal with the real codes' spread, moved into the region."""
        u = sd * torch.randn(*lead, self.code_dim, generator=generator)
        return self.project_standardised(u.to(self.mean.device))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, code_dim) random codes in the region."""
        return self.code(self.sample_standardised((n,), generator))

    def to(self, device: torch.device | str) -> CodeRegion:
        return CodeRegion(*(t.to(device) for t in (self.mean, self.std, self.lo, self.hi)), self.radius)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"code_mean": self.mean, "code_std": self.std, "code_lo": self.lo, "code_hi": self.hi,
                "code_radius": torch.tensor([self.radius])}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> CodeRegion:
        return cls(tensors["code_mean"], tensors["code_std"], tensors["code_lo"], tensors["code_hi"],
                   float(tensors["code_radius"][0]))
