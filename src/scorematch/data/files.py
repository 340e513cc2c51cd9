"""Loaders for user data: numeric tables (.csv/.tsv/.txt, .npy, .npz) and folders of images.

Every loader returns a float32 tensor with the batch first and fails with one clear
``ValueError`` / ``FileNotFoundError`` that names the file (and row, column or key) at fault;
:func:`read_table` returns a :class:`Table` instead — numbers, the header's column names and
the cells of columns that hold text (labels) — and :func:`write_csv` writes one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write_text

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NPZ_KEYS = ("x", "data", "arr_0")


def _existing_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"data file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a directory; expected a .csv, .npy or .npz file")
    return p


def _finite_tensor(arr: np.ndarray | Tensor, p: Path) -> Tensor:
    x = torch.as_tensor(arr, dtype=torch.float32)
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{p}: {bad} value(s) are NaN or infinite (after conversion to float32)")
    return x.contiguous()


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


@dataclass
class Table:
    """A table as read from a file, before any column is interpreted.

    ``values`` is ``(N, D)`` float64, with NaN in every cell of a column that holds text;
    ``names`` are the header's column names (``x1 … xD`` without a header); ``text`` maps the
    index of each column with a non-numeric cell to its N cells as written (stripped);
    ``lines`` are the rows' line numbers in the file (for messages).  NaN or infinite numbers in
    numeric columns are refused when the table is read.
    """

    values: np.ndarray
    names: list[str]
    text: dict[int, list[str]] = field(default_factory=dict)
    lines: list[int] | None = None
    path: Path | None = None
    has_header: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))


def default_names(d: int) -> list[str]:
    """Column names of a table without a header: ``x1 … xD``."""
    return [f"x{j + 1}" for j in range(d)]


def _header_with_numbers(rows: list[tuple[int, list[str]]]) -> bool:
    """A first row whose text cells are the only text of their columns, below which every row is
    numbers, is a header with some numeric names (``id,2019,2020``), not a row of labels."""
    head = rows[0][1]
    text = [j for j, c in enumerate(head) if _parse_float(c) is None]
    if not text or len(rows) < 2:
        return False
    return all(_parse_float(c) is not None for _, row in rows[1:] for c in row)


def _csv_rows(p: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]], str | None]:
    """(header or None, [(line number, stripped cells)], delimiter) of a delimited text table."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{p}: not a UTF-8 text table ({err.reason} at byte {err.start})") from err
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise ValueError(f"{p}: the file is empty")
    delimiter: str | None
    if p.suffix.lower() == ".tsv" or ("\t" in first and "," not in first):
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
        raise ValueError(f"{p}: holds no values, only delimiters and blank lines")
    header: list[str] | None = None
    head = rows[0][1]
    if all(_parse_float(c) is None for c in head) or _header_with_numbers(rows):
        header, rows = head, rows[1:]
        if not rows:
            raise ValueError(f"{p}: has a header row but no data rows")
    width = len(header) if header is not None else len(rows[0][1])
    for lineno, row in rows:
        if len(row) != width:
            raise ValueError(
                f"{p}: row {lineno} has {len(row)} columns, expected {width} "
                f"(delimiter {delimiter or 'whitespace'!r})"
            )
    return header, rows, delimiter


def _read_csv_table(p: Path) -> Table:
    """A delimited text table: numbers where every cell of a column is one, text otherwise."""
    header, rows, _ = _csv_rows(p)
    width = len(rows[0][1])
    names = header if header is not None else default_names(width)
    values = np.full((len(rows), width), np.nan, dtype=np.float64)
    text: dict[int, list[str]] = {}
    for j in range(width):
        column = [row[j] for _, row in rows]
        for (lineno, _), cell in zip(rows, column):
            if cell == "":
                name = f" ({names[j]!r})" if header is not None else ""
                raise ValueError(
                    f"{p}: row {lineno}, column {j + 1}{name}: cannot read an empty cell "
                    "(fill it in or remove the row)"
                )
        parsed = [_parse_float(cell) for cell in column]
        if any(v is None for v in parsed):
            text[j] = column
        else:
            values[:, j] = parsed
    numeric = [j for j in range(width) if j not in text]
    bad = int((~np.isfinite(values[:, numeric])).sum())
    if bad:
        raise ValueError(f"{p}: {bad} value(s) are NaN or infinite (after conversion to float32)")
    return Table(values, list(names), text, [lineno for lineno, _ in rows], p, header is not None)


def _read_csv(p: Path) -> Tensor:
    table = _read_csv_table(p)
    if table.text:  # the first non-numeric cell, in reading order
        for i, lineno in enumerate(table.lines or []):
            for j in sorted(table.text):
                cell = table.text[j][i]
                if _parse_float(cell) is None:
                    name = f" ({table.names[j]!r})" if table.has_header else ""
                    raise ValueError(
                        f"{p}: row {lineno}, column {j + 1}{name}: cannot read {cell!r} as a "
                        "number (a column of labels needs a table reader that knows its "
                        "categories, e.g. `scorematch train`)"
                    )
    return _finite_tensor(table.values, p)


def _array_to_tensor(arr: np.ndarray, p: Path, what: str) -> Tensor:
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{p}: {what} has non-numeric dtype {arr.dtype}; expected numbers")
    if arr.ndim == 0:
        raise ValueError(f"{p}: {what} is a single number; expected an array (N, ...)")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{p}: {what} is empty (shape {arr.shape})")
    is_uint8_images = arr.dtype == np.uint8 and arr.ndim >= 3
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 3:
        arr = arr[:, None]  # (N, H, W) greyscale images → (N, 1, H, W)
    x = _finite_tensor(arr.astype(np.float64, copy=False), p)
    # 8-bit image stacks are pixel counts 0..255: map them to [0, 1] like image folders.
    return x / 255.0 if is_uint8_images else x


def _read_npy(p: Path) -> Tensor:
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as err:  # numpy raises several types for a damaged file
        raise ValueError(f"{p}: could not read it as a NumPy .npy file ({err})") from err
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{p}: not a NumPy .npy array file")
    return _array_to_tensor(arr, p, "the array")


def _read_npz(p: Path) -> Tensor:
    try:
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.files)
            if not keys:
                raise ValueError(f"{p}: the .npz archive holds no arrays")
            if len(keys) == 1:
                key = keys[0]
            else:
                key = next((k for k in _NPZ_KEYS if k in keys), None)
                if key is None:
                    raise ValueError(
                        f"{p}: holds several arrays ({', '.join(keys)}) and none is named "
                        f"{', '.join(_NPZ_KEYS)}; save the data under one of those keys"
                    )
            arr = archive[key]
            if not isinstance(arr, np.ndarray):  # a zip member that is not a .npy file
                raise ValueError(f"{p}: member {key!r} of the .npz archive is not a NumPy array")
    except ValueError as err:
        if str(err).startswith(str(p)):
            raise
        raise ValueError(f"{p}: could not read it as a NumPy .npz archive ({err})") from err
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise ValueError(f"{p}: could not read it as a NumPy .npz archive ({err})") from err
    return _array_to_tensor(arr, p, f"array {key!r}")


def load_table(path: str | Path) -> Tensor:
    """Load numeric data from a file into a float32 tensor with the samples first.

    - ``.csv`` / ``.tsv`` / ``.txt``: delimited numbers (comma, tab, semicolon or spaces, guessed
      from the first line) → ``(N, D)``.  A first row with no numeric cell is a header, and so is
      a first row above rows of numbers only (numeric names such as ``2019``).  Blank lines are
      skipped; any other non-numeric or empty cell is an error naming row and column
      (:func:`read_table` keeps columns of labels instead).
    - ``.npy``: a numeric array.  1-D → ``(N, 1)``; 2-D as is; 3-D ``(N, H, W)`` →
      ``(N, 1, H, W)``; 4-D and more as is (e.g. images ``(N, C, H, W)``).  uint8 image stacks
      (3-D or more) are divided by 255 so they lie in [0, 1].
    - ``.npz``: the only array, else the one named ``x``, ``data`` or ``arr_0``; then as .npy.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an
    empty, damaged or non-numeric file and for NaN/inf values (with their count).
    """
    p = _existing_file(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_csv(p)
    if suffix == ".npy":
        return _read_npy(p)
    if suffix == ".npz":
        return _read_npz(p)
    raise ValueError(
        f"{p}: unsupported file type {suffix or '(none)'!r}; expected one of "
        f"{', '.join(TABLE_SUFFIXES)} or a folder of images"
    )


def read_table(path: str | Path) -> Table:
    """Read a table of rows: its numbers, column names and text columns (see :class:`Table`).

    ``.csv`` / ``.tsv`` / ``.txt`` as in :func:`load_table`, except that a column with a cell
    that is not a number is kept as text (a column of labels) instead of refused; an empty cell
    is still an error.  ``.npy`` / ``.npz``: a 1-D or 2-D numeric array, columns named
    ``x1 … xD``.  Images (arrays of 3 or more dimensions) are not tables: a ``ValueError``.
    """
    p = _existing_file(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_csv_table(p)
    x = load_table(p)
    if x.ndim != 2:
        raise ValueError(f"{p}: an array of shape {tuple(x.shape)} is not a table of rows (N, D)")
    return Table(x.double().numpy(), default_names(x.shape[1]), path=p)


def write_csv(path: str | Path, names: list[str], rows: list[list[str]]) -> Path:
    """Write a header and rows of already formatted cells as CSV, atomically (cells that hold
    the delimiter or quotes are quoted by the ``csv`` module)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(rows)
    return atomic_write_text(Path(path), buffer.getvalue())


def _center_square_resize(img, size: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return img


# Pillow's modes of 16-bit greyscale images; 16-bit colour PNGs it reads as 8-bit RGB(A).
_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _bit_depth(f: Path, im) -> int:
    """8 or 16: the depth an image is read at, or a one-line ValueError for one that would be
    read wrongly (16-bit colour PNGs, which Pillow truncates to 8 bits; 32-bit and float pixels)."""
    with open(f, "rb") as fh:
        head = fh.read(26)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] != 0:
        raise ValueError(
            f"{f}: a 16-bit colour PNG, which can only be read at 8 bits here; save it as 8-bit "
            "colour or 16-bit greyscale"
        )
    if im.mode in _GREY16:
        return 16
    if im.mode in ("I", "F"):
        raise ValueError(
            f"{f}: {im.mode}-mode (32-bit) pixels are not read; use 8- or 16-bit images"
        )
    return 8


def image_folder_levels(path: str | Path) -> int:
    """Grey levels − 1 of the images under ``path``: 65535 when any is 16-bit, else 255 (8-bit
    values k/255 lie on the 16-bit grid too).  Reads the headers only."""
    from PIL import Image

    root = Path(path).expanduser()
    for f in sorted(
        f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ):
        with contextlib.suppress(OSError, ValueError), Image.open(f) as im:
            if _bit_depth(f, im) == 16:
                return 65535
    return 255


def _pixels16(im, mode: str, size: int | None) -> np.ndarray:
    """A 16-bit greyscale image as float32 (C, H, W) in [0, 1], on the 1/65535 grid."""
    im = im.convert("F")
    if size is not None:
        im = _center_square_resize(im, int(size))
    a = np.clip(np.round(np.asarray(im, dtype=np.float32)), 0, 65535) / 65535.0
    return np.repeat(a[None], 3 if mode == "RGB" else 1, axis=0).astype(np.float32)


def load_image_folder(path: str | Path, size: int | None = None, mode: str | None = None) -> Tensor:
    """Load every PNG/JPEG under ``path`` (recursively, sorted by path) as ``(N, C, H, W)`` in [0, 1].

    Args:
        path: a folder.
        size: if given, each image is centre-cropped to a square and resized (bicubic) to
            ``size × size``.  Without it all images must share one size.
        mode: ``"L"`` (greyscale, C=1) or ``"RGB"`` (C=3); ``None`` picks ``"L"`` when every image
            is greyscale and ``"RGB"`` otherwise.  Alpha channels are dropped.

    EXIF orientation is applied.  8-bit images are read as k/255, 16-bit greyscale ones at their
    depth, as k/65535 (``image_folder_levels`` says which grid the likelihood dequantises on).
    Raises ``FileNotFoundError`` for a missing folder and a ``ValueError`` for an empty folder, an
    unreadable image (named), a 16-bit colour or 32-bit image, or mixed sizes without ``size``.
    """
    from PIL import Image, ImageOps

    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder of images")
    if mode is not None and mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L', 'RGB' or None, got {mode!r}")
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    files = sorted(
        (f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda f: f.relative_to(root).as_posix(),
    )
    if not files:
        raise ValueError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")

    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                depth = _bit_depth(f, im)
                images.append((ImageOps.exif_transpose(im), depth))
        except ValueError as err:
            if str(err).startswith(str(f)):
                raise
            raise ValueError(f"cannot read image {f}: {err}") from err
        except Exception as err:  # Pillow raises many types for damaged files
            raise ValueError(f"cannot read image {f}: {err}") from err
    if mode is None:
        grey = {"1", "L", "LA", *_GREY16}
        mode = "L" if all(im.mode in grey for im, _ in images) else "RGB"
    if size is None:
        sizes = {im.size for im, _ in images}
        if len(sizes) > 1:
            examples = ", ".join(f"{w}×{h}" for w, h in sorted(sizes)[:3])
            raise ValueError(
                f"{root}: images have different sizes ({examples}, …); pass an image size to "
                "crop and resize them to one square size"
            )
    arrays = []
    for im, depth in images:
        if depth == 16:
            arrays.append(_pixels16(im, mode, size))
            continue
        im = im.convert(mode)
        if size is not None:
            im = _center_square_resize(im, int(size))
        a = np.asarray(im, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)).contiguous()
