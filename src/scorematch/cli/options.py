"""What several commands share: the --device, --t-min, --checkpoint and column options (and
train's --precision, --compile, --grad-accum), loading a run and the line that says which
checkpoint it used, output-file checks, array and table writing, and the table of a data file's
columns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..data import ColumnCodec, write_csv
from ..devices import DEVICE_CHOICES
from ..io import atomic_save
from ..runs import Run, load_run
from ..runs.execution import start
from ..runs.run import EVALUATE_RTOL
from ..runs.tuning import GRID_CHOICES
from ..training.precision import PRECISIONS

__all__ = [
    "CSV_DIGITS",
    "categorical_option",
    "check_out",
    "checkpoint_line",
    "checkpoint_option",
    "column_lines",
    "continuous_option",
    "device_option",
    "divergence_option",
    "format_value",
    "grid_option",
    "keep_option",
    "na_values_option",
    "open_run",
    "rtol_option",
    "save_array",
    "shows_bits_per_dim",
    "speed_options",
    "t_min_option",
]

CSV_DIGITS = 7  # significant digits of continuous values in CSV output (float32 holds ~7)
# Shared by every command that computes (train, sample, evaluate, likelihood, plot, demo).
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar=DEVICE_CHOICES,
    help="Where to compute: auto = CUDA when available, else the CPU. Under torchrun each "
    "process uses cuda:LOCAL_RANK (or the CPU). A run trained on one device loads on any other.",
)


def speed_options(command):
    """train's --precision, --compile/--no-compile and --grad-accum (None: fp32, off, 1 for a new
    run; a resumed run keeps its own)."""
    options = (
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS, case_sensitive=False),
            help="fp32 (default), or bf16/fp16 autocast of the network (fp16 with a gradient "
            "scaler); weights, optimizer and the loss's sums stay float32. --resume: the run's.",
        ),
        click.option(
            "--compile/--no-compile",
            "compile_network",
            default=None,
            help="torch.compile the network (first-order objectives: dsm, esm, ncsn, diffusion, edm). "
            "Off by default: on CPU compiling took 24 s (MLP) and 80 s (U-Net) to save 7 % and "
            "14 % of a step (benchmarks/results/scale.md). --resume: the run's.",
        ),
        click.option(
            "--grad-accum",
            type=int,
            metavar="K",
            help="Split each batch into K micro-batches, one optimizer step per batch: the "
            "update of the whole batch in 1/K of the memory (default 1). --resume: the run's.",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


# Shared by `evaluate` and `likelihood`.
t_min_option = click.option(
    "--t-min",
    type=float,
    help="Score p_{t_min}, the density blurred by the process up to t_min (process clock; EDM: "
    "σ in standardised units). Default: the t_min chosen on the validation rows at training, "
    "else the process's smallest t.",
)


# Shared by `train` and `datasets FILE`.
categorical_option = click.option(
    "--categorical",
    help="Table files: columns (names or 1-based indices, comma-separated) to treat as "
    "categorical labels. Columns with text cells are categorical anyway.",
)
continuous_option = click.option(
    "--continuous",
    help="Table files: columns to treat as continuous, whatever their values (no dequantisation).",
)
keep_option = click.option(
    "--keep",
    metavar="COLS",
    help="Table files: identifier columns (a distinct value in nearly every row: row numbers, "
    "names) to model anyway; they are left out by default.",
)
na_values_option = click.option(
    "--na-values",
    metavar="LIST",
    help='Table files: the cells that mean "missing", comma-separated (default: NA, N/A, NaN, '
    "nan, NULL, ?, - and the empty cell, which is always missing).",
)


# Shared by `evaluate` and `likelihood`: how the probability-flow likelihood is integrated.
divergence_option = click.option(
    "--exact/--hutchinson",
    "exact",
    default=None,
    help="Divergence of the likelihood: exact trace (default up to 16 dimensions) or "
    "Hutchinson's estimate.",
)
rtol_option = click.option(
    "--rtol",
    type=float,
    default=EVALUATE_RTOL,
    show_default=True,
    help="Relative (and absolute) tolerance of the likelihood's ODE solver.",
)

# Shared by `sample` and `evaluate`: whether a grid fitted by `scorematch tune` is used.
grid_option = click.option(
    "--grid",
    type=click.Choice(GRID_CHOICES, case_sensitive=False),
    default="auto",
    show_default=True,
    help="auto: the grid `scorematch tune` fitted to this checkpoint for the sampler and NFE "
    "when the run has one (a line says so), else the sampler's default grid; tuned: that grid "
    "or an error; default: the default grid.",
)

checkpoint_option = click.option(
    "--checkpoint",
    default=None,
    metavar="STEP|best|last",
    help="Which checkpoint to use (default: the run's model — the step chosen on validation, or "
    "the last step of a run without validation or with a fixed --steps).",
)


def open_run(run_dir: Path, checkpoint: str | None, device: str = "auto") -> Run:
    """``load_run`` with the checkpoint ``--checkpoint`` names (None: the run's model) onto
    ``--device``; under torchrun after joining the process group, so that the run's sampling and
    likelihood are split over the ranks."""
    return load_run(run_dir, checkpoint=checkpoint, device=start(device).device)


def checkpoint_line(run: Run, choice: str | None) -> str:
    """One line saying which checkpoint a command used and why (``choice``: its --checkpoint)."""
    members = (run.config.get("ensemble") or {}).get("members")
    if members:
        return f"checkpoint: an ensemble of {len(members)} runs' models (config.yaml: ensemble)"
    if choice is not None:
        why = f"--checkpoint {choice}"
    elif run.config["training"].get("model") == "best" and run.selection:
        why = (
            "the run's model, trained again on all rows for the steps chosen on validation"
            if run.selection.get("refit")
            else "the run's model, lowest validation loss"
        )
    else:
        why = "the run's model, its last step"
    return f"checkpoint: step {run.step} ({why})"


def check_out(path: Path, suffixes: tuple[str, ...], option: str = "--out") -> Path:
    """``--out PATH`` with one of ``suffixes``; its folder is created when missing (a usage error
    when a file stands in the way)."""
    if path.suffix.lower() not in suffixes:
        raise click.UsageError(
            f"{option} {path}: unsupported file type {path.suffix or '(none)'!r}; use "
            f"{', '.join(suffixes)}"
        )
    blocked = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), None)
    if blocked is not None:
        raise click.UsageError(f"{option} {path}: {blocked} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_array(
    path: Path,
    x: np.ndarray,
    *,
    columns: ColumnCodec | None = None,
    header: list[str] | None = None,
) -> None:
    """Write rows of ``x`` atomically: ``.npy`` as is, otherwise CSV with a header — the
    table's column names with its values (discrete columns on their grid, categoricals as labels)
    when ``columns`` is given, else ``header`` or x1, x2, …, with 7 significant digits."""
    if path.suffix == ".npy":
        atomic_save(path, lambda p: np.save(p, x))
        return
    flat = x.reshape(x.shape[0], -1)
    if columns is not None:
        write_csv(path, columns.names, columns.format_rows(flat, CSV_DIGITS))
        return
    names = header or [f"x{i + 1}" for i in range(flat.shape[1])]
    write_csv(path, names, [[f"{v:.{CSV_DIGITS}g}" for v in row] for row in flat.tolist()])


def column_lines(codec: ColumnCodec, what: str) -> list[str]:
    """A compact table of what was decided per column (index, name, kind, values — why)."""
    rows = [("#", "name", "kind", "values"), *codec.describe()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"columns of {what}:"]
    for r in rows:
        lines.append("  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    if codec.quantised:
        lines.append(
            "  discrete, binary and categorical columns are dequantised in training (uniform "
            "noise over each value's bin) and rounded back on `sample`"
        )
    return lines


def format_value(v: Any) -> str:
    """A table cell: 4 significant digits for floats, ``n/a`` for None."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def shows_bits_per_dim(run: Any) -> bool:
    """Bits/dim mean something for discrete data only: quantised images (grey levels) and tables
    whose every column is discrete; for continuous data they depend on the units, so commands do
    not print them (``evaluation.json`` keeps the field)."""
    columns = run.columns
    return bool(run.config["data"].get("levels")) or (columns is not None and columns.all_quantised)
