"""The kinds of a table's columns — continuous, discrete, binary, categorical — and the rule that
decides them (:func:`detect_column`); :mod:`scorematch.data.columns` encodes them (the codec).

Every column gets one kind, decided once from all the table's rows when a run is created (which
values a column can take is a property of the table, like its header; the model and the
standardisation are fitted on the training rows only):

- **categorical**: named by the user (``categorical=``), or holding a cell that is not a number,
  or with at most ``MAX_LEVELS`` (20) distinct numbers that lie on no regular grid.  Its labels
  are sorted (numbers by value, then text) and encoded as the integer codes 0 … K−1.
- **binary**: exactly two distinct numbers a < b: a grid of two points with step b − a.
- **discrete**: one distinct value (a constant, step 1), or values on a regular grid
  origin + k·step (k = 0, 1, …) that are integers (step: the gcd of their differences), or
  number at most ``MAX_LEVELS``, or repeat on average at least ``MIN_REPEATS`` (4) times
  (distinct values ≤ rows / 4).  The step of non-integers is the smallest gap between distinct
  values divided by the first m ∈ 1 … 10 that puts every value within 10⁻³ step of the grid.
- **continuous**: the rest (and every column named in ``continuous=``).

Why: a continuous density fitted to values that repeat exactly has no finite limit — it can
grow without bound on the repeated values — so discrete columns are *dequantised*: each value v
owns the bin [v − step/2, v + step/2), training sees v + step·(u − ½) with fresh u ~ U[0, 1)
every step, and the likelihood is that of the bin, log P(v) ≥ E_u log p(v + step·(u − ½)) +
log step (Theis et al. 2016; the same bound as for 8-bit images), a proper discrete
probability.  Samples are rounded back to the nearest value the column holds (for a column of
more than ``MAX_STORED_VALUES`` distinct values, the nearest grid point in its range), so they
take only the column's values.  Categoricals use the same machinery on their
codes (step 1): one coordinate per column, a proper distribution over the labels, decoded by
rounding.  The price of that encoding is an order among labels that means nothing (the model may
have to separate neighbours that are unrelated), which can cost likelihood but never validity;
a one-hot encoding would need K coordinates and an argmax bound instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "COLUMN_KINDS",
    "FLOAT32_EPS",
    "GRID_TOL",
    "MAX_LEVELS",
    "MAX_STORED_VALUES",
    "MIN_REPEATS",
    "Column",
    "detect_column",
    "number_label",
]

COLUMN_KINDS = ("continuous", "discrete", "binary", "categorical")
MAX_LEVELS = 20  # distinct values of a low-cardinality column
MIN_REPEATS = 4  # a grid column whose values repeat this often on average is discrete
MAX_STORED_VALUES = 1000  # a discrete column's observed values are kept (samples snap to them)
MAX_DIVISOR = 10  # the grid step of non-integers: smallest gap / m, m ≤ this
GRID_TOL = 1e-3  # a value is on the grid when within this many steps of a grid point
FLOAT32_EPS = 2.0**-23


def number_label(v: float) -> str:
    """The label of a number in a categorical column: ``"2"`` for 2.0, ``repr`` otherwise."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def _label_key(label: str) -> tuple[int, float, str]:
    """Sort numbers by value, then text alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@dataclass(frozen=True)
class Column:
    """One column's kind and encoding.  Non-continuous columns are grids in the table's values:
    value = origin + step·k, k = 0 … levels − 1 (categoricals: their codes, origin 0, step 1);
    ``values`` are the observed values (samples snap to them; None above ``MAX_STORED_VALUES``),
    ``labels`` a categorical's labels; ``lo``/``hi`` the observed range; ``reason`` says why."""

    name: str
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    distinct: int = 0
    origin: float = 0.0
    step: float = 1.0
    levels: int = 0
    values: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in COLUMN_KINDS:
            raise ValueError(f"column kind must be one of {COLUMN_KINDS}, got {self.kind!r}")
        if self.kind != "continuous" and not (self.step > 0 and math.isfinite(self.step)):
            raise ValueError(f"column {self.name!r}: grid step must be positive, got {self.step}")

    @property
    def quantised(self) -> bool:
        """True for the kinds that are dequantised (all but continuous)."""
        return self.kind != "continuous"

    def describe(self) -> str:
        """What the column holds, in a few words."""
        if self.kind == "categorical":
            labels = list(self.labels or ())
            shown = ", ".join(labels[:6]) + (", …" if len(labels) > 6 else "")
            return f"{len(labels)} labels: {shown} (codes 0…{len(labels) - 1})"
        if self.kind == "binary":
            return f"two values: {self.lo:.7g}, {self.hi:.7g}"
        if self.kind == "discrete":
            if self.distinct == 1:
                return f"always {self.lo:.7g}"
            return (
                f"{self.lo:.7g} … {self.hi:.7g}, step {self.step:.7g} "
                f"({self.distinct} distinct values)"
            )
        return f"{self.lo:.7g} … {self.hi:.7g} ({self.distinct} distinct values)"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("values", "labels"):
            d[key] = None if d[key] is None else list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Column:
        d = dict(d)
        for key in ("values", "labels"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"not a column description (unknown keys {sorted(unknown)})")
        return cls(**d)


def _grid_step(distinct: np.ndarray) -> float | None:
    """The step of the regular grid through sorted distinct non-integers, or None (see module)."""
    span = float(distinct[-1] - distinct[0])
    gaps = np.diff(distinct)
    gaps = gaps[gaps > 1e-9 * span]  # values equal up to float noise are one value
    if gaps.size == 0:
        return None
    base = float(gaps.min())
    offsets = distinct - distinct[0]
    for m in range(1, MAX_DIVISOR + 1):
        step = base / m
        k = offsets / step
        if np.abs(k - np.round(k)).max() <= GRID_TOL:
            return step
    return None


def detect_column(
    name: str,
    values: np.ndarray,
    text: Sequence[str] | None = None,
    *,
    categorical: bool = False,
    continuous: bool = False,
) -> Column:
    """The kind and encoding of one column from all its cells (the rule of the module doc)."""
    if categorical or text is not None:
        cells = list(text) if text is not None else [number_label(v) for v in values]
        labels = tuple(sorted(set(cells), key=_label_key))
        why = "named categorical" if categorical else "holds text"
        return Column(
            name, "categorical", 0.0, len(labels) - 1.0, len(labels), 0.0, 1.0, len(labels),
            labels=labels, reason=why,
        )  # fmt: skip
    v = np.asarray(values, dtype=np.float64)
    distinct = np.unique(v)
    n = len(distinct)
    lo, hi = float(distinct[0]), float(distinct[-1])
    if continuous:
        return Column(name, "continuous", lo, hi, n, reason="named continuous")
    if n == 1:
        return Column(name, "discrete", lo, hi, 1, lo, 1.0, 1, (lo,), reason="a constant")
    if n == 2:
        return Column(name, "binary", lo, hi, 2, lo, hi - lo, 2, (lo, hi))
    integer = bool(np.all(distinct == np.round(distinct))) and max(abs(lo), abs(hi)) < 2**53
    if integer:
        step: float | None = float(np.gcd.reduce((distinct - lo).astype(np.int64)))
    else:
        step = _grid_step(distinct)
    if step is not None and max(abs(lo), abs(hi)) * FLOAT32_EPS > 0.01 * step:
        step = None  # a grid finer than float32 can hold at these magnitudes
    if step is None:
        if n <= MAX_LEVELS:
            labels = tuple(number_label(x) for x in distinct)
            return Column(
                name, "categorical", 0.0, n - 1.0, n, 0.0, 1.0, n, labels=labels,
                reason=f"{n} distinct numbers on no regular grid",
            )  # fmt: skip
        return Column(name, "continuous", lo, hi, n, reason="no regular grid")
    levels = round((hi - lo) / step) + 1
    if integer:
        why = "integers"
    elif n <= MAX_LEVELS:
        why = f"≤ {MAX_LEVELS} distinct values"
    elif n * MIN_REPEATS <= v.size:
        why = f"values repeat ≥ {MIN_REPEATS} times on average"
    else:
        why = f"grid step {step:.3g}, but {n} distinct values in {v.size} rows"
        return Column(name, "continuous", lo, hi, n, reason=why)
    kept = tuple(float(x) for x in distinct) if n <= MAX_STORED_VALUES else None
    return Column(name, "discrete", lo, hi, n, lo, step, levels, kept, reason=why)
