"""Data: built-in 2-D sets, scikit-learn's 8×8 digits, user tables and image folders.

``load_dataset(spec)`` is the single entry point used by the command line: ``spec`` is a built-in
name (see :func:`list_datasets`), ``"digits"``, or a path to a table file (.csv/.tsv/.txt, their
.gz, .parquet, .npy, .npz) or an image folder.  :class:`Standardizer` maps the data to the scale
the models are trained on and back.  :class:`ColumnCodec` (:mod:`.columns`) says which columns
of a table are continuous, discrete, binary, categorical or left out, and maps them to the
model's coordinates and back; :func:`read_table` keeps a table's column names, text columns and
missing cells (:mod:`.missing`); :func:`scan_image_folder` says what an image folder holds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .columns import COLUMN_KINDS, Column, ColumnCodec
from .digits import DIGITS_SIZE, load_digits_images
from .files import TextTable, load_table, read_table, read_text_table, write_csv
from .images import (
    ImageFolder,
    image_folder_levels,
    load_image_folder,
    read_image_folder,
    scan_image_folder,
)
from .labels import IMAGE_LABELS, LabelCodec, digit_labels, folder_labels, table_labels
from .missing import NA_VALUES, Gaps, complete_rows, find_gaps, usable_rows
from .table import IMAGE_SUFFIXES, TABLE_SUFFIXES, Table, shown, table_suffix
from .toy import (
    TOY_DATASETS,
    TOY_DESCRIPTIONS,
    TOY_MIXTURES,
    toy_dataset,
    toy_mixture,
    toy_mixture_params,
)
from .transforms import Standardizer, train_test_split

DEFAULT_TOY_SIZE = 10_000
_BUILTIN = (*TOY_DATASETS, "digits")

__all__ = [
    "COLUMN_KINDS",
    "DEFAULT_TOY_SIZE",
    "IMAGE_LABELS",
    "NA_VALUES",
    "TOY_DATASETS",
    "TOY_MIXTURES",
    "Column",
    "ColumnCodec",
    "Gaps",
    "ImageFolder",
    "LabelCodec",
    "Standardizer",
    "Table",
    "TextTable",
    "complete_rows",
    "find_gaps",
    "from_model",
    "image_folder_levels",
    "is_table_file",
    "list_datasets",
    "load_dataset",
    "load_digits_images",
    "load_image_folder",
    "load_labelled",
    "load_table",
    "read_table",
    "read_text_table",
    "scan_image_folder",
    "shown",
    "table_labels",
    "table_suffix",
    "to_model",
    "toy_dataset",
    "toy_mixture",
    "toy_mixture_params",
    "train_test_split",
    "write_csv",
]


def list_datasets() -> dict[str, str]:
    """Built-in data sets: name → one-line description (for the ``datasets`` command)."""
    out = {name: f"2-D toy: {desc}" for name, desc in TOY_DESCRIPTIONS.items()}
    out["digits"] = (
        f"{DIGITS_SIZE} real 8×8 greyscale handwritten digits from scikit-learn, in [0, 1]"
    )
    return out


def is_table_file(spec: str | Path) -> bool:
    """True when ``spec`` names a table file (``TABLE_SUFFIXES``), not a built-in set."""
    path = Path(str(spec)).expanduser()
    return (
        str(spec).lower() not in _BUILTIN
        and path.is_file()
        and table_suffix(path) in TABLE_SUFFIXES
    )


def _subset(x: Tensor, n: int | None, seed: int, what: str, y: Tensor | None = None):
    """A random subset of ``n`` rows of x (kept in order), and the same rows of labels ``y``."""
    if n is None:
        return x, y
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n > x.shape[0]:
        raise ValueError(f"n={n} is more than the {x.shape[0]} samples in {what}")
    if n == x.shape[0]:
        return x, y
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))
    keep = perm[: int(n)].sort().values
    return x[keep], None if y is None else y[keep]


def load_dataset(
    spec: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    mode: str | None = None,
    columns: ColumnCodec | None = None,
    drop_missing: bool = False,
    keep_missing: bool = False,
    purpose: str = "train on",
) -> Tensor:
    """Load a data set as a float32 tensor ``(N, *event)``.

    Args:
        spec: a built-in 2-D set (``TOY_DATASETS``), ``"digits"``, or a path to a .csv/.tsv/.txt,
            .npy or .npz file or to a folder of PNG/JPEG images.  Built-in names win over a file
            of the same name; write ``./moons`` for the file.
        n: for toys, how many points to draw (default ``DEFAULT_TOY_SIZE``); for real data, a
            random subset of that size (kept in file order), all samples when omitted.
        seed: seeds the toy generator and the subset choice.
        image_size, mode: only for image folders (see :func:`load_image_folder`).
        columns: for a table file, the codec that reads its columns (categorical labels to
            their codes, matched by header; :meth:`ColumnCodec.encode`), e.g. a run's; the file
            is read with the codec's missing-value markers.
        drop_missing, keep_missing: with ``columns``, what rows with missing cells do
            (:func:`~scorematch.data.missing.usable_rows`): refused with a count (both False),
            left out (``drop_missing``) or kept with NaN in their gaps (``keep_missing``: for
            training with the masked objective), before the subset is drawn; ``purpose`` words
            the refusal ("pass --drop-missing to PURPOSE the N complete rows").
    """
    return _load(spec, n=n, seed=seed, image_size=image_size, mode=mode, columns=columns,
                 drop_missing=drop_missing, keep_missing=keep_missing, purpose=purpose)[0]  # fmt: skip


def load_labelled(spec: str | Path, labels: LabelCodec, **options) -> tuple[Tensor, Tensor]:
    """:func:`load_dataset`'s rows and their class labels ``(N,)`` int64 (−1: none), read as
    ``labels`` says (:mod:`scorematch.data.labels`: a table's label column, an image folder's
    class sub-folders, the digits' digit); ``options`` as for :func:`load_dataset`."""
    x, y = _load(spec, labels=labels, **options)
    return x, y


def _load(
    spec: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    mode: str | None = None,
    columns: ColumnCodec | None = None,
    drop_missing: bool = False,
    keep_missing: bool = False,
    purpose: str = "train on",
    labels: LabelCodec | None = None,
) -> tuple[Tensor, Tensor | None]:
    text = str(spec)
    key = text.lower()
    path = Path(text).expanduser()
    is_folder = key not in _BUILTIN and path.is_dir()
    if (image_size is not None or mode is not None) and not is_folder:
        raise ValueError(
            f"image_size and mode (image channels) apply to image folders only, not to {text!r}"
        )
    if key in TOY_DATASETS:
        if labels is not None:
            raise ValueError(f"the built-in set {key!r} has no class labels")
        gen = torch.Generator().manual_seed(int(seed))
        return toy_dataset(key, DEFAULT_TOY_SIZE if n is None else n, generator=gen), None
    if key == "digits":
        if labels is None:
            return _subset(load_digits_images(), n, seed, "digits")
        _, y = digit_labels()
        return _subset(load_digits_images(), n, seed, "digits", y)
    if is_folder:
        x, files = read_image_folder(path, image_size, mode)
        y = None if labels is None else folder_labels(path, files, labels)
        return _subset(x, n, seed, text, y)
    if path.is_file():
        if columns is not None:
            table = read_table(path, na_values=columns.na_values)
            y = None if labels is None else table_labels(table, labels)
            table = columns.match(table)
            x = columns.encode(table)
            keep = usable_rows(
                x, columns.names, table.lines, drop_missing=drop_missing,
                keep_missing=keep_missing, where=shown(path), purpose=purpose,
            )  # fmt: skip
            return _subset(x[keep], n, seed, text, None if y is None else y[keep])
        if labels is not None:
            raise ValueError(f"{shown(path)}: labels need a table reader that knows its columns")
        return _subset(load_table(path), n, seed, text)
    looks_like_path = any(sep in text for sep in ("/", "\\")) or table_suffix(path) in (
        TABLE_SUFFIXES + IMAGE_SUFFIXES
    )
    if looks_like_path:
        raise FileNotFoundError(f"data file or folder not found: {shown(path)}")
    raise ValueError(
        f"unknown data set {text!r}; choose one of {', '.join(_BUILTIN)}, "
        "or give a path to a .csv/.npy/.npz file or an image folder"
    )


def to_model(columns: ColumnCodec | None, x: Tensor) -> Tensor:
    """``columns.to_model(x)``, or ``x`` itself for data without a codec (toys, images, arrays)."""
    return x if columns is None else columns.to_model(x)


def from_model(columns: ColumnCodec | None, y: Tensor) -> Tensor:
    """``columns.from_model(y)``, or ``y`` itself for data without a codec."""
    return y if columns is None else columns.from_model(y)
