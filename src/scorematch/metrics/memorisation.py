"""Does a generative model copy its training rows?  The distance-to-closest-record figures.

For each generated sample s, d_T(s) is the distance to its closest training row; for each
held-out row h — a fresh draw from the data that the model never saw — d_T(h) is the same
distance.  A model that generalises draws samples that are as far from the training rows as new
data are, so the **ratio of medians** median_s d_T(s) / median_h d_T(h) is ≈ 1; a model that
copies (or nearly copies) training rows gives a ratio ≪ 1.  Both medians are measured against
the *same* training set, so its size cancels: comparing d_T(s) with the distance to the closest
held-out row instead would read a smaller reference set (an 80/20 split: a quarter of the rows)
as "farther", and subsampling the training rows to the held-out size would hide most copies
(their source row would usually be left out).

**Near-copies**: a sample is one when d_T(s) ≤ τ, with τ a quarter of the median distance from a
training row to its nearest *other* training row — a scale set by the data's own spacing.  The
same fraction for the held-out rows is what fresh draws give (exact duplicates in a discrete
table, say); copying shows as a fraction well above it (≈ 1 when every sample is a copy).

Distances are Euclidean in standardised units (each column divided by the training rows' standard
deviation) unless ``standardize=False``; they are computed in row blocks (at most ``BLOCK``
entries at a time), so memory stays bounded whatever the sizes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .._checks import randint
from ._common import flatten_samples

__all__ = ["COPY_EXCESS", "RATIO_WARN", "Memorisation", "memorisation", "nearest_distances"]

BLOCK = 1 << 22  # pairwise distances held at once (32 MB in float64)
RATIO_WARN = 0.8  # a ratio below this (and below 1 by 2 standard errors) looks like copying
COPY_EXCESS = 0.1  # near-copies this much more frequent than among held-out rows look like copying
THRESHOLD_FRACTION = 0.25  # τ = this × median nearest-neighbour distance among training rows
EXACT_MAX_DIM = 64  # exact pairwise differences up to this many features
MAX_THRESHOLD_ROWS = (
    2000  # training rows whose neighbour distance sets τ (an evenly strided subset)
)


@dataclass(frozen=True)
class Memorisation:
    """The memorisation figures (module doc).  ``ratio_stderr`` is a bootstrap standard error
    (over samples and held-out rows); ``looks_like_copying`` and :meth:`warning` apply the
    thresholds ``RATIO_WARN`` and ``COPY_EXCESS``."""

    sample_to_train: float  # median over samples of the distance to the closest training row
    heldout_to_train: float  # the same median for held-out rows
    ratio: float  # sample_to_train / heldout_to_train: ≈ 1 generalising, ≪ 1 copying
    ratio_stderr: float
    copy_threshold: float  # τ
    copy_fraction: float  # samples within τ of a training row
    heldout_copy_fraction: float  # held-out rows within τ of a training row
    n_samples: int
    n_train: int
    n_heldout: int

    @property
    def looks_like_copying(self) -> bool:
        low_ratio = self.ratio < RATIO_WARN and self.ratio + 2 * self.ratio_stderr < 1.0
        return low_ratio or self.copy_fraction > self.heldout_copy_fraction + COPY_EXCESS

    def warning(self) -> str | None:
        """One sentence when the figures look like copying, else None."""
        if not self.looks_like_copying:
            return None
        return (
            f"samples look like copies of training rows: their median distance to the closest "
            f"training row is {self.ratio:.2f}× that of held-out rows, and "
            f"{100 * self.copy_fraction:.0f}% of them are near-copies (held-out rows: "
            f"{100 * self.heldout_copy_fraction:.0f}%); the model may be memorising its training "
            "rows (fewer steps or a smaller network help)"
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def nearest_distances(a: Tensor, b: Tensor, *, exclude: Tensor | None = None) -> Tensor:
    """Distance from each row of ``a`` (N, D) to its closest row of ``b`` (M, D), computed in
    blocks of at most ``BLOCK`` pairs; ``exclude`` (N,) gives for each row of a one row of b to
    leave out (itself, when a's rows are taken from b).  Up to ``EXACT_MAX_DIM`` features the
    differences are exact (no matrix-product shortcut: a copied row is at distance 0); above it
    (images) the faster matrix product, accurate to ~1e-8 of the rows' norms in float64."""
    mode = (
        "donot_use_mm_for_euclid_dist" if a.shape[1] <= EXACT_MAX_DIM else "use_mm_for_euclid_dist"
    )
    rows = max(1, BLOCK // max(b.shape[0], 1))
    out = []
    for start in range(0, a.shape[0], rows):
        block = torch.cdist(a[start : start + rows], b, compute_mode=mode)
        if exclude is not None:
            idx = torch.arange(block.shape[0], device=block.device)
            block[idx, exclude[start : start + rows].to(block.device)] = math.inf
        out.append(block.min(1).values)
    return torch.cat(out)


def _bootstrap_ratio_stderr(
    ds: Tensor, dh: Tensor, generator: torch.Generator | None, reps: int = 200
) -> float:
    """Standard error of median(ds)/median(dh) by resampling both sets with replacement."""
    i = randint(ds.shape[0], (reps, ds.shape[0]), generator, device=ds.device)
    j = randint(dh.shape[0], (reps, dh.shape[0]), generator, device=dh.device)
    num = ds[i].median(1).values
    den = dh[j].median(1).values.clamp_min(torch.finfo(dh.dtype).tiny)
    return float((num / den).std())


def memorisation(
    samples: Tensor,
    train: Tensor,
    heldout: Tensor,
    *,
    standardize: bool = True,
    generator: torch.Generator | None = None,
) -> Memorisation:
    """The memorisation figures of ``samples`` against the ``train`` rows a model was fitted on
    and ``heldout`` rows it never saw (module doc).  All are ``(N, *event)`` with the same event
    size; computed in float64.  ``generator`` drives the bootstrap of ``ratio_stderr``.

    Returns a :class:`Memorisation`; e.g. samples that are copies of training rows give ratio 0
    and copy fraction 1, fresh draws from the data's law a ratio ≈ 1."""
    s = flatten_samples(samples, "samples").double()
    t = flatten_samples(train, "train").double()
    h = flatten_samples(heldout, "heldout").double()
    if not (s.shape[1] == t.shape[1] == h.shape[1]):
        raise ValueError(
            f"samples, train and heldout need the same number of features, got "
            f"{s.shape[1]}, {t.shape[1]} and {h.shape[1]}"
        )
    if t.shape[0] < 2:
        raise ValueError(f"need at least 2 training rows, got {t.shape[0]}")
    if standardize:
        std = t.std(0, correction=0)
        scale = torch.where(std > 1e-12, std, torch.ones_like(std))
        mean = t.mean(0)
        s, t, h = ((v - mean) / scale for v in (s, t, h))
    ds = nearest_distances(s, t)
    dh = nearest_distances(h, t)
    # τ: nearest other training row of an evenly strided subset, searched in the whole set.
    rows = torch.arange(0, t.shape[0], max(1, t.shape[0] // MAX_THRESHOLD_ROWS), device=t.device)
    own = nearest_distances(t[rows], t, exclude=rows)
    tau = THRESHOLD_FRACTION * float(own.median())
    med_s, med_h = float(ds.median()), float(dh.median())
    ratio = med_s / med_h if med_h > 0 else (1.0 if med_s == 0 else math.inf)
    return Memorisation(
        sample_to_train=med_s,
        heldout_to_train=med_h,
        ratio=ratio,
        ratio_stderr=_bootstrap_ratio_stderr(ds, dh, generator) if med_h > 0 else math.nan,
        copy_threshold=tau,
        copy_fraction=float((ds <= tau).double().mean()),
        heldout_copy_fraction=float((dh <= tau).double().mean()),
        n_samples=int(s.shape[0]),
        n_train=int(t.shape[0]),
        n_heldout=int(h.shape[0]),
    )
