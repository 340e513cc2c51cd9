"""The result of :meth:`Run.evaluate`: sample distances, the held-out NLL and the memorisation
figures of a run, and ``RUN/evaluation.json`` written from it (``RUN/evaluation_tmin-T.json``
for an evaluation at an explicit ``t_min = T``: :func:`evaluation_path`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..data import ColumnCodec
from ..io import atomic_write_text
from ..metrics import Memorisation
from ..run_dir import RunDir
from .config import jsonable

__all__ = ["Evaluation", "evaluation_path", "likelihood_convention", "write_evaluation"]


@dataclass
class Evaluation:
    """Samples of a run against its held-out split (data units), and the held-out NLL.

    Distances: ``sliced_wasserstein`` (256 projections), ``mmd`` (MMD², RBF kernel, median
    bandwidth), ``energy_distance``.  NLL (nats/sample, with its standard error, and bits/dim) of
    p_{t_min} on ``nll_points`` held-out rows, with how it was computed (``nll_*``); all None when
    the NLL was not asked for or the objective has no likelihood (``nll_note`` says why).
    A table with discrete columns has a discrete log-probability there (``nll_convention``);
    ``nll_log_bin_volume`` (Σ log step of those columns) converts a continuous density to compare:
    log P(bin) ≈ log p(x) + nll_log_bin_volume.  ``mmd`` and ``energy_distance`` are unbiased
    estimates: slightly negative values mean no measurable difference.  ``memorisation_*`` and
    ``copy_*``: :class:`scorematch.metrics.Memorisation` (standardised units);
    ``memorisation_warning`` is its sentence when the samples look like copies of training rows.
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
    nll_log_bin_volume: float | None = None
    memorisation_ratio: float | None = None
    memorisation_ratio_stderr: float | None = None
    sample_to_train: float | None = None
    heldout_to_train: float | None = None
    copy_threshold: float | None = None
    copy_fraction: float | None = None
    heldout_copy_fraction: float | None = None
    memorisation_warning: str | None = None
    seconds: float = 0.0
    log_prob: Tensor | None = field(default=None, repr=False)

    def set_memorisation(self, m: Memorisation) -> None:
        """Copy the memorisation figures into their fields."""
        self.memorisation_ratio, self.memorisation_ratio_stderr = m.ratio, m.ratio_stderr
        self.sample_to_train, self.heldout_to_train = m.sample_to_train, m.heldout_to_train
        self.copy_threshold, self.copy_fraction = m.copy_threshold, m.copy_fraction
        self.heldout_copy_fraction = m.heldout_copy_fraction
        self.memorisation_warning = m.warning()

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``log_prob``, as plain JSON values (None → null)."""
        return {
            f.name: jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "log_prob"
        }


def likelihood_convention(levels: int | None, columns: ColumnCodec | None) -> str:
    """What the held-out NLL is: a density, a discrete probability, or both (tables)."""
    if levels:
        return f"discrete {levels + 1}-level data, uniform dequantization"
    if columns is None or not columns.quantised:
        return "continuous density in data units"
    k = sum(c.quantised for c in columns.columns)
    if columns.all_quantised:
        return f"probability of the {k} discrete columns' values (uniform dequantization)"
    return (
        f"probability of the {k} discrete columns' values (uniform dequantization) × density of "
        f"the {len(columns) - k} continuous ones in data units"
    )


def evaluation_path(run_dir: str | Path, t_min: float | None = None) -> Path:
    """Where an evaluation is kept: ``RUN/evaluation.json`` at the run's own settings, and
    ``RUN/evaluation_tmin-T.json`` for an explicit ``t_min = T`` (``RunDir.evaluation_path``)."""
    return RunDir(run_dir).evaluation_path(t_min)


def write_evaluation(evaluation: Evaluation, path: str | Path | None = None) -> Path:
    """Write an evaluation as JSON atomically (default ``RUN/evaluation.json`` of the run it
    evaluated; :func:`evaluation_path` names the file of another setting)."""
    if path is None:
        if evaluation.run is None:
            raise ValueError("write_evaluation needs a path for a run without a directory")
        path = evaluation_path(evaluation.run)
    return atomic_write_text(Path(path), json.dumps(evaluation.to_dict(), indent=2) + "\n")
