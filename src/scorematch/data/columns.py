"""A table's column codec: :class:`ColumnCodec` encodes a table's columns for a density model
(categorical labels as codes), dequantises its discrete columns, rounds samples back onto their
values and formats them as CSV cells.  Which kind each column is — continuous, discrete,
binary, categorical — and why is decided by :func:`~scorematch.data.column_kinds.detect_column`
(the rule is in :mod:`scorematch.data.column_kinds`).

Dequantisation: a discrete value v owns the bin [v − step/2, v + step/2); training sees
v + step·(u − ½) with u ~ U[0, 1) drawn afresh, and the likelihood is the bin's,
log P(v) ≥ E_u log p(v + step·(u − ½)) + log step, a proper discrete probability.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import rand
from .column_kinds import (
    COLUMN_KINDS,
    GRID_TOL,
    MAX_LEVELS,
    MIN_REPEATS,
    Column,
    detect_column,
    number_label,
)
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


def _shortest(v: float, digits: int) -> str:
    """``v`` with the fewest significant digits ≥ ``digits`` that give it back to 1e-12."""
    if not np.isfinite(v):
        return str(v)
    for d in range(digits, 16):
        text = f"{v:.{d}g}"
        if abs(float(text) - v) <= 1e-12 * abs(v):
            return text
    return repr(float(v))


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
        """Samples onto the columns' values: quantised columns to the nearest value the column
        holds (above ``MAX_STORED_VALUES`` distinct values, the nearest grid point in its range),
        categoricals to the nearest code; continuous columns unchanged.  NaN stays NaN."""
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
                allowed = torch.tensor(c.values, dtype=torch.float64, device=x.device)  # sorted
                v = x64[:, j].contiguous()
                hi = torch.searchsorted(allowed, v).clamp(1, len(allowed) - 1)
                lo = hi - 1
                left = (v - allowed[lo]).abs() <= (allowed[hi] - v).abs()
                out[:, j] = (
                    torch.where(left, allowed[lo], allowed[hi]) if len(allowed) > 1 else allowed[0]
                )
        out = torch.where(self._mask.to(x.device) & ~x64.isnan(), out, x64)
        return out.to(x.dtype)

    def format_rows(self, x: Tensor | np.ndarray, digits: int = 7) -> list[list[str]]:
        """CSV cells of rows ``x``: continuous values to ``digits`` significant digits,
        categoricals as their labels, discrete values as the table writes them: integers of
        integer grids as integers, others snapped onto the column's values and given the fewest
        digits (at least ``digits``, at most 15) that reproduce them."""
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
            elif c.quantised:
                snapped = self.round(torch.from_numpy(arr)).numpy()[:, j]
                cells = [_shortest(v, digits) for v in snapped]
            else:
                cells = [f"{v:.{digits}g}" for v in col]
            columns.append(cells)
        return [list(row) for row in zip(*columns)]

    def __repr__(self) -> str:
        kinds = [c.kind for c in self.columns]
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in COLUMN_KINDS if k in kinds)
        return f"ColumnCodec({len(self)} columns: {counts})"
