"""What training returns or raises: ``TrainResult`` and ``TrainingDiverged``, and the integer checks
the trainer's arguments share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainResult", "TrainingDiverged", "check_int", "optional_int"]


class TrainingDiverged(ValueError):
    """The loss or the gradient norm became NaN/inf.  The bad update is not applied and nothing is
    saved after it: ``step`` is the failing step, ``checkpoint`` the newest good one on disk."""

    def __init__(self, step: int, what: str, checkpoint: Path | None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = str(checkpoint) if checkpoint is not None else "none (no checkpoint written)"
        super().__init__(f"{what} became NaN/inf at step {step}; last good checkpoint: {where}")


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


def check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def optional_int(value: object, name: str, low: int) -> int | None:
    return None if value is None else check_int(value, name, low)
