"""Invertible data standardisation and a reproducible train/test split.

Models are trained on z = T(x) with an affine, element-wise T.  Three kinds:

- ``"vector"`` (tables): z = (x − μ) / s with the per-feature mean μ and standard deviation s of
  the training data (population std, computed in float64; a constant feature gets s = 1).
- ``"image"`` (pixels in [0, 1]): the fixed map z = 2x − 1 onto [−1, 1], the centring used by
  DDPM and score-SDE (Ho et al. 2020; Song et al. 2021).  It does not depend on the data.
- ``"identity"``: z = x.

Because T is affine and element-wise, densities convert exactly:
log p_X(x) = log p_Z(T(x)) + log|det ∂T/∂x|, with log|det ∂T/∂x| = −Σ log s (vector) or
d·log 2 (image, d values per sample) — see :meth:`Standardizer.log_abs_det`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

KINDS = ("vector", "image", "identity")
_STD_FLOOR = 1e-8


class Standardizer:
    """Element-wise affine map z = (x − shift) / scale fitted on training data (see module doc).

    Build it with :meth:`fit`; store it with :meth:`to_dict` / :meth:`from_dict` (plain JSON).
    """

    def __init__(
        self,
        kind: str,
        event_shape: tuple[int, ...],
        mean: Tensor | None = None,
        std: Tensor | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"Standardizer kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.event_shape = tuple(int(s) for s in event_shape)
        if kind == "vector":
            if mean is None or std is None:
                raise ValueError("a 'vector' Standardizer needs mean and std")
            mean = torch.as_tensor(mean, dtype=torch.float64).reshape(self.event_shape)
            std = torch.as_tensor(std, dtype=torch.float64).reshape(self.event_shape)
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
                raise ValueError("Standardizer mean must be finite and std finite and positive")
            self.mean, self.std = mean, std
        else:
            self.mean = self.std = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def fit(cls, x: Tensor, kind: str = "auto", *, missing: bool = False) -> Standardizer:
        """Fit on training data x of shape ``(N, *event)``; ``missing``: NaN cells are gaps
        (vectors: each column's mean and sd over its observed cells), else refused.

        ``kind="auto"`` picks ``"image"`` for 4-D data ``(N, C, H, W)`` and ``"vector"``
        otherwise.  Image data must already lie in [0, 1] (loaders return it so).
        """
        if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Standardizer.fit expects data of shape (N, *event), got {shape}")
        if kind == "auto":
            kind = "image" if x.ndim == 4 else "vector"
        if kind not in KINDS:
            raise ValueError(f"kind must be 'auto' or one of {KINDS}, got {kind!r}")
        event = tuple(x.shape[1:])
        x64 = x.detach().to(torch.float64)
        gaps = kind == "vector" and missing
        if not (torch.isfinite(x64) | (x64.isnan() if gaps else False)).all():
            raise ValueError("cannot fit a Standardizer on data with NaN or infinite values")
        if kind == "image":
            lo, hi = float(x64.min()), float(x64.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(
                    f"image data must lie in [0, 1] for the 'image' standardisation, got range "
                    f"[{lo:.4g}, {hi:.4g}]; rescale it or use kind='vector'"
                )
            return cls("image", event)
        if kind == "identity":
            return cls("identity", event)
        # With gaps (NaN cells, ``missing=True``): each column's mean and sd over its observed
        # cells; a column with fewer than one observed cell keeps mean 0, sd 1.
        if gaps and bool(x64.isnan().any()):
            seen = (~x64.isnan()).sum(0)
            mean = x64.nan_to_num(0.0).sum(0) / seen.clamp(min=1)
            std = ((x64 - mean).nan_to_num(0.0).square().sum(0) / seen.clamp(min=1)).sqrt()
        else:
            mean = x64.mean(0)
            std = x64.std(0, correction=0)
        std = torch.where(std > _STD_FLOOR, std, torch.ones_like(std))
        return cls("vector", event, mean, std)

    # -- the map -----------------------------------------------------------------------------
    def _check(self, x: Tensor, name: str) -> None:
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.event_shape:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{name} must have shape (batch, {', '.join(map(str, self.event_shape))}), "
                f"got {shape}"
            )

    def transform(self, x: Tensor) -> Tensor:
        """z = T(x): (x − μ)/s, 2x − 1 or x; dtype and device follow x."""
        self._check(x, "x")
        if self.kind == "vector":
            return (x - self.mean.to(x)) / self.std.to(x)
        if self.kind == "image":
            return 2 * x - 1
        return x

    def inverse(self, z: Tensor) -> Tensor:
        """x = T⁻¹(z): z·s + μ, (z + 1)/2 or z."""
        self._check(z, "z")
        if self.kind == "vector":
            return z * self.std.to(z) + self.mean.to(z)
        if self.kind == "image":
            return (z + 1) / 2
        return z

    __call__ = transform

    def affine(self) -> tuple[Tensor, Tensor]:
        """The map as T(x) = a·x + b element-wise, ``(a, b)`` in float64: (1/s, −μ/s) shaped like
        an event (vector), or 0-d tensors (2, −1) (image) and (1, 0) (identity).

        Code that moves data through T by other routes (e.g. dequantised grey levels in
        :meth:`scorematch.runs.Run.log_likelihood`) takes the map from here.
        """
        if self.kind == "vector":
            return 1.0 / self.std, -self.mean / self.std
        if self.kind == "image":
            return torch.tensor(2.0, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64)
        return torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)

    def log_abs_det(self, event_shape: tuple[int, ...] | None = None) -> float:
        """log|det ∂T/∂x| for one sample: −Σ log s (vector), d·log 2 (image), 0 (identity).

        Convert a model density on standardised data into data units with
        log p_X(x) = log p_Z(T(x)) + log_abs_det().  ``event_shape`` defaults to the fitted one;
        the image and identity maps accept any event shape.
        """
        shape = self.event_shape if event_shape is None else tuple(int(s) for s in event_shape)
        if self.kind == "vector":
            if shape != self.event_shape:
                raise ValueError(
                    f"this Standardizer was fitted on events of shape {self.event_shape}, "
                    f"got {shape}"
                )
            return float(-self.std.log().sum())
        if self.kind == "image":
            return math.prod(shape) * math.log(2.0)
        return 0.0

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (floats as Python lists, float64 precision)."""
        out: dict[str, Any] = {"kind": self.kind, "event_shape": list(self.event_shape)}
        if self.kind == "vector":
            out["mean"] = self.mean.flatten().tolist()
            out["std"] = self.std.flatten().tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Inverse of :meth:`to_dict`."""
        try:
            kind, shape = d["kind"], tuple(d["event_shape"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a Standardizer description: {d!r}") from err
        if kind == "vector":
            n = math.prod(shape)
            if len(d.get("mean", ())) != n or len(d.get("std", ())) != n:
                raise ValueError(f"Standardizer description needs {n} means and stds")
            # float64, as fitted: a float32 round trip would move z = (x − μ)/s by ~1e-7
            mean = torch.tensor(d["mean"], dtype=torch.float64)
            return cls(kind, shape, mean, torch.tensor(d["std"], dtype=torch.float64))
        return cls(kind, shape)

    def __repr__(self) -> str:
        return f"Standardizer(kind={self.kind!r}, event_shape={self.event_shape})"


def train_test_split(x: Tensor, test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split the rows of x at random into (train, test); the same seed gives the same split.

    ``round(N · test_fraction)`` rows (at least 1, at most N − 1) go to the test set; the order is
    a ``torch.randperm`` drawn from a generator seeded with ``seed``.
    """
    if not isinstance(x, Tensor) or x.ndim < 1:
        raise ValueError("x must be a tensor with the samples along the first dimension")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = min(max(round(n * float(test_fraction)), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    perm = perm.to(x.device)
    return x[perm[n_test:]], x[perm[:n_test]]
