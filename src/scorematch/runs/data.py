"""The data of a run: loading the set a config names, its seeded train/test split, and the table of
built-in sets that ``scorematch datasets`` prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..data import (
    DEFAULT_TOY_SIZE,
    TOY_DATASETS,
    Standardizer,
    image_folder_levels,
    list_datasets,
    load_dataset,
    train_test_split,
)

__all__ = ["DataBundle", "data_kind", "dataset_table", "load_run_data", "load_split"]


@dataclass
class DataBundle:
    """The data of a run: train and test splits in data units, and the fitted standardisation."""

    train: Tensor
    test: Tensor
    standardizer: Standardizer
    kind: str  # "vector" or "image"
    levels: int | None  # number of grey levels − 1 of quantised image data (digits: 16), or None


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
    )
    kind = "image" if x.ndim == 4 else "vector"
    train, test = train_test_split(x, float(data_cfg["test_fraction"]), int(data_cfg["split_seed"]))
    _check_split(train, test, float(data_cfg["test_fraction"]))
    return train, test, kind, _levels(data_cfg["spec"], x)


def load_run_data(config: Mapping[str, Any]) -> DataBundle:
    """The data of a resolved run config, with its stored (not refitted) standardisation."""
    train, test, kind, levels = load_split(config["data"])
    return DataBundle(train, test, Standardizer.from_dict(config["standardizer"]), kind, levels)


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
