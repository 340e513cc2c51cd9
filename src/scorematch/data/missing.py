"""Missing cells: the markers that mean "no value", where a table's gaps are, and what a table with
gaps does in a run — kept as NaN for training (a mask-conditional network trains on every row:
``scorematch.objectives.conditional``), refused with a count where rows must be complete (scoring
a likelihood), or dropped (``--drop-missing``).

A cell is missing when it is one of ``NA_VALUES`` (``""``, ``NA``, ``N/A``, ``NaN``, ``nan``,
``NULL``, ``?``, ``-``: what R's ``write.csv``, pandas' ``to_csv`` and hand-made files write), or
the list a user gives (``na_values``; an empty cell is always missing).  Missing cells are NaN in a
table's values and ``True`` in its mask (:attr:`scorematch.data.Table.missing`), so callers see
them instead of a read error.  :func:`complete_rows` is the one place that decides what a table
with gaps does in a run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "NA_VALUES",
    "Gaps",
    "complete_rows",
    "find_gaps",
    "na_markers",
    "usable_rows",
    "without_gaps",
]

logger = logging.getLogger(__name__)

NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "NULL", "?", "-")


def na_markers(na_values: str | Iterable[str] | None = None) -> frozenset[str]:
    """The cells read as missing: ``NA_VALUES`` when None, else the given list (``"NA,-999"`` or
    an iterable of strings), always with the empty cell."""
    if na_values is None:
        return frozenset(NA_VALUES)
    items = na_values.split(",") if isinstance(na_values, str) else list(na_values)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"na_values must be strings, got {na_values!r}")
    return frozenset({"", *(item.strip() for item in items)})


@dataclass(frozen=True)
class Gaps:
    """Where a table's missing cells are: how many rows of ``total`` have one, the first
    (its line in the file and its column's name) and the count per column."""

    rows: int
    total: int
    first_line: int
    first_column: str
    per_column: dict[str, int]

    def describe(self) -> str:
        """``11 of 344 rows have empty cells (first: row 5, bill_length_mm)``."""
        return (
            f"{self.rows} of {self.total} rows have empty cells "
            f"(first: row {self.first_line}, {self.first_column})"
        )


def find_gaps(
    x: Tensor | np.ndarray, names: Sequence[str], lines: Sequence[int] | None = None
) -> Gaps | None:
    """The gaps (NaN cells) of rows ``x`` ``(N, D)``, or None when every row is complete;
    ``lines`` are the rows' line numbers in their file (default 1 … N)."""
    mask = torch.as_tensor(x).isnan() if isinstance(x, Tensor) else np.isnan(np.asarray(x))
    mask = np.asarray(mask)
    incomplete = mask.any(1)
    if not incomplete.any():
        return None
    i = int(np.argmax(incomplete))
    j = int(np.argmax(mask[i]))
    line = int(lines[i]) if lines is not None else i + 1
    counts = mask.sum(0)
    per_column = {name: int(c) for name, c in zip(names, counts) if c}
    return Gaps(int(incomplete.sum()), int(mask.shape[0]), line, names[j], per_column)


def without_gaps(x: Tensor) -> Tensor:
    """The rows of ``x`` (any event shape) without a missing cell (NaN)."""
    return x[~x.reshape(x.shape[0], -1).isnan().any(1)]


def usable_rows(
    x: Tensor,
    names: Sequence[str],
    lines: Sequence[int] | None = None,
    *,
    drop_missing: bool = False,
    keep_missing: bool = False,
    where: str = "",
    purpose: str = "train on",
) -> Tensor:
    """The rows of ``x`` to use (indices into ``x``): all of them when ``x`` is complete or
    ``keep_missing`` (gaps stay NaN: training with the masked objective); with gaps otherwise, a
    one-line ValueError that counts them and names the way on (``--drop-missing`` to
    ``purpose`` the complete rows), or (``drop_missing``) the complete rows, said in one line.

    This is the only place that decides what rows with missing cells do; :func:`complete_rows`
    applies it."""
    everything = torch.arange(x.shape[0])
    gaps = find_gaps(x, names, lines)
    if gaps is None:
        return everything
    prefix = f"{where}: " if where else ""
    if keep_missing:  # a row without a single value has nothing to train on: said, and left out
        empty = x.isnan().all(1)
        if bool(empty.all()):
            raise ValueError(f"{prefix}every row is empty: there is no value to train on")
        if bool(empty.any()):
            logger.warning("%s%d row(s) have no value at all and are left out", prefix,
                           int(empty.sum()))  # fmt: skip
        return everything[~empty]
    keep = ~x.isnan().any(1)
    kept = int(keep.sum())
    if not drop_missing:
        if kept < 2:
            raise ValueError(
                f"{prefix}{gaps.describe()}; fewer than 2 rows are complete, so --drop-missing "
                "cannot help: fill the gaps or remove the emptiest columns"
            )
        raise ValueError(
            f"{prefix}{gaps.describe()}; pass --drop-missing to {purpose} the {kept} complete rows"
        )
    if kept < 2:
        raise ValueError(f"{prefix}{gaps.describe()}; only {kept} complete row(s) are left")
    worst = ", ".join(f"{k} {v}" for k, v in sorted(gaps.per_column.items(), key=lambda t: -t[1]))
    logger.warning(
        "%s%d of %d rows have empty cells and are dropped (--drop-missing): %s",
        prefix,
        gaps.rows,
        gaps.total,
        worst,
    )
    return everything[keep]


def complete_rows(
    x: Tensor,
    names: Sequence[str],
    lines: Sequence[int] | None = None,
    *,
    drop_missing: bool = False,
    keep_missing: bool = False,
    where: str = "",
    purpose: str = "train on",
) -> Tensor:
    """``x[usable_rows(x, ...)]``: the rows a run uses (see :func:`usable_rows`)."""
    return x[
        usable_rows(x, names, lines, drop_missing=drop_missing, keep_missing=keep_missing,
                    where=where, purpose=purpose)
    ]  # fmt: skip
