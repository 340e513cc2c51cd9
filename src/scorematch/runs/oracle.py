"""A run against the law its data came from, where that law is known exactly.

The built-in mixture sets (``scorematch.data.TOY_MIXTURES``) are samples of a known
``GaussianMixture``, and a user of the Python API may pass one (in data units) for their own data.
Then the learned score can be put beside the true one, and the run measured in three ways
(``compare_with_mixture``; ``evaluate`` writes them into ``evaluation.json``):

- the Fisher divergence F = E_{p_t}‖s_θ(z, t) − ∇log p_t(z)‖² (``metrics.fisher_divergence``) at
  the data and, for time-conditional models, at a few noise levels t (``comparison_levels``);
- ``metrics.mixture_error`` of the samples (mode weights, per-mode Bures error);
- the exact NLL gap to the true density (``metrics.nll_gap``): to the clean density, and to
  p_{t_min}, the true density blurred as the model's own density is read.

Units: the model learns the score of the standardised data z = T(x) = a·x + b on the process's
clock; T is affine, so the law of z is the mixture's affine image (``GaussianMixture.affine``) and
the scores, Fisher divergences and pictures are compared there.  Samples and densities are
compared in data units (the blurred law p_{t_min} mapped back by T⁻¹).

``esm_target`` gives ``--objective esm`` its regression target, the score of the standardised
(and, at ``--sigma`` σ, blurred) mixture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import TOY_MIXTURES, Standardizer, toy_mixture
from ..distributions import GaussianMixture
from ..metrics import fisher_divergence, mixture_error, nll_gap
from ..plots import energy_density, score_comparison
from ..processes import NoiseLevels, Process
from .config import TIME_CONDITIONAL, require_known_score
from .data import run_columns

__all__ = [
    "NOISE_LEVELS",
    "FisherAt",
    "Level",
    "OracleComparison",
    "TrueNLL",
    "compare_with_mixture",
    "comparison_levels",
    "describe_source",
    "esm_target",
    "known_mixture",
    "oracle_plots",
    "standardised_mixture",
    "true_nll",
]

# The noise levels σ/α (standardised units) at which time-conditional models are also compared,
# beside the data (t_min): a light blur and one of half the data's spread.
NOISE_LEVELS = (0.1, 0.5)
FISHER_POINTS = 4096  # exact samples of p_t per level


# ------------------------------------------------------------------------------------------------
# Which law, in which units
# ------------------------------------------------------------------------------------------------
def known_mixture(
    config: Mapping[str, Any], mixture: GaussianMixture | None = None
) -> GaussianMixture | None:
    """The law of a run's data in data units: ``mixture`` when given (checked against the run's
    data), else the exact law of a built-in mixture set, else None."""
    data = config["data"]
    if mixture is None:
        spec = str(data["spec"])
        return toy_mixture(spec) if spec in TOY_MIXTURES else None
    if not isinstance(mixture, GaussianMixture):
        raise ValueError(
            f"mixture must be a scorematch.GaussianMixture, got {type(mixture).__name__}"
        )
    shape = tuple(data["shape"])
    if data.get("kind") != "vector" or len(shape) != 1 or mixture.dim != shape[0]:
        raise ValueError(
            f"the mixture has {mixture.dim} dimensions but the run's data have shape {shape}; "
            "a known mixture applies to vector data of its own dimension"
        )
    columns = run_columns(data)
    if columns is not None and columns.quantised:
        raise ValueError(
            "a GaussianMixture is a continuous density, but this table has discrete columns "
            "(dequantised in training); compare it on continuous data only"
        )
    return mixture.to(dtype=torch.float64)


def standardised_mixture(mixture: GaussianMixture, standardizer: Standardizer) -> GaussianMixture:
    """The law of z = T(x) for x ~ ``mixture``: its image under the run's standardisation."""
    a, b = standardizer.affine()
    return mixture.to(dtype=torch.float64).affine(a.reshape(-1), b.reshape(-1))


def _to_data_units(law_z: GaussianMixture, standardizer: Standardizer) -> GaussianMixture:
    """The law of T⁻¹(z) for z ~ ``law_z``."""
    a, b = standardizer.affine()
    a, b = a.reshape(-1), b.reshape(-1)
    return law_z.affine(1.0 / a, -b / a)


def esm_target(config: Mapping[str, Any]) -> Callable[[Tensor], Tensor]:
    """``--objective esm``'s target: the exact score of the run's standardised data, blurred at
    the objective's σ (the law of z + σε), as a function ``score(z)``."""
    require_known_score(config["data"]["spec"])
    law = standardised_mixture(
        known_mixture(config), Standardizer.from_dict(config["standardizer"])
    )
    sigma = float(config["objective"].get("sigma", 0.0))
    return law.perturbed(1.0, sigma).score if sigma > 0 else law.score


# ------------------------------------------------------------------------------------------------
# Where to compare
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """One comparison: ``t`` the time the model is called at (None: an unconditional model) and
    ``noise`` = σ_t/α_t of the compared law in standardised units (0: the data)."""

    label: str
    t: float | None
    noise: float


def comparison_levels(config: Mapping[str, Any], process: Process | None) -> list[Level]:
    """Where a run is compared with the truth.

    An unconditional objective learned one score: it is compared at the data (σ = 0) and, when
    it was trained at a noise level σ > 0, with the blurred law it targets, ∇log p_σ.  A
    time-conditional model is compared at t_min (the data, as samplers end there) and where
    σ_t/α_t = ``NOISE_LEVELS`` (NCSN: its nearest trained levels).
    """
    if config["objective"]["name"] not in TIME_CONDITIONAL:
        levels = [Level("data", None, 0.0)]
        sigma = float(config["objective"].get("sigma", 0.0))
        if sigma > 0 and not config.get("ensemble"):  # an ensemble's members differ in σ
            levels.append(Level(f"σ = {sigma:g} (its target)", None, sigma))
        return levels
    times = [float(process.t_min)]
    for noise in NOISE_LEVELS:
        if isinstance(process, NoiseLevels):
            t = float(process.sigmas[(process.sigmas.log() - math.log(noise)).abs().argmin()])
        else:
            t = float(process.t_of_log_snr(torch.tensor(-2 * math.log(noise), dtype=torch.float64)))
            t = min(max(t, float(process.t_min)), float(process.t_max))
        times.append(t)
    out = []
    for t in sorted(set(times)):
        alpha, sigma = (float(v) for v in process.marginal(torch.tensor(t, dtype=torch.float64)))
        label = "data (t_min)" if t == times[0] else f"σ/α = {sigma / alpha:.3g}"
        out.append(Level(f"{label}, t = {t:.4g}", t, sigma / alpha))
    return out


class _AtEveryTime(nn.Module):
    """An unconditional score model called as ``model(x, t)``: t is ignored."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        return self.model(x)


# ------------------------------------------------------------------------------------------------
# The figures
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FisherAt:
    """F = E_{p_t}‖s_θ − ∇log p_t‖² at one ``Level`` (standardised units), its Monte Carlo
    standard error, ``scale`` = E‖∇log p_t‖² and ``relative`` = F / scale, on ``n`` exact samples."""

    label: str
    t: float | None
    noise: float
    fisher: float
    stderr: float
    scale: float
    relative: float
    n: int


@dataclass(frozen=True)
class TrueNLL:
    """The model's NLL (data units) against the exact one on the same ``points`` rows: ``nll_true``
    of the clean density and ``gap`` = NLL_model − NLL_true (an estimate of KL(p ‖ p_θ) on held-out
    samples of p), with its paired ``stderr``; the same against p_{t_min}, the true density
    blurred as the model's density is read (``gap_t_min``: what remains beside the bandwidth)."""

    points: int
    nll: float
    nll_true: float
    gap: float
    stderr: float
    t_min: float
    nll_true_t_min: float
    gap_t_min: float
    stderr_t_min: float


@dataclass(frozen=True)
class OracleComparison:
    """A run against its data's known law: ``fisher`` per level, ``samples`` (the dict of
    ``metrics.mixture_error``, data units) and ``nll`` (:class:`TrueNLL`, None without a
    likelihood).  ``source`` says where the law came from."""

    source: str
    fisher: tuple[FisherAt, ...]
    samples: dict[str, float]
    nll: TrueNLL | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keys this adds to ``evaluation.json``."""
        s = self.samples
        return {
            "true_density": self.source,
            "fisher_divergence": [asdict(f) for f in self.fisher],
            "mixture_weight_error": s["weight_error"],
            "mixture_weight_error_exact": s["weight_error_exact"],
            "mixture_bures_excess": s["bures_excess"],
            "mixture_bures_noise": s["bures_noise"],
            "mixture_total": s["total"],
            **{
                f"true_nll_{f.name}": None if self.nll is None else getattr(self.nll, f.name)
                for f in fields(TrueNLL)
            },
        }


def _fisher(model: nn.Module, law_z: GaussianMixture, process, level: Level, seed: int) -> FisherAt:
    gen = torch.Generator().manual_seed(int(seed))
    if level.t is None:  # an unconditional score against the clean or σ-blurred law
        law = law_z.perturbed(1.0, level.noise) if level.noise > 0 else law_z
        out = fisher_divergence(model, law, n=FISHER_POINTS, generator=gen)
    else:
        out = fisher_divergence(
            model, law_z, process=process, t=level.t, n=FISHER_POINTS, generator=gen
        )
    return FisherAt(
        level.label,
        level.t,
        level.noise,
        out["fisher"],
        out["stderr"],
        out["scale"],
        out["relative"],
        out["n"],
    )


def true_nll(
    log_prob: Tensor,
    x: Tensor,
    mixture: GaussianMixture,
    standardizer: Standardizer,
    process: Process,
    t_min: float,
) -> TrueNLL:
    """The model's log-densities ``log_prob`` (data units, at ``t_min``) of rows ``x`` against the
    exact density of ``mixture`` (data units) and against its blur to ``t_min`` by ``process``
    (which acts on the standardised data): ``metrics.nll_gap`` for both."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    clean = nll_gap(log_prob, x, mixture)
    alpha, sigma = (
        float(v) for v in process.marginal(torch.tensor(float(t_min), dtype=torch.float64))
    )
    blurred = _to_data_units(
        standardised_mixture(mixture, standardizer).perturbed(alpha, sigma), standardizer
    )
    at_t = nll_gap(log_prob, x, blurred)
    return TrueNLL(
        points=clean["n"],
        nll=clean["nll"],
        nll_true=clean["nll_true"],
        gap=clean["gap"],
        stderr=clean["stderr"],
        t_min=float(t_min),
        nll_true_t_min=at_t["nll_true"],
        gap_t_min=at_t["gap"],
        stderr_t_min=at_t["stderr"],
    )


def compare_with_mixture(
    mixture: GaussianMixture,
    config: Mapping[str, Any],
    model: nn.Module,
    process: Process | None,
    standardizer: Standardizer,
    samples: Tensor,
    *,
    log_prob: Tensor | None = None,
    rows: Tensor | None = None,
    t_min: float | None = None,
    source: str = "",
    seed: int = 0,
) -> OracleComparison:
    """Measure a run (its ``config``, score ``model`` on standardised data, ``process`` and
    ``standardizer``) against ``mixture``, the law of its data in data units: the Fisher
    divergence at each of ``comparison_levels``, ``mixture_error`` of ``samples`` (data units)
    and, given the model's ``log_prob`` of ``rows`` at ``t_min``, the exact NLL gap."""
    law_z = standardised_mixture(mixture, standardizer)
    model_z = model if config["objective"]["name"] in TIME_CONDITIONAL else _AtEveryTime(model)
    fisher = tuple(
        _fisher(model_z, law_z, process, level, seed + i)
        for i, level in enumerate(comparison_levels(config, process))
    )
    gen = torch.Generator().manual_seed(int(seed))
    errors = mixture_error(samples.reshape(samples.shape[0], -1).cpu(), mixture, generator=gen)
    nll = None
    if log_prob is not None and rows is not None and t_min is not None:
        nll = true_nll(log_prob, rows, mixture, standardizer, process, t_min)
    return OracleComparison(source or "a GaussianMixture", fisher, errors, nll)


def describe_source(config: Mapping[str, Any], given: bool) -> str:
    """Where the known law of a run's data came from, in words."""
    return "the GaussianMixture given" if given else f"the built-in set {config['data']['spec']!r}"


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------
def oracle_plots(
    mixture: GaussianMixture | None,
    config: Mapping[str, Any],
    model: nn.Module,
    process: Process | None,
    standardizer: Standardizer,
    folder: Path,
    *,
    data: Tensor | None = None,
    step: int = 0,
) -> list[Path]:
    """The pictures of a 2-D run against the truth, in standardised units: ``score_comparison.png``
    (learned field, true field and ‖s_θ − ∇log p_t‖ at each comparison level) when ``mixture`` is
    known, and for an energy model ``energy_density.png`` (E, e^{−E}/Z with Z by quadrature, and
    the true density it targets when known; else the held-out ``data``, in data units)."""
    paths: list[Path] = []
    objective = config["objective"]["name"]
    sigma = float(config["objective"].get("sigma", 0.0) or 0.0)
    law_z = None if mixture is None else standardised_mixture(mixture, standardizer)
    if law_z is not None:
        levels = comparison_levels(config, process)
        title = f"{objective}, step {step}: learned score beside the true one (standardised units)"
        path = folder / "score_comparison.png"
        if len(levels) == 1 and levels[0].t is None:  # one score, against the clean law
            shown = score_comparison(_AtEveryTime(model), law_z, path, title=title)
        elif levels[0].t is None:  # one score, against the clean and the σ-blurred law: a σ clock
            clock = NoiseLevels([levels[-1].noise])
            times = [level.noise for level in levels]
            shown = score_comparison(
                _AtEveryTime(model), law_z, path, process=clock, times=times, title=title
            )
        else:
            times = [level.t for level in levels]
            shown = score_comparison(model, law_z, path, process=process, times=times, title=title)
        paths.append(shown)
    if config["model"]["name"] == "energy-mlp":
        target = None if law_z is None else (law_z.perturbed(1.0, sigma) if sigma > 0 else law_z)
        z = None if data is None or target is not None else standardizer.transform(data.double())
        what = (
            ""
            if target is None
            else (f", true density blurred at σ = {sigma:g}" if sigma > 0 else ", true density")
        )
        title = f"energy model ({objective}), step {step}{what} (standardised units)"
        paths.append(
            energy_density(
                model, folder / "energy_density.png", mixture=target, data=z, title=title
            )
        )
    return paths
