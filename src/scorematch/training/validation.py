"""Model selection during training: a validation figure every few steps, the best step kept, and
early stopping when it stops improving (Prechelt 1998, "Early Stopping — But When?").

``Validation`` holds only numbers (the best value and step, how many validations since, the
history), so it is saved in every checkpoint and a resumed run makes the same choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._checks import check_positive_int

__all__ = ["ValidateFn", "Validation"]

ValidateFn = Callable[[nn.Module, int], float]  # (EMA model, step) -> figure, lower is better


@dataclass
class Validation:
    """Evaluate ``fn(ema_model, step)`` every ``every`` steps; the lowest
    value's step is the run's best, protected from checkpoint rotation.  With ``patience``, stop
    after that many validations in a row without a relative improvement of ``min_delta``.
    """

    fn: ValidateFn
    every: int
    patience: int | None = None
    min_delta: float = 0.0
    best_value: float = math.inf
    best_step: int | None = None
    since_best: int = 0
    history: list[list[float]] = field(default_factory=list)  # [step, value] rows

    def __post_init__(self) -> None:
        self.every = check_positive_int(self.every, "validate_every")
        if self.patience is not None:
            self.patience = check_positive_int(self.patience, "patience")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"min_delta must be a number >= 0, got {self.min_delta!r}")

    def due(self, step: int) -> bool:
        # On the grid only: a fit stopped between grid points and resumed validates exactly
        # where an uninterrupted run does, so both make the same choices.
        return step % self.every == 0

    def record(self, step: int, value: float) -> bool:
        """Add one validation; True when it is the new best.  A non-finite value never is."""
        value = float(value)
        self.history.append([step, value])
        margin = self.min_delta * abs(self.best_value) if math.isfinite(self.best_value) else 0.0
        if math.isfinite(value) and value < self.best_value - margin:
            self.best_value, self.best_step, self.since_best = value, step, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores (JSON)."""
        return {
            "every": self.every,
            "patience": self.patience,
            "best_value": self.best_value if math.isfinite(self.best_value) else None,
            "best_step": self.best_step,
            "since_best": self.since_best,
            "history": [[s, v if math.isfinite(v) else None] for s, v in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the numbers of ``state_dict`` (the function and its grid stay as they are)."""
        best = state.get("best_value")
        self.best_value = math.inf if best is None else float(best)
        self.best_step = state.get("best_step")
        self.since_best = int(state.get("since_best", 0))
        self.history = [
            [s, math.nan if v is None else float(v)] for s, v in state.get("history", [])
        ]
