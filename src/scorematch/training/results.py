"""What ``Trainer.fit`` returns: ``TrainResult``.  (What it raises, ``TrainingDiverged`` and
``TrainingInterrupted``, is in :mod:`.stops`.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns: the global step reached, the last logged mean loss, the rows
    logged during this call (``METRIC_COLUMNS``), the newest checkpoint, the run's total training
    time in seconds (summed over resumed segments), and with validation the best step and whether
    early stopping ended the run."""

    step: int
    loss: float
    history: list[dict[str, float]] = field(repr=False)
    checkpoint: Path | None
    seconds: float
    best_step: int | None = None  # with validation: the step of the lowest validation figure
    stopped_early: bool = False  # with patience: the run stopped before ``steps``
