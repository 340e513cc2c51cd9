"""The run's ``metrics.csv``, the window it averages over, and the progress bar.

``metrics.csv`` gets one row every ``log_every`` steps: the means of the loss and gradient norm
over the steps since the last row (the ``MetricsWindow``), the learning rate, the run's training
seconds and the window's speed.  The window is part of the train state, so a resumed run writes
the same rows as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..io import atomic_write_text

__all__ = ["METRIC_COLUMNS", "MetricsLog", "MetricsWindow", "format_row", "trim_metrics_file"]

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "steps_per_s")
WINDOW_FIELDS = ("loss_sum", "grad_norm_sum", "count", "start_seconds")


class MetricsWindow:
    """The sums of the steps since the last ``metrics.csv`` row, from ``start_seconds`` of
    training time on."""

    def __init__(self, start_seconds: float = 0.0) -> None:
        self.loss_sum, self.grad_norm_sum, self.count = 0.0, 0.0, 0
        self.start_seconds = start_seconds

    def add(self, loss: float, grad_norm: float) -> None:
        """Count one step's loss and gradient norm."""
        self.loss_sum += loss
        self.grad_norm_sum += grad_norm
        self.count += 1

    def row(self, step: int, lr: float, elapsed: float) -> dict[str, float]:
        """The metrics row (``METRIC_COLUMNS``) of the window ending at ``step``."""
        dt = elapsed - self.start_seconds
        return {
            "step": step,
            "loss": self.loss_sum / self.count,
            "lr": lr,
            "grad_norm": self.grad_norm_sum / self.count,
            "seconds": elapsed,
            "steps_per_s": self.count / dt if dt > 0 else float("nan"),
        }

    def state_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in WINDOW_FIELDS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in WINDOW_FIELDS:
            setattr(self, name, state[name])

    @staticmethod
    def is_valid(state: object) -> bool:
        """True when ``state`` is a window's ``state_dict`` (finite numbers): a checkpoint check."""
        return isinstance(state, dict) and all(
            isinstance(state.get(k), (int, float))
            and not isinstance(state.get(k), bool)
            and math.isfinite(state[k])
            for k in WINDOW_FIELDS
        )


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
