"""Loaders of table files: .csv/.tsv/.txt, gzip-compressed .csv.gz/.tsv.gz/.txt.gz, .parquet,
.npy and .npz (image folders: :mod:`.images`).

:func:`read_table` returns a :class:`Table` — numbers, the header's column names, the cells of
columns that hold text (labels) and the mask of missing cells (``NA``, empty cells and the other
markers of :mod:`scorematch.data.missing`, read as NaN); :func:`load_table` returns a float32
tensor of numbers only and refuses anything else; :func:`write_csv` writes a table.  Every loader
fails with one clear ``ValueError`` / ``FileNotFoundError`` that names the file as the user gave it
(relative paths stay relative) and the row, column or key at fault.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write_text
from .missing import na_markers
from .table import (
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    Table,
    default_names,
    row_names_column,
    shown,
    table_suffix,
    unique_names,
)

__all__ = ["TextTable", "load_table", "read_table", "read_text_table", "write_csv"]

_NPZ_KEYS = ("x", "data", "arr_0")


def _existing_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"data file not found: {shown(p)}")
    if p.is_dir():
        raise ValueError(f"{shown(p)} is a directory; expected a .csv, .parquet, .npy or .npz file")
    return p


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _header_with_numbers(rows: list[tuple[int, list[str]]], na: frozenset[str]) -> bool:
    """A first row whose text cells are the only text of their columns, below which every row is
    numbers (or missing), is a header with some numeric names (``id,2019,2020``), not data."""
    head = rows[0][1]
    text = [j for j, c in enumerate(head) if _parse_float(c) is None]
    if not text or len(rows) < 2:
        return False
    return all(c in na or _parse_float(c) is not None for _, row in rows[1:] for c in row)


def _read_text(p: Path) -> str:
    """The text of a table file, gunzipped for ``.gz``; a one-line ValueError if it is no UTF-8."""
    try:
        if table_suffix(p).endswith(".gz"):
            with gzip.open(p, "rt", encoding="utf-8-sig") as f:
                return f.read()
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{shown(p)}: not a UTF-8 text table ({err.reason} at byte {err.start})"
        ) from err
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(
            f"{shown(p)}: could not read it as a gzip-compressed table ({err})"
        ) from err


def _csv_rows(
    p: Path, na: frozenset[str]
) -> tuple[list[str] | None, list[tuple[int, list[str]]], str | None]:
    """(header or None, [(line number, stripped cells)], delimiter) of a delimited text table."""
    lines = _read_text(p).splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ValueError(f"{shown(p)}: the file is empty")
    delimiter: str | None
    if table_suffix(p).startswith(".tsv") or ("\t" in first and "," not in first):
        delimiter = "\t"
    elif ";" in first and "," not in first:
        delimiter = ";"
    elif "," in first or len(first.split()) < 2:
        delimiter = ","
    else:
        delimiter = None  # whitespace-separated, as numpy.savetxt writes by default
    if delimiter is None:
        cells = [line.split() for line in lines]
    else:
        cells = list(csv.reader(lines, delimiter=delimiter))
    rows = [
        (lineno, [cell.strip() for cell in row])
        for lineno, row in enumerate(cells, start=1)
        if any(cell.strip() for cell in row)
    ]
    if not rows:
        raise ValueError(f"{shown(p)}: holds no values, only delimiters and blank lines")
    header: list[str] | None = None
    head = rows[0][1]
    if all(_parse_float(c) is None for c in head) or _header_with_numbers(rows, na):
        header, rows = head, rows[1:]
        if not rows:
            raise ValueError(f"{shown(p)}: has a header row but no data rows")
    width = len(header) if header is not None else len(rows[0][1])
    for lineno, row in rows:
        if len(row) != width:
            raise ValueError(
                f"{shown(p)}: row {lineno} has {len(row)} columns, expected {width} "
                f"(delimiter {delimiter or 'whitespace'!r})"
            )
    return header, rows, delimiter


def _cells_column(cells: Sequence[str], na: frozenset[str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """(values, missing, has_text) of one column of cells: markers in ``na`` (and numbers that
    read as NaN) are missing; ``has_text`` when some other cell is not a number."""
    n = len(cells)
    values = np.full(n, np.nan)
    missing = np.zeros(n, dtype=bool)
    has_text = False
    for i, cell in enumerate(cells):
        if cell in na:
            missing[i] = True
            continue
        v = _parse_float(cell)
        if v is None:
            has_text = True
        elif math.isnan(v):
            missing[i] = True
        else:
            values[i] = v
    return values, missing, has_text


def _check_infinite(table: Table, cells: dict[int, Sequence[str]] | None = None) -> None:
    """A one-line ValueError naming the first infinite number of a numeric column (row, column,
    cell) and how many there are."""
    numeric = [j for j in range(table.shape[1]) if j not in table.text]
    inf = np.isinf(table.values[:, numeric])
    if not inf.any():
        return
    i, k = (int(v) for v in np.argwhere(inf)[0])
    j = numeric[k]
    cell = cells[j][i] if cells is not None else repr(float(table.values[i, j]))
    name = f" ({table.names[j]!r})" if table.has_header else ""
    raise ValueError(
        f"{table.where}row {table.line(i)}, column {j + 1}{name} holds {cell!r}, an infinite "
        f"number ({int(inf.sum())} in all); replace it, or add it to the missing-value markers "
        "(--na-values)"
    )


def _read_csv_table(
    p: Path, na: frozenset[str], *, finite: bool = True
) -> tuple[Table, dict[int, list[str]]]:
    """A delimited text table: numbers, missing markers, and text where a column has a cell
    that is neither; ``finite``: refuse infinite numbers (naming the first)."""
    header, rows, _ = _csv_rows(p, na)
    width = len(rows[0][1])
    names = unique_names(header) if header is not None else default_names(width)
    values = np.full((len(rows), width), np.nan, dtype=np.float64)
    missing = np.zeros((len(rows), width), dtype=bool)
    text: dict[int, list[str]] = {}
    columns: dict[int, list[str]] = {}
    for j in range(width):
        column = [row[j] for _, row in rows]
        values[:, j], missing[:, j], has_text = _cells_column(column, na)
        columns[j] = column
        if has_text:
            text[j] = ["" if m else c for c, m in zip(column, missing[:, j])]
    lines = [lineno for lineno, _ in rows]
    table = Table(values, names, text, lines, p, header is not None, missing,
                  row_names_column(header, names))  # fmt: skip
    if finite:
        _check_infinite(table, columns)
    return table, columns


def _read_parquet_table(p: Path, na: frozenset[str]) -> Table:
    """A Parquet file through pandas/pyarrow (the ``parquet`` extra): numeric and boolean columns
    as numbers (nulls missing), other columns as text cells with the same markers as a CSV."""
    try:
        import pandas as pd
    except ImportError as err:
        raise ValueError(
            f"{shown(p)}: reading Parquet needs pandas and pyarrow: pip install 'scorematch[parquet]'"
        ) from err
    try:
        frame = pd.read_parquet(p)
    except ImportError as err:
        raise ValueError(
            f"{shown(p)}: reading Parquet needs pyarrow: pip install 'scorematch[parquet]' ({err})"
        ) from err
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ValueError(f"{shown(p)}: could not read it as a Parquet file ({err})") from err
    n, width = frame.shape
    if n == 0 or width == 0:
        raise ValueError(f"{shown(p)}: the Parquet table is empty (shape {frame.shape})")
    values = np.full((n, width), np.nan)
    missing = np.zeros((n, width), dtype=bool)
    text: dict[int, list[str]] = {}
    for j, name in enumerate(frame.columns):
        series = frame[name]
        null = series.isna().to_numpy()
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            values[:, j] = series.astype("float64").to_numpy(na_value=np.nan)
            missing[:, j] = null | np.isnan(values[:, j])
            continue
        cells = ["" if isnull else str(v).strip() for v, isnull in zip(series.tolist(), null)]
        values[:, j], missing[:, j], has_text = _cells_column(cells, na)
        if has_text:
            text[j] = ["" if m else c for c, m in zip(cells, missing[:, j])]
    header = [str(c) for c in frame.columns]
    names = unique_names(header)
    table = Table(values, names, text, list(range(1, n + 1)), p, True, missing,
                  row_names_column(header, names))  # fmt: skip
    _check_infinite(table)
    return table


def _read_csv(p: Path) -> Tensor:
    """The strict numeric reader of :func:`load_table`: every cell a finite number."""
    table, cells = _read_csv_table(p, na_markers(), finite=False)
    if table.text:  # the first non-numeric cell, in reading order
        for i in range(table.shape[0]):
            for j in sorted(table.text):
                cell = table.text[j][i]
                if cell and _parse_float(cell) is None:
                    name = f" ({table.names[j]!r})" if table.has_header else ""
                    raise ValueError(
                        f"{shown(p)}: row {table.line(i)}, column {j + 1}{name}: cannot read "
                        f"{cell!r} as a number (a column of labels needs a table reader that "
                        "knows its categories, e.g. `scorematch train`)"
                    )
    bad = table.missing | np.isinf(table.values)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        where = f"row {table.line(i)}, column {j + 1}" + (
            f" ({table.names[j]!r})" if table.has_header else ""
        )
        count = int(bad.sum())
        if cells[j][i] == "":
            raise ValueError(
                f"{shown(p)}: {where}: cannot read an empty cell ({count} value(s) are empty, "
                "NaN or infinite; `scorematch train` reads missing cells as gaps)"
            )
        raise ValueError(
            f"{shown(p)}: {count} value(s) are NaN or infinite (first: {where}: {cells[j][i]!r})"
        )
    return torch.from_numpy(table.values).float().contiguous()


def _finite_tensor(arr: np.ndarray | Tensor, p: Path) -> Tensor:
    x = torch.as_tensor(arr, dtype=torch.float32)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = ", ".join(str(int(i) + 1) for i in bad.nonzero()[0])
        raise ValueError(
            f"{shown(p)}: {int(bad.sum())} value(s) are NaN or infinite (after conversion to "
            f"float32; the first at (row, column, …) = ({first}))"
        )
    return x.contiguous()


def _array_to_tensor(arr: np.ndarray, p: Path, what: str, finite: bool = True) -> Tensor:
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{shown(p)}: {what} has non-numeric dtype {arr.dtype}; expected numbers")
    if arr.ndim == 0:
        raise ValueError(f"{shown(p)}: {what} is a single number; expected an array (N, ...)")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{shown(p)}: {what} is empty (shape {arr.shape})")
    is_uint8_images = arr.dtype == np.uint8 and arr.ndim >= 3
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 3:
        arr = arr[:, None]  # (N, H, W) greyscale images → (N, 1, H, W)
    arr = arr.astype(np.float64, copy=False)
    x = _finite_tensor(arr, p) if finite else torch.from_numpy(arr).float().contiguous()
    # 8-bit image stacks are pixel counts 0..255: map them to [0, 1] like image folders.
    return x / 255.0 if is_uint8_images else x


def _read_npy(p: Path, finite: bool = True) -> Tensor:
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as err:  # numpy raises several types for a damaged file
        raise ValueError(f"{shown(p)}: could not read it as a NumPy .npy file ({err})") from err
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{shown(p)}: not a NumPy .npy array file")
    return _array_to_tensor(arr, p, "the array", finite)


def _read_npz(p: Path, finite: bool = True) -> Tensor:
    try:
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.files)
            if not keys:
                raise ValueError(f"{shown(p)}: the .npz archive holds no arrays")
            if len(keys) == 1:
                key = keys[0]
            else:
                key = next((k for k in _NPZ_KEYS if k in keys), None)
                if key is None:
                    raise ValueError(
                        f"{shown(p)}: holds several arrays ({', '.join(keys)}) and none is named "
                        f"{', '.join(_NPZ_KEYS)}; save the data under one of those keys"
                    )
            arr = archive[key]
            if not isinstance(arr, np.ndarray):  # a zip member that is not a .npy file
                raise ValueError(
                    f"{shown(p)}: member {key!r} of the .npz archive is not a NumPy array"
                )
    except ValueError as err:
        if str(err).startswith(shown(p)):
            raise
        raise ValueError(f"{shown(p)}: could not read it as a NumPy .npz archive ({err})") from err
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise ValueError(f"{shown(p)}: could not read it as a NumPy .npz archive ({err})") from err
    return _array_to_tensor(arr, p, f"array {key!r}", finite)


def _unsupported(p: Path, suffix: str) -> ValueError:
    return ValueError(
        f"{shown(p)}: unsupported file type {suffix or '(none)'!r}; expected one of "
        f"{', '.join(TABLE_SUFFIXES)} or a folder of images"
    )


def load_table(path: str | Path) -> Tensor:
    """Load numeric data from a file into a float32 tensor with the samples first.

    - ``.csv`` / ``.tsv`` / ``.txt`` (or gzip-compressed, ``.csv.gz`` …): delimited numbers
      (comma, tab, semicolon or spaces, guessed from the first line) → ``(N, D)``.  A first row
      with no numeric cell is a header, and so is a first row above rows of numbers only (numeric
      names such as ``2019``).  Blank lines are skipped; any other non-numeric, empty or missing
      cell is an error naming row and column (:func:`read_table` keeps labels and gaps instead).
    - ``.parquet``: the numeric columns of :func:`read_table`, every cell a number.
    - ``.npy``: a numeric array.  1-D → ``(N, 1)``; 2-D as is; 3-D ``(N, H, W)`` →
      ``(N, 1, H, W)``; 4-D and more as is (e.g. images ``(N, C, H, W)``).  uint8 image stacks
      (3-D or more) are divided by 255 so they lie in [0, 1].
    - ``.npz``: the only array, else the one named ``x``, ``data`` or ``arr_0``; then as .npy.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an
    empty, damaged or non-numeric file and for NaN/inf values (with their count and the first).
    """
    p = _existing_file(path)
    suffix = table_suffix(p)
    if suffix.startswith(TEXT_SUFFIXES):
        return _read_csv(p)
    if suffix == ".npy":
        return _read_npy(p)
    if suffix == ".npz":
        return _read_npz(p)
    if suffix == ".parquet":
        table = _read_parquet_table(p, na_markers())
        if table.text or table.missing.any():
            raise ValueError(
                f"{shown(p)}: has labels or missing cells; a table reader that knows its columns "
                "reads them (e.g. `scorematch train`)"
            )
        return torch.from_numpy(table.values).float().contiguous()
    raise _unsupported(p, suffix)


def read_table(path: str | Path, na_values: str | Iterable[str] | None = None) -> Table:
    """Read a table of rows: its numbers, column names, text columns and missing cells
    (see :class:`Table`).

    ``.csv`` / ``.tsv`` / ``.txt`` (and their ``.gz``) as in :func:`load_table`, except that a
    column with a cell that is not a number is kept as text (a column of labels), and cells that
    are missing-value markers (``na_values``, default :data:`~scorematch.data.missing.NA_VALUES`:
    ``""``, ``NA``, ``N/A``, ``NaN``, ``nan``, ``NULL``, ``?``, ``-``) are missing: NaN, and
    ``True`` in :attr:`Table.missing`.  ``.parquet``: numeric columns as numbers, nulls missing,
    other columns as cells.  ``.npy`` / ``.npz``: a 1-D or 2-D numeric array, NaN missing,
    columns named ``x1 … xD``.  Images (arrays of 3 or more dimensions) are not tables: a
    ``ValueError``.  An infinite number is an error naming its row and column.
    """
    p = _existing_file(path)
    suffix = table_suffix(p)
    na = na_markers(na_values)
    if suffix.startswith(TEXT_SUFFIXES):
        return _read_csv_table(p, na)[0]
    if suffix == ".parquet":
        return _read_parquet_table(p, na)
    if suffix == ".npy":
        x = _read_npy(p, finite=False)
    elif suffix == ".npz":
        x = _read_npz(p, finite=False)
    else:
        raise _unsupported(p, suffix)
    if x.ndim != 2:
        raise ValueError(
            f"{shown(p)}: an array of shape {tuple(x.shape)} is not a table of rows (N, D)"
        )
    table = Table(x.double().numpy(), default_names(x.shape[1]), path=p)
    _check_infinite(table)
    return table


@dataclass
class TextTable:
    """A delimited text table as written: its :class:`Table`, the header's cells (None without a
    header), every data row's cells (stripped), the delimiter (None: whitespace) and the raw
    lines of the header and the rows — what a command that writes the table back with some cells
    changed reads, so that every other byte stays as it was (:meth:`line`)."""

    table: Table
    header: list[str] | None
    rows: list[list[str]]
    delimiter: str | None
    header_line: str | None
    lines: list[str]

    def quoted(self, j: int) -> bool:
        """True when column ``j``'s written cells are quoted (R's ``write.csv`` quotes text)."""
        for line in self.lines:
            spans = _field_spans(line, self.delimiter)
            if j < len(spans):
                token = line[slice(*spans[j])].strip()
                if token and token not in ("NA", ""):
                    return token.startswith('"')
        return False

    def line(self, i: int, cells: dict[int, str] | None = None, lead: str | None = None) -> str:
        """Data row ``i`` as written, with the cells ``cells`` (column → text, quoted as the
        column's other cells are) in place of the written ones, and ``lead`` as a new first
        field."""
        text = self.lines[i]
        if cells:
            spans = _field_spans(text, self.delimiter)
            for j in sorted(cells, reverse=True):
                a, b = spans[j]
                value = cells[j]
                if self.quoted(j):
                    value = '"' + value.replace('"', '""') + '"'
                text = text[:a] + value + text[b:]
        return text if lead is None else f"{lead}{self.delimiter or ' '}{text}"


def _field_spans(line: str, delimiter: str | None) -> list[tuple[int, int]]:
    """(start, end) of each field of one line: between delimiters outside double quotes, or
    the runs of non-space characters (whitespace-separated)."""
    if delimiter is None:
        spans, start = [], None
        for k, ch in enumerate(line + " "):
            if ch.isspace():
                if start is not None:
                    spans.append((start, k))
                    start = None
            elif start is None:
                start = k
        return spans
    spans, start, quoted = [], 0, False
    for k, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            spans.append((start, k))
            start = k + 1
    spans.append((start, len(line)))
    return spans


def read_text_table(path: str | Path, na_values: str | Iterable[str] | None = None) -> TextTable:
    """:func:`read_table` of a .csv/.tsv/.txt file (or its .gz) with the cells and lines as
    written; any other file is a one-line ValueError."""
    p = _existing_file(path)
    if not table_suffix(p).startswith(TEXT_SUFFIXES):
        raise ValueError(
            f"{shown(p)}: expected a delimited text table ({', '.join(TEXT_SUFFIXES)}, or .gz), "
            f"got {table_suffix(p) or 'no suffix'}"
        )
    na = na_markers(na_values)
    header, rows, delimiter = _csv_rows(p, na)
    table, _ = _read_csv_table(p, na)
    raw = _read_text(p).splitlines()
    head = None if header is None else next(line for line in raw if line.strip())
    if any(_split_lines(raw, lineno) for lineno, _ in rows):
        raise ValueError(f"{shown(p)}: a quoted cell spans lines; write each row on one line")
    return TextTable(table, header, [row for _, row in rows], delimiter, head,
                     [raw[lineno - 1] for lineno, _ in rows])  # fmt: skip


def _split_lines(raw: list[str], lineno: int) -> bool:
    """True when line ``lineno`` holds an odd number of double quotes (a cell that goes on)."""
    return raw[lineno - 1].count('"') % 2 == 1


def write_csv(path: str | Path, names: list[str], rows: list[list[str]]) -> Path:
    """Write a header and rows of already formatted cells as CSV, atomically (cells that hold
    the delimiter or quotes are quoted by the ``csv`` module)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(rows)
    return atomic_write_text(Path(path), buffer.getvalue())
