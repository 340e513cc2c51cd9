"""The result of :meth:`Run.evaluate`: sample distances and the held-out NLL of a run, and
``RUN/evaluation.json`` written from it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..io import atomic_write_text
from .config import jsonable

__all__ = ["Evaluation", "write_evaluation"]


@dataclass
class Evaluation:
    """Samples of a run against its held-out split (data units), and the held-out NLL.

    Distances: ``sliced_wasserstein`` (256 projections), ``mmd`` (MMD², RBF kernel, median
    bandwidth), ``energy_distance``.  NLL (nats/sample, with its standard error, and bits/dim) of
    p_{t_min} on ``nll_points`` held-out rows, with how it was computed (``nll_*``); all None when
    the NLL was not asked for or the objective has no likelihood (``nll_note`` says why).
    ``log_prob`` holds the per-row log-likelihoods (kept in memory, not written to JSON).
    """

    run: str | None
    step: int
    objective: str
    n_samples: int
    n_test: int
    sampler: str
    sampler_nfe: int
    sample_seconds: float
    nonfinite_samples: int
    sliced_wasserstein: float
    mmd: float
    energy_distance: float
    distance_rows: int | None = None  # held-out rows MMD and energy distance used (a subset)
    nll: float | None = None
    nll_stderr: float | None = None
    bits_per_dim: float | None = None
    nll_points: int | None = None
    nll_divergence: str | None = None
    nll_rtol: float | None = None
    nll_t_min: float | None = None
    nll_nfe: int | None = None
    nll_seconds: float | None = None
    nll_convention: str | None = None
    nll_note: str | None = None
    seconds: float = 0.0
    log_prob: Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``log_prob``, as plain JSON values (None → null)."""
        return {
            f.name: jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "log_prob"
        }


def write_evaluation(evaluation: Evaluation, path: str | Path | None = None) -> Path:
    """Write an evaluation as JSON atomically (default ``RUN/evaluation.json`` of the run it
    evaluated)."""
    if path is None:
        if evaluation.run is None:
            raise ValueError("write_evaluation needs a path for a run without a directory")
        path = Path(evaluation.run) / "evaluation.json"
    return atomic_write_text(Path(path), json.dumps(evaluation.to_dict(), indent=2) + "\n")
