"""The run's ``metrics.csv`` (and ``config.yaml``) and the progress bar.

``metrics.csv`` gets one row every ``log_every`` steps: the means of the loss and gradient norm
over the steps since the last row (the "window"), the learning rate, the run's training seconds
and the window's speed.  The window is part of the train state, so a resumed run writes the same
rows as an uninterrupted one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from ..io import atomic_write_text, is_temp_file

__all__ = [
    "METRIC_COLUMNS",
    "MetricsLog",
    "add_to_window",
    "format_row",
    "new_window",
    "prepare_run_dir",
    "remove_temp_files",
    "run_dir_files",
    "trim_metrics_file",
    "window_row",
]

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "steps_per_s")


def new_window(elapsed: float) -> dict[str, float]:
    """An empty window starting at ``elapsed`` training seconds."""
    return {"loss_sum": 0.0, "grad_norm_sum": 0.0, "count": 0, "start_seconds": elapsed}


def add_to_window(window: dict[str, float], loss: float, grad_norm: float) -> None:
    """Count one step's loss and gradient norm in ``window``."""
    window["loss_sum"] += loss
    window["grad_norm_sum"] += grad_norm
    window["count"] += 1


def window_row(window: dict[str, float], step: int, lr: float, elapsed: float) -> dict[str, float]:
    """The metrics row (``METRIC_COLUMNS``) of ``window`` ending at ``step``."""
    dt = elapsed - window["start_seconds"]
    return {
        "step": step,
        "loss": window["loss_sum"] / window["count"],
        "lr": lr,
        "grad_norm": window["grad_norm_sum"] / window["count"],
        "seconds": elapsed,
        "steps_per_s": window["count"] / dt if dt > 0 else float("nan"),
    }


def format_row(row: dict[str, float]) -> str:
    """One CSV line; repr keeps every bit of the floats, so rows of a resumed run equal the
    uninterrupted ones."""
    return (
        f"{row['step']},{row['loss']!r},{row['lr']!r},{row['grad_norm']!r},"
        f"{row['seconds']:.3f},{row['steps_per_s']:.4g}"
    )


def trim_metrics_file(path: Path, step: int, log_every: int) -> None:
    """Rewrite ``path`` (header first) keeping the well-formed rows up to ``step`` only: rows a
    killed run logged after its last checkpoint, and a partial end-of-fit row off the log grid,
    are replayed by the resumed run."""
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            fields = line.split(",")
            try:
                row_step = int(fields[0])
                if len(fields) != len(METRIC_COLUMNS):
                    continue
                [float(f) for f in fields[1:]]
            except ValueError:
                continue
            if row_step < step or (row_step == step and row_step % log_every == 0):
                kept.append(line + "\n")
    atomic_write_text(path, ",".join(METRIC_COLUMNS) + "\n" + "".join(kept))


def run_dir_files(config: dict[str, Any] | None) -> dict[str, str]:
    """The files a run folder starts with (name → text): ``config.yaml`` when there is a config."""
    if config is None:
        return {}
    return {"config.yaml": yaml.safe_dump(config, sort_keys=False)}


def remove_temp_files(out_dir: Path) -> None:
    """Delete what atomic writes killed mid-way left of the files a training owns: its
    ``config.yaml`` and ``metrics.csv`` and the plots in ``samples/`` (``checkpoints/`` is swept
    by rotation).  Only for the lock holder; the temporary files of readers (``evaluate``'s
    ``evaluation.json``, ``plot``'s ``plots/``) are left alone: they may be in flight."""
    owned = [p for p in out_dir.glob(".*") if p.name.startswith((".config.", ".metrics."))]
    samples = list((out_dir / "samples").glob(".*")) if (out_dir / "samples").is_dir() else []
    for entry in owned + samples:
        if is_temp_file(entry) and entry.is_file():
            entry.unlink(missing_ok=True)


def prepare_run_dir(
    out_dir: Path, config: dict[str, Any] | None, step: int, log_every: int
) -> None:
    """Create ``out_dir``, remove temporary files that a killed run left, write ``config.yaml``
    (if there is a config) and trim ``metrics.csv`` to the rows up to ``step`` (see
    ``trim_metrics_file``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out_dir)
    for name, text in run_dir_files(config).items():
        atomic_write_text(out_dir / name, text)
    trim_metrics_file(out_dir / "metrics.csv", step, log_every)


class MetricsLog:
    """The rows of one ``fit`` call: kept in ``history`` and, where this process reports (rank
    0), appended to ``path`` (if given), shown on a tqdm bar (with ``progress``) and logged at
    debug level.  Use as a context manager; ``tick`` advances the bar by one step."""

    def __init__(
        self, path: Path | None, *, total: int, initial: int, progress: bool, report: bool
    ) -> None:
        self.history: list[dict[str, float]] = []
        self.report = report
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            disable=not (progress and report),
        )
        self._file = None
        if path is not None and report:
            self._file = open(path, "a", encoding="utf-8", newline="")

    def tick(self) -> None:
        self._bar.update(1)

    def write(self, row: dict[str, float]) -> None:
        self.history.append(row)
        if self._file is not None:
            self._file.write(format_row(row) + "\n")
            self._file.flush()
        self._bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.3g}", refresh=False)
        if self.report:
            logger.debug(
                "step %d loss %.6g lr %.3g grad_norm %.4g",
                row["step"],
                row["loss"],
                row["lr"],
                row["grad_norm"],
            )

    def close(self) -> None:
        self._bar.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
