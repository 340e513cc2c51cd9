"""What several commands share: the --t-min option, output-file checks and array writing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..io import atomic_save

__all__ = ["check_out", "format_value", "save_array", "t_min_option"]

# Shared by `evaluate` and `likelihood`.
t_min_option = click.option(
    "--t-min",
    type=float,
    help="Score p_{t_min}, the density blurred by the process up to t_min (process clock; EDM: "
    "σ in standardised units). Default: the process's smallest t.",
)


def check_out(path: Path, suffixes: tuple[str, ...]) -> Path:
    """``--out PATH`` with one of ``suffixes``, in a folder that exists (a usage error if not)."""
    if path.suffix.lower() not in suffixes:
        raise click.UsageError(
            f"--out {path}: unsupported file type {path.suffix or '(none)'!r}; use {', '.join(suffixes)}"
        )
    if not path.parent.exists():
        raise click.UsageError(f"--out {path}: folder {path.parent} does not exist")
    return path


def save_array(path: Path, x: np.ndarray) -> None:
    """Write rows of ``x`` atomically: ``.npy`` as is, otherwise CSV with a header x1, x2, …"""
    if path.suffix == ".npy":
        atomic_save(path, lambda p: np.save(p, x))
    else:
        flat = x.reshape(x.shape[0], -1)
        header = ",".join(f"x{i + 1}" for i in range(flat.shape[1]))
        atomic_save(path, lambda p: np.savetxt(p, flat, delimiter=",", header=header, comments=""))


def format_value(v: Any) -> str:
    """A table cell: 4 significant digits for floats, ``n/a`` for None."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)
