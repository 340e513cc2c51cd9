"""The result of :meth:`Run.evaluate`: sample distances, the held-out NLL and the memorisation
figures of a run, and ``RUN/evaluation.json`` written from it (``RUN/evaluation_tmin-T.json``
for an evaluation at an explicit ``t_min = T``: :func:`evaluation_path`)."""

from __future__ import annotations

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
from .oracle import OracleComparison
from .verdict import Verdict

__all__ = [
    "Evaluation",
    "HeldOutNLL",
    "SampleFigures",
    "evaluation_path",
    "likelihood_convention",
    "write_evaluation",
]


@dataclass(frozen=True)
class SampleFigures:
    """Samples of a run against its held-out split (data units): ``n`` samples drawn by
    ``sampler`` in ``nfe`` model evaluations and ``seconds``, ``nonfinite`` of them not finite;
    ``sliced_wasserstein`` (256 projections), ``mmd`` (MMD², RBF kernel, median bandwidth) and
    ``energy_distance`` — the last two unbiased estimates (slightly negative values mean no
    measurable difference), on ``distance_rows`` held-out rows (a subset); ``grid`` is
    ``"tuned"`` when the sampler ran on a grid fitted by ``scorematch tune``, else
    ``"default"``, and ``grid_note`` the line saying so (not written to JSON)."""

    sampler: str
    nfe: int
    seconds: float
    n: int
    nonfinite: int
    sliced_wasserstein: float
    mmd: float
    energy_distance: float
    distance_rows: int | None = None
    grid: str = "default"
    grid_note: str | None = None


@dataclass(frozen=True)
class HeldOutNLL:
    """The held-out NLL (nats/sample, with its standard error, and bits/dim) of p_{t_min} on
    ``points`` held-out rows, and how it was computed (divergence, ODE tolerance, t_min, NFE,
    seconds).  ``convention`` says what it is: a density, a discrete probability, or both (a
    table); ``log_bin_volume`` (Σ log step of a table's discrete columns, None otherwise)
    converts a continuous density to compare: log P(bin) ≈ log p(x) + log_bin_volume."""

    nll: float
    stderr: float
    bits_per_dim: float
    points: int
    divergence: str
    rtol: float
    t_min: float
    nfe: int
    seconds: float
    convention: str
    log_bin_volume: float | None = None


@dataclass
class Evaluation:
    """Samples of a run against its held-out split (data units), the held-out NLL and the
    memorisation figures — each group set at once: ``samples`` (:class:`SampleFigures`),
    ``likelihood`` (:class:`HeldOutNLL`; None when it was not asked for or the objective has no
    likelihood, and ``nll_note`` says why), ``memorisation``
    (:class:`scorematch.metrics.Memorisation`, standardised units), and where the data's law is
    known exactly ``oracle`` (:class:`~.oracle.OracleComparison`: Fisher divergence to the true
    score, mixture error of the samples, NLL gap to the true density); for vector data
    ``verdict`` (:class:`~.verdict.Verdict`: the figures beside a Gaussian mixture's and the
    training rows', each judged).  ``log_prob`` holds the
    per-row log-likelihoods (kept in memory, not written to JSON).  :meth:`to_dict` gives the flat
    record of ``evaluation.json`` (``nll_*``, ``memorisation_*``, ``copy_*``, …)."""

    run: str | None
    step: int
    objective: str
    n_test: int
    samples: SampleFigures
    likelihood: HeldOutNLL | None = None
    nll_note: str | None = None
    memorisation: Memorisation | None = None
    seconds: float = 0.0
    log_prob: Tensor | None = field(default=None, repr=False)
    oracle: OracleComparison | None = None
    verdict: Verdict | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON record (every value plain; None → null)."""
        s, nll, m = self.samples, self.likelihood, self.memorisation
        record: dict[str, Any] = {
            "run": self.run,
            "step": self.step,
            "objective": self.objective,
            "n_samples": s.n,
            "n_test": self.n_test,
            "sampler": s.sampler,
            "sampler_nfe": s.nfe,
            "sampler_grid": s.grid,
            "sample_seconds": s.seconds,
            "nonfinite_samples": s.nonfinite,
            "sliced_wasserstein": s.sliced_wasserstein,
            "mmd": s.mmd,
            "energy_distance": s.energy_distance,
            "distance_rows": s.distance_rows,
        }
        for name in _NLL_FIELDS:
            record[_NLL_KEYS.get(name, f"nll_{name}")] = None if nll is None else getattr(nll, name)
        record["nll_note"] = self.nll_note
        record["nll_log_bin_volume"] = None if nll is None else nll.log_bin_volume
        for key, name in _MEMORISATION_KEYS.items():
            record[key] = None if m is None else getattr(m, name)
        record["memorisation_warning"] = None if m is None else m.warning()
        record.update(self.oracle.to_dict() if self.oracle else {"true_density": None})
        record["verdict"] = None if self.verdict is None else self.verdict.to_dict()
        record["seconds"] = self.seconds
        return jsonable(record)


# The flat names of evaluation.json, in its order.
_NLL_FIELDS = (
    "nll",
    "stderr",
    "bits_per_dim",
    "points",
    "divergence",
    "rtol",
    "t_min",
    "nfe",
    "seconds",
    "convention",
)
_NLL_KEYS = {"nll": "nll", "bits_per_dim": "bits_per_dim"}
_MEMORISATION_KEYS = {
    "memorisation_ratio": "ratio",
    "memorisation_ratio_stderr": "ratio_stderr",
    "sample_to_train": "sample_to_train",
    "heldout_to_train": "heldout_to_train",
    "copy_threshold": "copy_threshold",
    "copy_fraction": "copy_fraction",
    "heldout_copy_fraction": "heldout_copy_fraction",
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
