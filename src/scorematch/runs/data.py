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
    Standardizer,
    image_folder_levels,
    is_table_file,
    list_datasets,
    load_dataset,
    load_table,
    to_model,
    train_test_split,
)
from .checks import fraction, pixel_levels, seed_value

__all__ = [
    "DataBundle",
    "data_kind",
    "dataset_table",
    "fit_columns",
    "load_data",
    "load_run_data",
    "load_split",
    "run_columns",
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

    def standardised(self, rows: Tensor) -> Tensor:
        """Data-unit rows in the model's standardised coordinates, T(to_model(rows))."""
        return self.standardizer.transform(to_model(self.columns, rows))

    @cached_property
    def max_distance(self) -> float:
        """The largest distance between standardised training points (on an evenly strided
        subset of at most 2000): NCSN's σ_max (Song & Ermon 2020, "Improved techniques for
        training score-based generative models", §3.1)."""
        z = self.standardised(self.train)
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
        if self.val_index is None:
            return self.train
        keep = torch.ones(self.train.shape[0], dtype=torch.bool)
        keep[self.val_index] = False
        return self.train[keep]


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


def load_split(data_cfg: Mapping[str, Any]) -> tuple[Tensor, Tensor, str, int | None]:
    """Load the data a config's ``data`` section names and split it: (train, test, kind, levels)."""
    x = load_dataset(
        data_cfg["spec"],
        n=data_cfg.get("n"),
        seed=int(data_cfg.get("seed", 0)),
        image_size=data_cfg.get("image_size"),
        mode=data_cfg.get("image_mode"),
        columns=run_columns(data_cfg),
        drop_missing=bool(data_cfg.get("drop_missing")),
    )
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
    train, test = train_test_split(x, float(data_cfg["test_fraction"]), int(data_cfg["split_seed"]))
    _check_split(train, test, float(data_cfg["test_fraction"]))
    return train, test, kind, levels


def load_run_data(config: Mapping[str, Any]) -> DataBundle:
    """The data of a resolved run config, with its stored (not refitted) standardisation."""
    data = config["data"]
    train, test, kind, levels = load_split(data)
    val = validation_index(train.shape[0], data.get("val_fraction", 0.0), data.get("val_seed", 0))
    standardizer = Standardizer.from_dict(config["standardizer"])
    return DataBundle(train, test, standardizer, kind, levels, val, dict(data), run_columns(data))


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
    train, test, kind, levels = load_split(section)
    columns = fit_columns(section, train, options.get("transform"))  # on the training rows
    standardizer = Standardizer.fit(to_model(columns, train), kind)
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
    return DataBundle(train, test, standardizer, kind, levels, val_index, section, columns)


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
