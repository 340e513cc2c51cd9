"""The data of a run — the one place that reads it: :func:`load_data` resolves the data options,
loads the set, splits it (seeded), carves the validation rows from the training rows and fits the
standardisation; :func:`load_run_data` does the same from a run's config.  Also the kinds of a
table's columns (:func:`table_columns`) and the table of built-in sets that ``scorematch
datasets`` prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive_int
from ..data import (
    DEFAULT_TOY_SIZE,
    TOY_DATASETS,
    ColumnCodec,
    LabelCodec,
    Standardizer,
    image_folder_levels,
    is_table_file,
    list_datasets,
    load_dataset,
    load_labelled,
    load_table,
    read_table,
    to_model,
    train_test_split,
)
from ..data.labels import IMAGE_LABELS, digit_labels, folder_classes, label_column
from ..data.missing import without_gaps
from .checks import fraction, pixel_levels, seed_value

__all__ = [
    "DataBundle",
    "data_kind",
    "dataset_table",
    "fit_columns",
    "gap_counts",
    "load_data",
    "load_run_data",
    "load_split",
    "run_columns",
    "source_labels",
    "source_section",
    "table_columns",
    "validation_index",
]


@dataclass
class DataBundle:
    """The data of a run in data units: all training rows, the held-out test rows, the fitted
    standardisation, and which training rows are the validation rows (``val_index``, or None)."""

    train: Tensor
    test: Tensor
    standardizer: Standardizer
    kind: str  # "vector" or "image"
    levels: int | None  # number of grey levels − 1 of quantised image data (digits: 16), or None
    val_index: Tensor | None = None
    section: dict[str, Any] = field(default_factory=dict)  # the config's data section
    columns: ColumnCodec | None = None  # a table's codec (its model coordinates), else None
    # class labels (N,) of the train and test rows (−1: none), for runs trained with --labels
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    @property
    def labels(self) -> LabelCodec | None:
        """The label codec of a run trained with labels (``data.labels``), else None."""
        return LabelCodec.from_config(self.section.get("labels"))

    @property
    def has_gaps(self) -> bool:
        """True when training rows have missing cells (NaN), kept for the masked objective."""
        return bool(self.train.isnan().any())

    @property
    def train_complete(self) -> Tensor:
        """The training rows without a missing cell (all of them for data without gaps): what
        pictures, baselines and distances to the training rows use."""
        return without_gaps(self.train)

    def standardised(self, rows: Tensor) -> Tensor:
        """Data-unit rows in the model's standardised coordinates, T(to_model(rows))."""
        return self.standardizer.transform(to_model(self.columns, rows))

    @cached_property
    def max_distance(self) -> float:
        """The largest distance between standardised training points (on an evenly strided
        subset of at most 2000): NCSN's σ_max (Song & Ermon 2020, "Improved techniques for
        training score-based generative models", §3.1)."""
        z = self.standardised(self.train_complete)
        flat = z.reshape(z.shape[0], -1).double()
        flat = flat[:: max(1, flat.shape[0] // 2000)]
        return float(torch.cdist(flat, flat).max())

    @property
    def val(self) -> Tensor | None:
        """The validation rows (part of ``train``; never the test rows)."""
        return None if self.val_index is None else self.train[self.val_index]

    @property
    def fit(self) -> Tensor:
        """The training rows without the validation rows: what a validated run trains on."""
        return self.train[self._fit_rows()]

    @property
    def val_labels(self) -> Tensor | None:
        """The validation rows' labels (None without labels or validation rows)."""
        if self.train_labels is None or self.val_index is None:
            return None
        return self.train_labels[self.val_index]

    @property
    def fit_labels(self) -> Tensor | None:
        """The labels of :attr:`fit`'s rows (None without labels)."""
        return None if self.train_labels is None else self.train_labels[self._fit_rows()]

    def _fit_rows(self) -> Tensor:
        keep = torch.ones(self.train.shape[0], dtype=torch.bool)
        if self.val_index is not None:
            keep[self.val_index] = False
        return keep


TEST_FRACTION = 0.2
# Model selection: a share of the training rows validates — the checkpoint with the lowest
# validation loss can be the run's model, early stopping watches it, and the likelihood's
# bandwidth t_min is chosen on these rows (``runs.selection``).
VAL_FRACTION = {"vector": 0.15, "image": 0.1}
# A validation split needs enough rows on both sides to mean something.
MIN_VAL_ROWS, MIN_FIT_ROWS = 8, 16


def validation_index(n_train: int, fraction: float, seed: int) -> Tensor | None:
    """Which of ``n_train`` training rows validate: ``round(n_train · fraction)`` rows drawn by a
    generator seeded with ``seed`` (sorted), or None when ``fraction`` is 0 or the split would
    leave fewer than 8 validation or 16 training rows."""
    n_val = round(n_train * float(fraction))
    if fraction <= 0 or n_val < MIN_VAL_ROWS or n_train - n_val < MIN_FIT_ROWS:
        return None
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:n_val].sort().values


def _levels(spec: str, x: Tensor) -> int | None:
    """Grey levels − 1 of quantised images: 16 for the digits, 255 for 8-bit image folders,
    65535 for folders with 16-bit images."""
    if str(spec).lower() == "digits":
        return 16
    if x.ndim == 4 and Path(str(spec)).expanduser().is_dir():
        return image_folder_levels(Path(str(spec)).expanduser())
    return None


# Fewest rows a split may leave: two to fit a standardisation and give a standard error.
MIN_SPLIT_ROWS = 2


def _check_split(train: Tensor, test: Tensor, fraction: float) -> None:
    for rows, what in ((train, "training"), (test, "held-out")):
        if rows.shape[0] < MIN_SPLIT_ROWS:
            raise ValueError(
                f"test_fraction {fraction:g} leaves {rows.shape[0]} {what} row(s) of "
                f"{train.shape[0] + test.shape[0]}; each split needs at least {MIN_SPLIT_ROWS}"
            )


def load_split(
    data_cfg: Mapping[str, Any],
) -> tuple[Tensor, Tensor, str, int | None, tuple[Tensor, Tensor] | None]:
    """Load the data a config's ``data`` section names and split it: (train, test, kind, levels,
    labels), labels the (train, test) class labels of a labelled run, else None.

    A table's rows with missing cells are kept (the masked objective trains on them) unless
    ``drop_missing``; those the seeded split puts into the held-out rows join the training rows,
    so that the held-out rows — scored by the likelihood — are complete."""
    columns = run_columns(data_cfg)
    options = dict(
        n=data_cfg.get("n"),
        seed=int(data_cfg.get("seed", 0)),
        image_size=data_cfg.get("image_size"),
        mode=data_cfg.get("image_mode"),
        columns=columns,
        drop_missing=bool(data_cfg.get("drop_missing")),
        keep_missing=columns is not None and not data_cfg.get("drop_missing"),
    )
    labels = LabelCodec.from_config(data_cfg.get("labels"))
    y = None
    if labels is None:
        x = load_dataset(data_cfg["spec"], **options)
    else:
        x, y = load_labelled(data_cfg["spec"], labels, **options)
    kind = "image" if x.ndim == 4 else "vector"
    levels = _levels(data_cfg["spec"], x)
    declared = data_cfg.get("pixel_levels")
    if declared is not None:
        if kind != "image":
            raise ValueError("--levels applies to images (a folder or an (N, C, H, W) array)")
        # The folder's pixels hold `declared` levels (e.g. 17 for the 0…16 digits saved as PNG):
        # snap them onto that grid, so that bits/dim compare with data of that depth.
        levels = int(declared) - 1
        x = (x * levels).round() / levels
    # Split the row numbers (train_test_split draws its order from the seed and N alone), so that
    # labels follow their rows.
    fraction = float(data_cfg["test_fraction"])
    train_i, test_i = train_test_split(
        torch.arange(x.shape[0]), fraction, int(data_cfg["split_seed"])
    )
    gappy = x[test_i].reshape(test_i.shape[0], -1).isnan().any(1)
    if bool(gappy.any()):  # held-out rows with gaps train instead (module doc)
        train_i, test_i = torch.cat([train_i, test_i[gappy]]), test_i[~gappy]
    train, test = x[train_i], x[test_i]
    _check_split(train, test, fraction)
    split_labels = None if y is None else (y[train_i], y[test_i])
    return train, test, kind, levels, split_labels


def load_run_data(config: Mapping[str, Any]) -> DataBundle:
    """The data of a resolved run config, with its stored (not refitted) standardisation."""
    data = config["data"]
    train, test, kind, levels, labels = load_split(data)
    val = validation_index(train.shape[0], data.get("val_fraction", 0.0), data.get("val_seed", 0))
    standardizer = Standardizer.from_dict(config["standardizer"])
    return DataBundle(train, test, standardizer, kind, levels, val, dict(data), run_columns(data),
                      *(labels or (None, None)))  # fmt: skip


def load_data(options: Mapping[str, Any]) -> DataBundle:
    """Resolve the data options (``data``, ``n``, ``seed``, ``image_size``, ``levels``,
    ``test_fraction``, ``val_fraction``, ``categorical``, ``continuous``, ``keep``, ``na_values``,
    ``drop_missing``, ``transform``, ``image_channels``; absent = default),
    load and split the data, fit the standardisation and choose the validation rows.  The
    bundle's ``section`` is the config's ``data`` section."""
    seed = seed_value(options.get("seed", 0))
    spec = str(options["data"])
    path = Path(spec).expanduser()
    if spec.lower() in list_datasets():
        spec = spec.lower()
    elif path.exists():
        spec = str(path.resolve())  # the run then loads from any working directory
    image_size = options.get("image_size")
    section: dict[str, Any] = {
        "spec": spec,
        "n": check_positive_int(options["n"], "n") if "n" in options else None,
        "seed": seed,
        "image_size": None if image_size is None else check_positive_int(image_size, "image_size"),
        "pixel_levels": None if "levels" not in options else pixel_levels(options["levels"]),
        "test_fraction": fraction(options.get("test_fraction", TEST_FRACTION), "test_fraction"),
        "split_seed": seed,
    }
    chosen_val = options.get("val_fraction")
    if chosen_val is not None and not 0.0 <= float(chosen_val) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {chosen_val}")
    if spec in TOY_DATASETS and section["n"] is None:
        section["n"] = DEFAULT_TOY_SIZE
    section.update(source_section(spec, options))  # a table's columns (docs/guide.md), …
    train, test, kind, levels, labels = load_split(section)
    columns = fit_columns(section, train, options.get("transform"))  # on the training rows
    # nan-mean and nan-sd over a table's observed cells (its gaps train with the masked objective)
    standardizer = Standardizer.fit(to_model(columns, train), kind, missing=columns is not None)
    share = float(VAL_FRACTION[kind] if chosen_val is None else chosen_val)
    val_index = validation_index(train.shape[0], share, seed + 1)
    section.update(
        kind=kind,
        shape=[columns.dim] if columns is not None else list(train.shape[1:]),  # the model's
        levels=levels,
        n_train=int(train.shape[0]),
        n_test=int(test.shape[0]),
        # 0 when the training rows are too few to spare validation rows
        val_fraction=share if val_index is not None else 0.0,
        val_seed=seed + 1,
        n_val=0 if val_index is None else int(val_index.numel()),
    )
    if columns is not None and bool(train.isnan().any()):
        section["gaps"] = gap_counts(columns, train)
    return DataBundle(train, test, standardizer, kind, levels, val_index, section, columns,
                      *(labels or (None, None)))  # fmt: skip


def gap_counts(columns: ColumnCodec, train: Tensor) -> dict[str, Any]:
    """How many of the training rows have gaps, and the missing cells per column (those with
    any), for the config's ``data.gaps`` (``train`` prints it)."""
    missing = train.isnan()
    return {
        "rows": int(missing.any(1).sum()),
        "cells": {name: int(k) for name, k in zip(columns.names, missing.sum(0).tolist()) if k},
    }


def table_columns(
    spec: str,
    categorical: Any = None,
    continuous: Any = None,
    keep: Any = None,
    na_values: Any = None,
) -> ColumnCodec | None:
    """The column codec of a table file (every column's kind, :mod:`scorematch.data.columns`),
    or None for built-in sets, image folders and image arrays; ``categorical`` / ``continuous``
    name columns whose kind the user gives (``"a,b"``, a list, or 1-based indices), ``keep``
    identifier columns to model, ``na_values`` the missing-value markers."""
    if not is_table_file(spec) or (
        Path(spec).suffix.lower() in (".npy", ".npz") and load_table(spec).ndim != 2
    ):
        if categorical or continuous or keep or na_values:
            raise ValueError(
                f"--categorical/--continuous/--keep/--na-values apply to table files (.csv, "
                f".tsv, .txt, .csv.gz, .parquet, .npy, .npz), not to {spec!r}"
            )
        return None
    return ColumnCodec.from_file(spec, categorical=categorical, continuous=continuous, keep=keep,
                                 na_values=na_values)  # fmt: skip


def source_section(spec: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The data-section entries that say how ``spec`` is read: a table file's column codec (its
    config), missing-value markers and ``drop_missing``; an image folder's mode (``1`` or ``3``
    image channels: ``"L"`` / ``"RGB"``).  Options that do not apply are a ValueError."""
    out: dict[str, Any] = {}
    columns = table_columns(spec, options.get("categorical"), options.get("continuous"),
                            options.get("keep"), options.get("na_values"))  # fmt: skip
    if options.get("labels") is not None:
        labels, columns = source_labels(spec, str(options["labels"]).strip(), columns)
        out["labels"] = labels.to_config()
    if columns is not None:
        out.update(columns=columns.to_config(), na_values=columns.na_values,
                   drop_missing=bool(options.get("drop_missing")))  # fmt: skip
    elif options.get("transform") or options.get("drop_missing"):
        raise ValueError(f"--transform/--drop-missing apply to table files, not to {spec!r}")
    if options.get("image_channels") is not None:
        channels = str(options["image_channels"])
        if channels not in ("1", "3"):
            raise ValueError(f"image_channels must be 1 or 3, got {channels!r}")
        out["image_mode"] = "L" if channels == "1" else "RGB"
    return out


def source_labels(
    spec: str, labels: str, columns: ColumnCodec | None
) -> tuple[LabelCodec, ColumnCodec | None]:
    """The label codec ``--labels`` names (:mod:`scorematch.data.labels`) and the table's codec
    without the label column: a table's column, an image folder's class sub-folders or the
    digits' digit (``--labels class``)."""
    if columns is not None:
        table = read_table(spec, na_values=columns.na_values)
        codec, every = label_column(table, labels, columns.all_columns)
        return codec, ColumnCodec(every, columns.na_values)
    if labels != IMAGE_LABELS:
        raise ValueError(
            f"--labels {labels!r}: image data take --labels {IMAGE_LABELS} (the class sub-folders "
            "folder/<class>/*.png, or the digits' digit); a table's --labels names a column"
        )
    if str(spec).lower() == "digits":
        return digit_labels()[0], None
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ValueError(f"--labels applies to tables, image folders and digits, not to {spec!r}")
    return LabelCodec("folders", folder_classes(path)), None


def fit_columns(
    data_cfg: dict[str, Any], train: Tensor, transform: str | None
) -> ColumnCodec | None:
    """The table's codec with its per-column transforms learned on the ``train`` rows
    (``transform``, default ``"yeo-johnson"``), recorded in ``data_cfg["columns"]``; None for data
    that is not a table."""
    columns = run_columns(data_cfg)
    if columns is None:
        return None
    columns = columns.fit(train, transform or "yeo-johnson")
    data_cfg["columns"] = columns.to_config()
    return columns


def run_columns(data_cfg: Mapping[str, Any]) -> ColumnCodec | None:
    """The column codec a config's ``data`` section records (None: not a table, or a run made
    before columns were recorded — all continuous)."""
    columns = data_cfg.get("columns")
    return ColumnCodec.from_config(columns, data_cfg.get("na_values")) if columns else None


def data_kind(spec: str) -> str:
    """``"vector"`` or ``"image"`` for a ``--data`` value (loads it only when the name does not say)."""
    if str(spec).lower() in TOY_DATASETS:
        return "vector"
    if str(spec).lower() == "digits":
        return "image"
    return "image" if load_dataset(spec).ndim == 4 else "vector"


def dataset_table() -> list[tuple[str, str, str, str]]:
    """Rows (name, kind, size, description) of the built-in data sets."""
    rows = []
    for name, desc in list_datasets().items():
        if name in TOY_DATASETS:
            rows.append((name, "2-D points", f"{DEFAULT_TOY_SIZE} (--n)", desc.split(": ", 1)[-1]))
        else:
            rows.append((name, "8×8 images", "1797", desc))
    return rows
