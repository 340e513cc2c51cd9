"""Per-column transforms of a table's continuous columns, learned on the training rows: skewed
and heavy-tailed columns are made closer to Gaussian before the model sees them, inverted on
sample, and their log-Jacobian enters the likelihood.

The transform is Yeo–Johnson's power transform (Yeo & Johnson 2000) of the column standardised
by its training mean m and standard deviation s, u = (x − m)/s:

    ψ_λ(u) = ((1 + u)^λ − 1)/λ                 u ≥ 0   (log(1 + u) at λ = 0)
    ψ_λ(u) = −((1 − u)^(2−λ) − 1)/(2 − λ)      u < 0   (−log(1 − u) at λ = 2)
    log dψ/dx = (λ − 1)·sign(u)·log(1 + |u|) − log s

λ maximises the Gaussian profile likelihood of ψ_λ(u) on the training rows,
−n/2·log var ψ_λ(u) + (λ − 1)·Σ sign(u)·log(1 + |u|) (Box & Cox 1964's criterion with the
Jacobian), over λ ∈ [0, 2]: on that range ψ_λ maps the whole line onto the whole line, so every
sample the model draws has an inverse and every held-out value, however far out, a finite
log-Jacobian (outside it ψ_λ is bounded on one side and samples beyond the bound have no preimage).
Standardising first puts the bend of ψ on the bulk of the data whatever the column's units
(on raw values in [0.001, 0.03] no λ in range bends anything).  λ = 1 is the identity.

Only clearly skewed columns are transformed (|sample skewness| ≥ ``MIN_SKEW`` = 1 on the
training rows): transforming every column cost held-out likelihood on three of four tables.

Why not the quantile-to-Gaussian map (TabDDPM): its derivative is the empirical density of the
training rows between neighbouring quantiles, so the held-out likelihood would carry a
histogram's noise and give zero density beyond the training range; ψ_λ is smooth with one
parameter.  The choice and its measurement: ``benchmarks/results/skew.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

__all__ = ["LAMBDA_RANGE", "MIN_SKEW", "TRANSFORMS", "YeoJohnson"]

TRANSFORMS = ("yeo-johnson", "none")
MIN_SKEW = 1.0  # columns whose |sample skewness| is below this keep no transform
LAMBDA_RANGE = (0.0, 2.0)  # ψ_λ is a bijection of the real line for λ in this range
_NEAR = 1e-6  # |λ| or |2 − λ| below this: the logarithmic limit


def _psi(u: Tensor, lam: float) -> Tensor:
    pos = u >= 0
    up, un = u.clamp(min=0), u.clamp(max=0)
    a = torch.log1p(up) if abs(lam) < _NEAR else torch.expm1(lam * torch.log1p(up)) / lam
    b = 2.0 - lam
    c = -torch.log1p(-un) if abs(b) < _NEAR else -torch.expm1(b * torch.log1p(-un)) / b
    return torch.where(pos, a, c)


def _psi_inverse(y: Tensor, lam: float) -> Tensor:
    pos = y >= 0
    yp, yn = y.clamp(min=0), y.clamp(max=0)
    a = torch.expm1(yp) if abs(lam) < _NEAR else torch.expm1(torch.log1p(lam * yp) / lam)
    b = 2.0 - lam
    c = -torch.expm1(-yn) if abs(b) < _NEAR else -torch.expm1(torch.log1p(-b * yn) / b)
    return torch.where(pos, a, c)


@dataclass(frozen=True)
class YeoJohnson:
    """y = ψ_λ((x − shift)/scale) (module doc); float64 inside, dtype and device follow x."""

    shift: float
    scale: float
    lam: float
    name: str = "yeo-johnson"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shift) and self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"Yeo–Johnson needs a finite shift and scale > 0, got {self}")
        lo, hi = LAMBDA_RANGE
        if not lo <= self.lam <= hi:
            raise ValueError(f"Yeo–Johnson λ must lie in [{lo}, {hi}], got {self.lam}")

    @classmethod
    def fit(cls, x: np.ndarray | Tensor) -> YeoJohnson:
        """Standardise by the values' mean and standard deviation, then λ by the profile
        likelihood on [0, 2] (bounded Brent search, deterministic).  NaN values are ignored; a
        constant column, and one whose sample skewness is below ``MIN_SKEW`` in absolute value
        (a clearly skewed column only: ``benchmarks/results/skew.md``), gets the identity λ = 1."""
        v = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size < 2 or not float(v.std()) > 0:
            return cls(float(v.mean()) if v.size else 0.0, 1.0, 1.0)
        m, s = float(v.mean()), float(v.std())
        if abs(float((((v - m) / s) ** 3).mean())) < MIN_SKEW:
            return cls(m, s, 1.0)
        u = torch.from_numpy((v - m) / s)
        log_dpsi = (torch.sign(u) * torch.log1p(u.abs())).sum().item()

        def negative_profile(lam: float) -> float:
            var = float(_psi(u, lam).var(correction=0))
            return 0.5 * u.numel() * math.log(max(var, 1e-300)) - (lam - 1.0) * log_dpsi

        best = minimize_scalar(negative_profile, bounds=LAMBDA_RANGE, method="bounded",
                               options={"xatol": 1e-4})  # fmt: skip
        lam = float(best.x)
        if negative_profile(1.0) <= best.fun:  # the identity is as good: keep the data as it is
            lam = 1.0
        return cls(m, s, lam)

    def forward(self, x: Tensor) -> Tensor:
        """y = ψ_λ((x − shift)/scale)."""
        u = (x.double() - self.shift) / self.scale
        return _psi(u, self.lam).to(x.dtype)

    def inverse(self, y: Tensor) -> Tensor:
        """x = shift + scale·ψ_λ⁻¹(y) (finite for every finite y: λ ∈ [0, 2])."""
        return (self.shift + self.scale * _psi_inverse(y.double(), self.lam)).to(y.dtype)

    def log_derivative(self, x: Tensor) -> Tensor:
        """log dy/dx = (λ − 1)·sign(u)·log(1 + |u|) − log scale, float64."""
        u = (x.double() - self.shift) / self.scale
        return (self.lam - 1.0) * torch.sign(u) * torch.log1p(u.abs()) - math.log(self.scale)

    @property
    def identity(self) -> bool:
        return self.lam == 1.0

    def describe(self) -> str:
        if self.identity:
            return "no transform (λ = 1)"
        return f"Yeo–Johnson λ = {self.lam:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> YeoJohnson:
        d = dict(d)
        if d.get("name", "yeo-johnson") != "yeo-johnson":
            raise ValueError(f"unknown column transform {d.get('name')!r}")
        return cls(float(d["shift"]), float(d["scale"]), float(d["lam"]))
