"""The kinds of a table's columns — continuous, discrete, binary, categorical, or excluded — and
the rule that decides them (:func:`detect_column`); :mod:`scorematch.data.columns` encodes them
(the codec).

Every column gets one kind, decided once from all the table's rows when a run is created (which
values a column can take is a property of the table, like its header; the model, the per-column
transforms and the standardisation are fitted on the training rows only).  Missing cells
(:mod:`scorematch.data.missing`) are left out of every count below.

- **excluded** (an identifier, not modelled): a column with a distinct value in (nearly) every
  row — integers that are all distinct and span at most ``ID_SPAN`` (1.25) times the rows (a row
  number 0 … N−1 or 1 … N, with a few rows removed; never negative), or text with distinct labels in at least ``ID_SHARE``
  (90 %) of at least ``ID_MIN_ROWS`` (5) rows — unless the user keeps it (``keep=``) or it is
  all the table has; and a column whose every cell is missing.  The rows' names are excluded
  whatever their values, when the file marks them (a first column headed ``""`` as R's
  ``write.csv`` and pandas' ``to_csv`` write it, or ``rownames``; ``Table.row_names``) and they
  are distinct in every row: R's row names are often labels like ``231655`` that no span rule
  recognises.
- **categorical**: text, or named by the user (``categorical=``).  A column of numbers with a
  few other cells — at most ``ODD_CELLS`` (3) distinct ones, in at most 5 % of its cells — is a
  column of numbers whose odd cells are missing (a warning names them).  Labels are sorted
  (numbers by value, then text).  Only text is evidence of categories: a handful of distinct
  numbers in a small table is not.
- **binary**: exactly two distinct numbers a < b: a grid of two points with step b − a.
- **discrete**: one distinct value (a constant, step 1); integers (step: the gcd of their
  differences); or non-integers on a regular grid origin + k·step that repeat on average at
  least ``MIN_REPEATS`` (4) times (distinct values ≤ rows / 4).  The step of non-integers is the
  smallest gap between distinct values divided by the first m ∈ 1 … 10 that puts every value
  within 10⁻³ step of the grid.
- **continuous**: the rest (and every column named in ``continuous=``).

A numeric column never refuses a number it has not seen: a discrete column's grid extends past
its observed range, and a value between its grid points is scored as the bin that holds it.

Why dequantise: a continuous density fitted to values that repeat exactly has no finite limit —
it can grow without bound on the repeated values — so discrete columns are *dequantised*: each
value v owns the bin [v − step/2, v + step/2), training sees v + step·(u − ½) with fresh
u ~ U[0, 1) every step, and the likelihood is that of the bin, log P(v) ≥ E_u log p(v + step·(u
− ½)) + log step (Theis et al. 2016; the same bound as for 8-bit images), a proper discrete
probability.  Samples are rounded back to the nearest value the column holds (for a column of
more than ``MAX_STORED_VALUES`` distinct values, the nearest grid point in its range).
Categorical columns of K ≥ 3 labels are one-hot vectors dequantised into a box inside their
argmax region (:mod:`scorematch.data.columns`), so that no order is put on their labels; two
labels are one coordinate (two points carry no false order).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .table import Table, parse_column_list, resolve_columns

__all__ = [
    "COLUMN_KINDS",
    "EXCLUDED",
    "FLOAT32_EPS",
    "GRID_TOL",
    "ID_MIN_ROWS",
    "ID_SHARE",
    "ID_SPAN",
    "MAX_STORED_VALUES",
    "MIN_REPEATS",
    "ODD_CELLS",
    "ONE_HOT_MIN_LABELS",
    "Column",
    "detect_column",
    "detect_columns",
    "number_label",
]

logger = logging.getLogger(__name__)

COLUMN_KINDS = ("continuous", "discrete", "binary", "categorical")
EXCLUDED = "excluded"  # a column of the file that is not modelled (an identifier, or empty)
MIN_REPEATS = 4  # a non-integer grid column whose values repeat this often on average is discrete
MAX_STORED_VALUES = 1000  # a discrete column's observed values are kept (samples snap to them)
MAX_DIVISOR = 10  # the grid step of non-integers: smallest gap / m, m ≤ this
GRID_TOL = 1e-3  # a value is on the grid when within this many steps of a grid point
FLOAT32_EPS = 2.0**-23
ID_SPAN = 1.25  # distinct integers spanning at most this many times the rows: a row number
ID_SHARE = 0.9  # text with distinct labels in at least this share of the rows: names, not labels
ID_MIN_ROWS = 5  # fewer rows than this say nothing about identifiers
ODD_CELLS = 3  # at most this many distinct non-number cells in a column of numbers …
ODD_SHARE = 0.05  # … in at most this share of its cells: those cells are missing
ONE_HOT_MIN_LABELS = 3  # categorical columns of this many labels or more are one-hot


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
    ``labels`` a categorical's labels; ``lo``/``hi`` the observed range; ``missing`` the number
    of missing cells; ``transform`` a continuous column's learned transform (a mapping, see
    :mod:`scorematch.data.marginals`) or None; ``one_hot``: a categorical column the model sees
    as K coordinates (``ONE_HOT_MIN_LABELS`` labels or more; False in runs made before, which
    saw codes); ``reason`` says why."""

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
    missing: int = 0
    transform: Mapping[str, Any] | None = None
    one_hot: bool = False

    def __post_init__(self) -> None:
        if self.kind not in (*COLUMN_KINDS, EXCLUDED):
            raise ValueError(
                f"column kind must be one of {(*COLUMN_KINDS, EXCLUDED)}, got {self.kind!r}"
            )
        if self.kind != "continuous" and not (self.step > 0 and math.isfinite(self.step)):
            raise ValueError(f"column {self.name!r}: grid step must be positive, got {self.step}")

    @property
    def quantised(self) -> bool:
        """True for the kinds that are dequantised (binary, discrete, categorical)."""
        return self.kind in ("discrete", "binary", "categorical")

    @property
    def width(self) -> int:
        """How many coordinates the model sees for this column (K for one-hot, else 1)."""
        return self.levels if self.one_hot else 1

    def describe(self) -> str:
        """What the column holds, in a few words."""
        gaps = f"; {self.missing} missing" if self.missing else ""
        if self.kind == EXCLUDED:
            return f"not modelled{gaps}"
        if self.kind == "categorical":
            labels = list(self.labels or ())
            shown = ", ".join(labels[:6]) + (", …" if len(labels) > 6 else "")
            how = f"one-hot, {len(labels)} coordinates" if self.one_hot else "one coordinate"
            return f"{len(labels)} labels: {shown} ({how}){gaps}"
        if self.kind == "binary":
            return f"two values: {self.lo:.7g}, {self.hi:.7g}{gaps}"
        if self.kind == "discrete":
            if self.distinct == 1:
                return f"always {self.lo:.7g}{gaps}"
            return (
                f"{self.lo:.7g} … {self.hi:.7g}, step {self.step:.7g} "
                f"({self.distinct} distinct values){gaps}"
            )
        how = ""
        if self.transform is not None:
            how = f", Yeo–Johnson λ = {float(self.transform['lam']):.2f}"
        return f"{self.lo:.7g} … {self.hi:.7g} ({self.distinct} distinct values{how}){gaps}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("values", "labels"):
            d[key] = None if d[key] is None else list(d[key])
        d["transform"] = None if self.transform is None else dict(self.transform)
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


def odd_cells(values: np.ndarray, text: Sequence[str], missing: np.ndarray) -> list[int] | None:
    """Rows of the non-number cells of a column of numbers with a few other cells (at most
    ``ODD_CELLS`` distinct ones in at most ``ODD_SHARE`` of its observed cells), or None when the
    column is text."""
    observed = ~np.asarray(missing, dtype=bool)
    odd = [i for i in np.flatnonzero(observed & np.isnan(values))]
    if not odd:
        return []
    distinct = {text[i] for i in odd}
    if len(distinct) <= ODD_CELLS and len(odd) <= ODD_SHARE * observed.sum():
        return [int(i) for i in odd]
    return None


def _identifier(name: str, why: str) -> Column:
    return Column(name, EXCLUDED, reason=why)


def detect_column(
    name: str,
    values: np.ndarray,
    text: Sequence[str] | None = None,
    *,
    missing: np.ndarray | None = None,
    categorical: bool = False,
    continuous: bool = False,
    keep: bool = False,
    lines: Sequence[int] | None = None,
) -> Column:
    """The kind and encoding of one column from all its cells (the rule of the module doc).

    ``values`` are the numbers (NaN where missing or not a number), ``text`` the cells as
    written for a column with a non-number cell, ``missing`` the mask of missing cells (default:
    NaN numbers, empty text); ``keep`` keeps an identifier; ``lines`` number the rows in messages.
    """
    v_all = np.asarray(values, dtype=np.float64)
    if missing is None:
        missing = np.isnan(v_all) if text is None else np.array([c == "" for c in text])
    missing = np.asarray(missing, dtype=bool)
    observed = ~missing
    n_missing, n_obs = int(missing.sum()), int(observed.sum())
    if n_obs == 0:
        return Column(name, EXCLUDED, missing=n_missing, reason="every cell is missing")
    odd = None if text is None or categorical else odd_cells(v_all, text, missing)
    if odd:
        shown = ", ".join(
            f"row {lines[i] if lines is not None else i + 1} {text[i]!r}" for i in odd[:5]
        )
        logger.warning(
            "column %r: %d of %d cells are not numbers and are read as missing: %s%s "
            "(add them to --na-values, or name the column in --categorical to keep its text)",
            name, len(odd), v_all.size, shown, ", …" if len(odd) > 5 else "",
        )  # fmt: skip
        missing = missing | np.isnan(v_all)
        n_missing, n_obs = int(missing.sum()), int((~missing).sum())
        text = None
    if categorical or text is not None:
        if text is not None:
            cells = [c for c, m in zip(text, missing) if not m]
        else:
            cells = [number_label(v) for v in v_all[observed]]
        labels = tuple(sorted(set(cells), key=_label_key))
        k = len(labels)
        if not keep and not categorical and n_obs >= ID_MIN_ROWS and k >= ID_SHARE * n_obs:
            return Column(
                name, EXCLUDED, distinct=k, missing=n_missing,
                reason=f"an identifier: {k} distinct labels in {n_obs} rows (--keep models it)",
            )  # fmt: skip
        why = "named categorical" if categorical else "holds text"
        return Column(
            name, "categorical", 0.0, k - 1.0, k, 0.0, 1.0, k, labels=labels, reason=why,
            missing=n_missing, one_hot=k >= ONE_HOT_MIN_LABELS,
        )  # fmt: skip
    v = v_all[~missing]
    distinct = np.unique(v)
    n = len(distinct)
    lo, hi = float(distinct[0]), float(distinct[-1])
    integer = bool(np.all(distinct == np.round(distinct))) and max(abs(lo), abs(hi)) < 2**53
    if (
        integer and not keep and not continuous and n == n_obs >= ID_MIN_ROWS
        and lo >= 0 and hi - lo + 1 <= ID_SPAN * n_obs
    ):  # fmt: skip
        return Column(
            name, EXCLUDED, lo, hi, n, missing=n_missing,
            reason=f"an identifier: integers {lo:.0f} … {hi:.0f}, one per row (--keep models it)",
        )  # fmt: skip
    if continuous:
        return Column(name, "continuous", lo, hi, n, reason="named continuous", missing=n_missing)
    if n == 1:
        return Column(
            name, "discrete", lo, hi, 1, lo, 1.0, 1, (lo,), reason="a constant", missing=n_missing
        )
    if n == 2:
        return Column(name, "binary", lo, hi, 2, lo, hi - lo, 2, (lo, hi), missing=n_missing)
    if integer:
        step: float | None = float(np.gcd.reduce((distinct - lo).astype(np.int64)))
    else:
        step = _grid_step(distinct)
    if step is not None and max(abs(lo), abs(hi)) * FLOAT32_EPS > 0.01 * step:
        step = None  # a grid finer than float32 can hold at these magnitudes
    if step is None:
        return Column(name, "continuous", lo, hi, n, reason="no regular grid", missing=n_missing)
    if integer:
        why = "integers"
    elif n * MIN_REPEATS <= v.size:
        why = f"values repeat ≥ {MIN_REPEATS} times on average"
    else:
        why = f"grid step {step:.3g}, but {n} distinct values in {v.size} rows"
        return Column(name, "continuous", lo, hi, n, reason=why, missing=n_missing)
    levels = round((hi - lo) / step) + 1
    kept = tuple(float(x) for x in distinct) if n <= MAX_STORED_VALUES else None
    return Column(
        name, "discrete", lo, hi, n, lo, step, levels, kept, reason=why, missing=n_missing
    )


def _row_names(table: Table, j: int) -> Column | None:
    """Column ``j`` excluded as the rows' names — the header marks it (``Table.row_names``) and
    its values are distinct in every row — else None (then the column is an ordinary one)."""
    observed = ~table.missing[:, j]
    n_obs = int(observed.sum())
    if n_obs < ID_MIN_ROWS or n_obs < len(observed):
        return None
    if j in table.text:
        k = len({c for c, m in zip(table.text[j], observed) if m})
    else:
        k = len(np.unique(table.values[observed, j]))
    if k != n_obs:
        return None
    return Column(
        table.names[j],
        EXCLUDED,
        distinct=k,
        reason="the rows' names: a first column headed as R's write.csv and pandas' to_csv "
        "head them, with a distinct value in every row (--keep models it)",
    )


def detect_columns(
    table: Table,
    *,
    categorical: str | Iterable[Any] | None = None,
    continuous: str | Iterable[Any] | None = None,
    keep: str | Iterable[Any] | None = None,
) -> list[Column]:
    """Every column of ``table`` by :func:`detect_column`; ``categorical`` / ``continuous``
    name columns (header names or 1-based indices, ``"a,b,3"`` or a list) whose kind is given,
    ``keep`` identifier columns to model anyway.  An excluded column is said in one logged line."""
    cat = resolve_columns(table.names, parse_column_list(categorical), "--categorical")
    cont = resolve_columns(table.names, parse_column_list(continuous), "--continuous")
    kept = resolve_columns(table.names, parse_column_list(keep), "--keep")
    both = sorted(cat & cont)
    if both:
        raise ValueError(
            f"column {table.names[both[0]]!r} is named both categorical and continuous"
        )
    for j in sorted(cont):
        if j in table.text and odd_cells(table.values[:, j], table.text[j],
                                         table.missing[:, j]) is None:  # fmt: skip
            raise ValueError(f"--continuous: column {table.names[j]!r} holds text, not numbers")
    columns = [
        detect_column(name, table.values[:, j], table.text.get(j), missing=table.missing[:, j],
                      categorical=j in cat, continuous=j in cont, keep=j in kept,
                      lines=table.lines)
        for j, name in enumerate(table.names)
    ]  # fmt: skip
    for j, column in enumerate(columns):  # row names no identifier rule recognised
        if (
            column.name == table.row_names and column.kind != EXCLUDED
            and not ({j} & (cat | cont | kept)) and (named := _row_names(table, j)) is not None
        ):  # fmt: skip
            columns[j] = named
    if all(c.kind == EXCLUDED for c in columns):  # identifiers are all there is: model them
        columns = [
            detect_column(name, table.values[:, j], table.text.get(j), missing=table.missing[:, j],
                          categorical=j in cat, continuous=j in cont, keep=True, lines=table.lines)
            for j, name in enumerate(table.names)
        ]  # fmt: skip
    for c in columns:
        if c.kind == EXCLUDED:
            logger.warning("%scolumn %r is not modelled: %s", table.where, c.name, c.reason)
    return columns
