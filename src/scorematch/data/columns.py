"""A table's column codec: :class:`ColumnCodec` reads a table's columns into numbers (data units:
numbers as they are, categorical labels as codes, NaN where missing), maps them to the
coordinates a density model sees and back, and formats samples as CSV cells.  Which kind each
column is — continuous, discrete, binary, categorical, excluded — and why is decided by
:func:`~scorematch.data.column_kinds.detect_column` (the rule is in
:mod:`scorematch.data.column_kinds`).

The model sees the modelled columns through :class:`~scorematch.data.coordinates.Coordinates`
(one-hot boxes, Yeo–Johnson transforms, the dequantisation bound and its correction);
the codec's :meth:`~ColumnCodec.to_model`, :meth:`~ColumnCodec.dequantise` and
:meth:`~ColumnCodec.from_model` are that map, with values snapped onto the columns' grids.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .column_kinds import (
    COLUMN_KINDS,
    EXCLUDED,
    MIN_REPEATS,
    Column,
    detect_column,
    detect_columns,
    number_label,
    odd_cells,
)
from .coordinates import Coordinates
from .files import read_table
from .marginals import TRANSFORMS, YeoJohnson
from .missing import na_markers
from .table import Table, parse_column_list

__all__ = [
    "COLUMN_KINDS",
    "MIN_REPEATS",
    "Column",
    "ColumnCodec",
    "detect_column",
    "number_label",
    "parse_column_list",
]

logger = logging.getLogger(__name__)


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
    """How a table's columns are read, encoded for a density model and decoded from its samples.

    :meth:`encode` reads a :class:`~scorematch.data.Table` into data units ``(N, D)`` — numbers
    as they are, categoricals as codes 0 … K−1, NaN where missing — over the modelled columns
    (``columns``; ``excluded`` ones, identifiers, are left out).  :meth:`to_model` /
    :meth:`from_model` map data units to the model's ``dim`` coordinates and back;
    :meth:`dequantise` draws the model's training and likelihood points and returns the
    likelihood's correction term (module doc); :meth:`format_rows` writes CSV cells.
    """

    def __init__(self, columns: Sequence[Column], na_values: Iterable[str] | None = None) -> None:
        everything = tuple(columns)
        self.all_columns = everything
        self.columns = tuple(c for c in everything if c.kind != EXCLUDED)
        self.excluded = tuple(c for c in everything if c.kind == EXCLUDED)
        if not self.columns:
            if self.excluded:
                raise ValueError(
                    "no column is left to model: "
                    + "; ".join(f"{c.name!r} is {c.reason}" for c in self.excluded)
                )
            raise ValueError("a table needs at least one column")
        self.na_values = None if na_values is None else tuple(sorted(na_markers(na_values)))
        q = [c.quantised for c in self.columns]
        self._mask = torch.tensor(q)
        self._origin = torch.tensor([c.origin for c in self.columns], dtype=torch.float64)
        self._step = torch.tensor([c.step for c in self.columns], dtype=torch.float64)
        self._top = torch.tensor([max(c.levels - 1, 0) for c in self.columns], dtype=torch.float64)
        self._coords = Coordinates(self.columns)

    # -- construction and storage
    @classmethod
    def detect(
        cls,
        table: Table,
        *,
        categorical: str | Iterable[Any] | None = None,
        continuous: str | Iterable[Any] | None = None,
        keep: str | Iterable[Any] | None = None,
        na_values: str | Iterable[str] | None = None,
    ) -> ColumnCodec:
        """Every column's kind (:func:`~scorematch.data.column_kinds.detect_columns`: names of
        columns whose kind is given, identifiers to keep); ``na_values``: the missing-value
        markers the table was read with, kept for reading the run's other files."""
        columns = detect_columns(table, categorical=categorical, continuous=continuous, keep=keep)
        return cls(columns, na_values)

    @classmethod
    def from_file(cls, path: Any, **options: Any) -> ColumnCodec:
        """:meth:`detect` on the table at ``path`` (read with ``na_values``, when given)."""
        table = read_table(path, na_values=options.get("na_values"))
        return cls.detect(table, **options)

    def fit(self, x: Tensor, transform: str = "yeo-johnson") -> ColumnCodec:
        """The codec with each continuous column's transform learned on training rows ``x``
        (data units, :meth:`encode`'s columns): ``"yeo-johnson"`` (:mod:`.marginals`; a column
        whose best λ is 1 keeps no transform) or ``"none"``."""
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self._check_width(x)
        out = iter(
            dataclasses.replace(c, transform=self._fit_one(x[:, j], transform))
            if c.kind == "continuous" else c
            for j, c in enumerate(self.columns)
        )  # fmt: skip
        every = [c if c.kind == EXCLUDED else next(out) for c in self.all_columns]
        return ColumnCodec(every, self.na_values)

    @staticmethod
    def _fit_one(x: Tensor, transform: str) -> dict[str, Any] | None:
        yj = YeoJohnson.fit(x) if transform == "yeo-johnson" else None
        return None if yj is None or yj.identity else yj.to_dict()

    def to_config(self) -> list[dict[str, Any]]:
        """Plain JSON/YAML: one mapping per column of the file, excluded ones included
        (:meth:`from_config` rebuilds the codec)."""
        return [c.to_dict() for c in self.all_columns]

    @classmethod
    def from_config(
        cls, config: Sequence[Mapping[str, Any]], na_values: Iterable[str] | None = None
    ) -> ColumnCodec:
        return cls([Column.from_dict(c) for c in config], na_values)

    # -- facts
    def __len__(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        """The modelled columns' names (data units' columns)."""
        return [c.name for c in self.columns]

    @property
    def file_names(self) -> list[str]:
        """Every column of the file, excluded ones included, in file order."""
        return [c.name for c in self.all_columns]

    @property
    def dim(self) -> int:
        """The number of coordinates the model sees (one-hot columns count K)."""
        return self._coords.dim

    @property
    def quantised(self) -> bool:
        """True when any column is dequantised (training, likelihood and samples change)."""
        return bool(self._mask.any())

    @property
    def all_quantised(self) -> bool:
        """True when every column is (the likelihood is then a discrete probability)."""
        return bool(self._mask.all())

    @property
    def labels(self) -> list[tuple[str, ...] | None]:
        """Per column, a categorical column's labels (its codes index them), else None."""
        return [c.labels if c.kind == "categorical" else None for c in self.columns]

    @property
    def passthrough(self) -> bool:
        """True when the model's coordinates are the data units themselves (no one-hot column,
        no transform): then only dequantisation tells them apart."""
        return self._coords.identity

    def steps(self) -> Tensor:
        """Bin widths of the model's coordinates, float64 ``(dim,)``: a discrete, binary or
        two-label column's step, ½ for a one-hot coordinate, 0 for continuous ones."""
        return self._coords.widths.clone()

    @property
    def log_volume(self) -> float:
        """log of the volume of a row's bin in the model's coordinates, Σ log w (a constant: the
        likelihood adds it with Σ log T')."""
        return self._coords.log_volume

    @property
    def log_bin_volume(self) -> float:
        """Σ log step over the quantised columns in data units (categorical codes: step 1):
        log P(bin) ≈ log p(x) + this for a smooth density p in data units (add it to a
        continuous baseline's log-density fitted on :meth:`encode`'s rows to compare)."""
        return float(self._step[self._mask].log().sum())

    def coordinate_columns(self) -> list[int]:
        """For each model coordinate, the index of its column (to map a column mask, e.g. of
        missing cells, onto the coordinates)."""
        return self._coords.column_of()

    def describe(self) -> list[tuple[str, str, str, str]]:
        """Rows (index in the file, name, kind, what it holds — and why) for printing."""
        return [
            (str(j + 1), c.name, c.kind, c.describe() + (f" — {c.reason}" if c.reason else ""))
            for j, c in enumerate(self.all_columns)
        ]

    # -- reading a table
    def match(self, table: Table) -> Table:
        """The table's modelled columns in the codec's order: by header name when the file has a
        header (any order; excluded columns may be there or not), else by position (all the
        file's columns, or the modelled ones).  A one-line ValueError otherwise."""
        where = table.where
        if table.has_header:
            missing = [n for n in self.names if n not in table.names]
            unknown = [n for n in table.names if n not in self.file_names]
            if missing or unknown:
                why = [f"missing {', '.join(map(repr, missing))}"] if missing else []
                why += [f"not the run's {', '.join(map(repr, unknown))}"] if unknown else []
                raise ValueError(
                    f"{where}columns {', '.join(table.names)} do not match the run's "
                    f"{', '.join(self.file_names)} ({'; '.join(why)})"
                )
            return table.select(self.names, optional=[c.name for c in self.excluded])
        d = table.shape[1]
        if d == len(self.all_columns):
            used = [j for j, c in enumerate(self.all_columns) if c.kind != EXCLUDED]
            return table.take(used)
        if d == len(self):
            return table
        raise ValueError(f"{where}{d} columns, expected {len(self)} ({', '.join(self.names)})")

    def encode(self, table: Table) -> Tensor:
        """The table in data units, float32 ``(N, D)`` over the modelled columns: numbers as they
        are, categoricals as codes, NaN where missing.  Columns are matched by :meth:`match`; an
        unknown label is an error; the non-number cells of a column of numbers are missing (a
        logged warning names them) unless they are most of it (an error)."""
        t = self.match(table)
        where = t.where
        out = np.array(t.values, dtype=np.float64, copy=True)
        for j, c in enumerate(self.columns):
            observed = ~t.missing[:, j]
            if c.kind == "categorical":
                cells = t.text.get(j) or [number_label(v) for v in t.values[:, j]]
                code = {label: i for i, label in enumerate(c.labels or ())}
                unknown = sorted(
                    {cell for cell, o in zip(cells, observed) if o and cell not in code}
                )
                if unknown:
                    raise ValueError(
                        f"{where}column {c.name!r}: label(s) {', '.join(map(repr, unknown[:5]))} "
                        f"not among its {len(code)} categories ({', '.join(list(code)[:8])})"
                    )
                out[:, j] = [code[cell] if o else np.nan for cell, o in zip(cells, observed)]
                continue
            out[~observed, j] = np.nan
            if j in t.text:
                odd = odd_cells(t.values[:, j], t.text[j], t.missing[:, j])
                if odd is None:
                    raise ValueError(
                        f"{where}column {c.name!r} holds text; the run expects numbers"
                    )
                logger.warning(
                    "%scolumn %r: %d cell(s) are not numbers and are read as missing (first: row "
                    "%d, %r)", where, c.name, len(odd), t.line(odd[0]), t.text[j][odd[0]],
                )  # fmt: skip
        return torch.from_numpy(out).float()

    # -- the maps
    def _check_width(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != len(self):
            raise ValueError(f"expected rows of {len(self)} columns, got shape {tuple(x.shape)}")

    def grid_index(self, x: Tensor) -> Tensor:
        """k = round((x − origin)/step) of the quantised columns, float64: the bin that holds each
        value (a value between a column's grid points is in one of them: never refused)."""
        self._check_width(x)
        x64 = x.detach().double()
        return ((x64 - self._origin.to(x64.device)) / self._step.to(x64.device)).round()

    def to_model(self, x: Tensor) -> Tensor:
        """The model's coordinates ``(N, dim)`` of data-unit rows ``x`` ``(N, D)``
        (:meth:`Coordinates.to_model`); dtype and device follow ``x``."""
        self._check_width(x)
        return self._coords.to_model(x)

    def log_jacobian(self, x: Tensor) -> Tensor:
        """Σ over transformed continuous columns of log T'(x), float64 ``(N,)``."""
        self._check_width(x)
        return self._coords.log_jacobian(x)

    def spread(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """Model coordinates moved uniformly within their bins (:meth:`Coordinates.spread`)."""
        return self._coords.spread(y, generator)

    def dequantise(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(ỹ, correction): the model's coordinates of data-unit rows ``x`` with each quantised
        value moved to a uniform point of its bin (:meth:`spread`, drawn from ``generator`` only
        when a column is quantised), and the likelihood's correction term log vol(bin) +
        Σ log T'(x), float64 ``(N,)``, so that log P(x) ≥ E log p(ỹ) + correction (module doc).
        A discrete value off its column's grid — a number the table did not hold — is scored as
        the bin that holds it."""
        self._check_width(x)
        correction = self.log_jacobian(x)
        if not self.quantised:
            return self.to_model(x), correction
        k = self.grid_index(x)
        origin, step = self._origin.to(x.device), self._step.to(x.device)
        mask = self._mask.to(x.device)
        on_grid = torch.where(mask, origin + step * k, x.double())
        y = self.spread(self.to_model(on_grid).double(), generator)
        return y.to(x.dtype), correction + self.log_volume

    def from_model(self, y: Tensor) -> Tensor:
        """Data-unit rows ``(N, D)`` of model coordinates ``y`` ``(N, dim)``: argmax for one-hot
        columns, T⁻¹ for transformed ones, then :meth:`round` onto the columns' values."""
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} coordinates, got shape {tuple(y.shape)}")
        return self.round(self._coords.decode(y)).to(y.dtype)

    def round(self, x: Tensor) -> Tensor:
        """Data-unit rows onto the columns' values: quantised columns to the nearest value the
        column holds (above ``MAX_STORED_VALUES`` distinct values, the nearest grid point in its
        range), categoricals to the nearest code; continuous columns unchanged.  NaN stays NaN."""
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
        """CSV cells of data-unit rows ``x``: continuous values to ``digits`` significant digits,
        categoricals as their labels, discrete values as the table writes them: integers of
        integer grids as integers, others snapped onto the column's values and given the fewest
        digits (at least ``digits``, at most 15) that reproduce them; missing cells empty."""
        arr = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self):
            raise ValueError(f"expected rows of {len(self)} columns, got shape {arr.shape}")
        columns = []
        for j, c in enumerate(self.columns):
            col = arr[:, j]
            if c.kind == "categorical":
                labels = c.labels or ()
                cells = [
                    labels[int(v)] if np.isfinite(v) and 0 <= int(v) < len(labels) else ""
                    for v in col
                ]
            elif c.quantised and float(c.origin).is_integer() and float(c.step).is_integer():
                cells = [f"{v:.0f}" if np.isfinite(v) else "" for v in col]
            elif c.quantised:
                snapped = self.round(torch.from_numpy(arr)).numpy()[:, j]
                cells = [_shortest(v, digits) for v in snapped]
            else:
                cells = [f"{v:.{digits}g}" if not np.isnan(v) else "" for v in col]
            columns.append(cells)
        return [list(row) for row in zip(*columns)]

    def __repr__(self) -> str:
        kinds = [c.kind for c in self.columns]
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in COLUMN_KINDS if k in kinds)
        left = f", {len(self.excluded)} excluded" if self.excluded else ""
        return f"ColumnCodec({len(self)} columns: {counts}{left}; {self.dim} coordinates)"
