"""The columns of a table: what kind each is, and how a density model sees it (a column codec).

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
probability.  Samples are rounded back onto the grid (low-cardinality columns onto their own
values), so they take only the column's values.  Categoricals use the same machinery on their
codes (step 1): one coordinate per column, a proper distribution over the labels, decoded by
rounding.  The price of that encoding is an order among labels that means nothing (the model may
have to separate neighbours that are unrelated), which can cost likelihood but never validity;
a one-hot encoding would need K coordinates and an argmax bound instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import rand
from .files import Table, read_table

__all__ = [
    "COLUMN_KINDS",
    "MAX_LEVELS",
    "MIN_REPEATS",
    "Column",
    "ColumnCodec",
    "detect_column",
    "number_label",
    "parse_column_list",
]

COLUMN_KINDS = ("continuous", "discrete", "binary", "categorical")
MAX_LEVELS = 20  # distinct values of a low-cardinality column
MIN_REPEATS = 4  # a grid column whose values repeat this often on average is discrete
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
    ``values`` are the observed values of a low-cardinality column (samples snap to them),
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
    kept = tuple(float(x) for x in distinct) if n <= MAX_LEVELS else None
    return Column(name, "discrete", lo, hi, n, lo, step, levels, kept, reason=why)


def parse_column_list(spec: str | Iterable[Any] | None) -> tuple[str, ...]:
    """``"a,b,3"`` or ``["a", 3]`` as a tuple of stripped names (numbers are 1-based indices)."""
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = tuple(str(item).strip() for item in items)
    if any(not item for item in out):
        raise ValueError(f"empty column name in {spec!r}; give names or 1-based indices, a,b,3")
    return out


def _resolve(names: Sequence[str], wanted: Sequence[str], option: str) -> set[int]:
    """Column indices of ``wanted``: a name of the header, else a 1-based index."""
    out = set()
    for item in wanted:
        if item in names:
            out.add(list(names).index(item))
        elif item.isdigit() and 1 <= int(item) <= len(names):
            out.add(int(item) - 1)
        else:
            raise ValueError(
                f"{option}: no column {item!r}; the columns are {', '.join(names)} "
                f"(or 1-based indices 1…{len(names)})"
            )
    return out


class ColumnCodec:
    """How a table's columns are encoded for a density model and decoded from its samples.

    The encoded table (:meth:`encode`) holds continuous and discrete columns in data units and
    categoricals as codes.  :meth:`dequantise` spreads discrete values over their bins and
    returns the bins' log-volume; :meth:`round` puts samples back onto the columns' values;
    :meth:`format_rows` writes them as CSV cells (labels for categoricals).
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        if not self.columns:
            raise ValueError("a table needs at least one column")
        q = [c.quantised for c in self.columns]
        self._mask = torch.tensor(q)
        self._origin = torch.tensor([c.origin for c in self.columns], dtype=torch.float64)
        self._step = torch.tensor([c.step for c in self.columns], dtype=torch.float64)
        self._top = torch.tensor([max(c.levels - 1, 0) for c in self.columns], dtype=torch.float64)

    # -- construction and storage
    @classmethod
    def detect(
        cls,
        table: Table,
        *,
        categorical: str | Iterable[Any] | None = None,
        continuous: str | Iterable[Any] | None = None,
    ) -> ColumnCodec:
        """Decide every column's kind from the table (module doc); ``categorical`` /
        ``continuous`` name columns (header names or 1-based indices) whose kind is given."""
        cat = _resolve(table.names, parse_column_list(categorical), "--categorical")
        cont = _resolve(table.names, parse_column_list(continuous), "--continuous")
        both = sorted(cat & cont)
        if both:
            raise ValueError(
                f"column {table.names[both[0]]!r} is named both categorical and continuous"
            )
        for j in sorted(cont):
            if j in table.text:
                raise ValueError(f"--continuous: column {table.names[j]!r} holds text, not numbers")
        return cls(
            [
                detect_column(
                    name,
                    table.values[:, j],
                    table.text.get(j),
                    categorical=j in cat,
                    continuous=j in cont,
                )
                for j, name in enumerate(table.names)
            ]
        )

    @classmethod
    def from_file(cls, path: Any, **options: Any) -> ColumnCodec:
        """:meth:`detect` on the table at ``path``."""
        return cls.detect(read_table(path), **options)

    def to_config(self) -> list[dict[str, Any]]:
        """Plain JSON/YAML: one mapping per column (:meth:`from_config` rebuilds the codec)."""
        return [c.to_dict() for c in self.columns]

    @classmethod
    def from_config(cls, config: Sequence[Mapping[str, Any]]) -> ColumnCodec:
        return cls([Column.from_dict(c) for c in config])

    # -- facts
    def __len__(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def quantised(self) -> bool:
        """True when any column is dequantised (training, likelihood and samples change)."""
        return bool(self._mask.any())

    @property
    def all_quantised(self) -> bool:
        """True when every column is (the likelihood is then a discrete probability)."""
        return bool(self._mask.all())

    def steps(self) -> Tensor:
        """Bin widths, float64 ``(D,)``: the grid step of each quantised column, 0 elsewhere."""
        return torch.where(self._mask, self._step, torch.zeros_like(self._step))

    @property
    def log_bin_volume(self) -> float:
        """Σ log step over the quantised columns: log P(bin) ≈ log p(x) + this for a smooth
        density p in data units (add it to a continuous baseline's log-density to compare)."""
        return float(self._step[self._mask].log().sum())

    def describe(self) -> list[tuple[str, str, str, str]]:
        """Rows (index, name, kind, what it holds — and why) for printing."""
        return [
            (str(j + 1), c.name, c.kind, c.describe() + (f" — {c.reason}" if c.reason else ""))
            for j, c in enumerate(self.columns)
        ]

    # -- the maps
    def encode(self, table: Table) -> Tensor:
        """The table as float32 ``(N, D)``: numbers as they are, categoricals as codes.  A file
        with a header must have the codec's column names; an unknown label is an error."""
        d = table.shape[1]
        where = f"{table.path}: " if table.path is not None else ""
        if d != len(self):
            raise ValueError(f"{where}{d} columns, expected {len(self)} ({', '.join(self.names)})")
        if table.has_header and table.names != self.names:
            raise ValueError(
                f"{where}columns {', '.join(table.names)} do not match the run's "
                f"{', '.join(self.names)}"
            )
        out = np.array(table.values, dtype=np.float64, copy=True)
        for j, c in enumerate(self.columns):
            if c.kind == "categorical":
                cells = table.text.get(j) or [number_label(v) for v in table.values[:, j]]
                code = {label: i for i, label in enumerate(c.labels or ())}
                unknown = sorted({cell for cell in cells if cell not in code})
                if unknown:
                    raise ValueError(
                        f"{where}column {c.name!r}: label(s) {', '.join(map(repr, unknown[:5]))} "
                        f"not among its {len(code)} categories ({', '.join(list(code)[:8])})"
                    )
                out[:, j] = [code[cell] for cell in cells]
            elif j in table.text:
                raise ValueError(f"{where}column {c.name!r} holds text; the run expects numbers")
        return torch.from_numpy(out).float()

    def _check_width(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != len(self):
            raise ValueError(f"expected rows of {len(self)} columns, got shape {tuple(x.shape)}")

    def grid_index(self, x: Tensor) -> Tensor:
        """k = (x − origin)/step of the quantised columns, float64, checked to lie on the grid
        (within 10⁻³ step plus x's float rounding); a one-line ValueError names a column off it."""
        self._check_width(x)
        x64 = x.detach().double()
        origin, step = self._origin.to(x64.device), self._step.to(x64.device)
        k = (x64 - origin) / step
        eps = torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
        tol = GRID_TOL + 2 * eps * x64.abs() / step
        off = (k - k.round()).abs() > tol
        off &= self._mask.to(off.device)
        if bool(off.any()):
            i, j = (int(v) for v in off.nonzero()[0])
            c = self.columns[j]
            raise ValueError(
                f"column {c.name!r} ({c.kind}) takes values {c.origin:.7g} + k·{c.step:.7g}; "
                f"row {i + 1} has {float(x64[i, j]):.7g}"
            )
        return k.round()

    def dequantise(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, float]:
        """(x̃, log-volume): each quantised value moved uniformly within its bin,
        x̃ = origin + step·(k + u − ½), u ~ U[0, 1) from ``generator`` (drawn only when a column
        is quantised), and Σ log step, so that log P(x) ≥ E_u log p(x̃) + log-volume."""
        if not self.quantised:
            return x, 0.0
        k = self.grid_index(x)
        u = rand(x.shape, generator, device=x.device, dtype=torch.float64)
        origin, step = self._origin.to(x.device), self._step.to(x.device)
        spread = origin + step * (k + u - 0.5)
        mask = self._mask.to(x.device)
        out = torch.where(mask, spread, x.double()).to(x.dtype)
        return out, self.log_bin_volume

    def round(self, x: Tensor) -> Tensor:
        """Samples onto the columns' values: quantised columns to the nearest grid point in the
        observed range — for low-cardinality columns the nearest observed value, for
        categoricals the nearest code; continuous columns unchanged.  NaN stays NaN."""
        self._check_width(x)
        if not self.quantised:
            return x
        x64 = x.double()
        origin, step = self._origin.to(x.device), self._step.to(x.device)
        k = ((x64 - origin) / step).round().clamp(min=0)
        k = torch.minimum(k, self._top.to(x.device))
        out = origin + step * k
        for j, c in enumerate(self.columns):
            if c.values is not None and c.kind != "categorical":
                allowed = torch.tensor(c.values, dtype=torch.float64, device=x.device)
                nearest = (x64[:, j, None] - allowed).abs().argmin(1)
                out[:, j] = allowed[nearest]
        out = torch.where(self._mask.to(x.device) & ~x64.isnan(), out, x64)
        return out.to(x.dtype)

    def format_rows(self, x: Tensor | np.ndarray, digits: int = 7) -> list[list[str]]:
        """CSV cells of rows ``x``: continuous values to ``digits`` significant digits,
        grid values of integer grids as integers, categoricals as their labels."""
        arr = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self):
            raise ValueError(f"expected rows of {len(self)} columns, got shape {arr.shape}")
        columns = []
        for j, c in enumerate(self.columns):
            col = arr[:, j]
            if c.kind == "categorical":
                labels = c.labels or ()
                cells = [
                    labels[int(v)] if np.isfinite(v) and 0 <= int(v) < len(labels) else "nan"
                    for v in col
                ]
            elif c.quantised and float(c.origin).is_integer() and float(c.step).is_integer():
                cells = [f"{v:.0f}" if np.isfinite(v) else str(v) for v in col]
            else:
                cells = [f"{v:.{digits}g}" for v in col]
            columns.append(cells)
        return [list(row) for row in zip(*columns)]

    def __repr__(self) -> str:
        kinds = [c.kind for c in self.columns]
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in COLUMN_KINDS if k in kinds)
        return f"ColumnCodec({len(self)} columns: {counts})"
