"""Noise-conditional denoising score matching: NCSN levels, continuous-time (score SDE) and EDM.

All three regress a noise-conditional model s_θ(x_t, t) on the score of the perturbation kernel,
∇log p(x_t | x₀) = −ε/σ_t for x_t = α_t x₀ + σ_t ε.  Because E[−ε/σ_t | x_t] = ∇log p_t(x_t), each
loss equals its explicit score-matching counterpart E λ ½‖s_θ − ∇log p_t‖² plus a constant free of
θ (Vincent 2011), so the exact perturbed score is the minimiser.  The losses differ in how the noise
level is drawn and weighted.

Every loss is summed over the event dimensions of a sample and reduced over the batch
(``reduction="mean" | "sum" | "none"``; "none" gives shape ``(B,)``).  Every random draw takes
``generator=``; draws happen in a fixed order (noise level, then ε), on the generator's device.
Explicit ``sigma``/``t`` and ``noise`` arguments replace the draws (for tests and for common random
numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._checks import (
    check_batch,
    check_positive,
    check_reduction,
    expand_like,
    rand,
    randint,
    randn,
)
from .._checks import reduce as _reduce
from ..processes import NoiseLevels, Process, check_process
from ._common import call_model, given_or_drawn_noise, per_sample, sq_norm

__all__ = ["WEIGHTINGS", "diffusion", "edm", "ncsn"]

ScoreModel = Callable[[Tensor, Tensor], Tensor]
WEIGHTINGS = ("sigma2", "likelihood", "importance")
_GRID_POINTS = 4096  # per half of the importance-sampling table (uniform + log-uniform nodes)


def _cells(cells: Tensor | None, x: Tensor) -> Tensor | None:
    """The entries a loss sums over, as x's dtype (None: all of them)."""
    if cells is None:
        return None
    if not isinstance(cells, Tensor) or cells.shape != x.shape or cells.dtype != torch.bool:
        got = f"{cells.dtype} {tuple(cells.shape)}" if isinstance(cells, Tensor) else type(cells)
        raise ValueError(f"cells must be booleans of x's shape {tuple(x.shape)}, got {got}")
    return cells.to(x.dtype)


def _on(cells: Tensor | None, v: Tensor) -> Tensor:
    return v if cells is None else v * cells


def _marginal(process: Process, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    alpha, sigma = process.marginal(t)
    return alpha.to(x.dtype), sigma.to(x.dtype)


# ------------------------------------------------------------------------------------------------
# NCSN
# ------------------------------------------------------------------------------------------------
def _levels(sigmas) -> Tensor:
    if isinstance(sigmas, NoiseLevels):
        return sigmas.sigmas
    if isinstance(sigmas, Process):
        raise ValueError(
            f"sigmas must be a NoiseLevels or a 1-D tensor of levels, got {type(sigmas).__name__}"
        )
    return NoiseLevels(sigmas).sigmas  # validates: non-empty, positive, finite, distinct


def ncsn(
    model: ScoreModel,
    sigmas: NoiseLevels | Tensor | Sequence[float],
    x: Tensor,
    *,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    sigma: Tensor | float | None = None,
    noise: Tensor | None = None,
    cells: Tensor | None = None,
) -> Tensor:
    """Multi-scale denoising score matching of NCSN (Song & Ermon 2019, eq. 5–6).

    Per sample, a level σ is drawn uniformly from ``sigmas``, x̃ = x + σ ε, ε ~ N(0, I), and

        ℓ = λ(σ) · ½ ‖s_θ(x̃, σ) − (x − x̃)/σ²‖²,  λ(σ) = σ²,   i.e.  ℓ = ½ ‖σ s_θ(x̃, σ) + ε‖².

    The weight λ(σ) = σ² makes every level contribute O(1) (‖σ ∇log p_σ‖ ~ √D).  The model is
    called ``model(x̃, σ)`` with σ of shape ``(B,)``; its minimiser is the score of p_σ = p ∗ N(0, σ²I)
    at every level.

    Args:
        model: noise-conditional score model.
        sigmas: the process — a ``NoiseLevels`` — or a 1-D tensor/sequence of distinct positive
            levels.
        x: clean data ``(B, *event)``.
        generator: source of the level and noise draws.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-sample, shape ``(B,)``).
        sigma: levels to use instead of drawing them (scalar or ``(B,)``).
        noise: ε to use instead of drawing it (x's shape).
        cells: booleans of x's shape: sum the loss over these entries only (the masked objective
            of ``objectives.conditional``); default all.
    """
    check_batch(x, "x")
    check_reduction(reduction)
    cells = _cells(cells, x)
    levels = _levels(sigmas)
    if sigma is None:
        idx = randint(len(levels), (x.shape[0],), generator, device=x.device)
        sigma = levels.to(device=x.device, dtype=x.dtype)[idx]
    else:
        sigma = per_sample(sigma, x, "sigma", positive=True)
    eps = given_or_drawn_noise(x, noise, generator)
    sig = expand_like(sigma, x)
    score = call_model(model, x + sig * eps, sigma)
    return _reduce(0.5 * sq_norm(_on(cells, sig * score + eps)), reduction)


# ------------------------------------------------------------------------------------------------
# Continuous-time DSM (score SDE)
# ------------------------------------------------------------------------------------------------
def _importance_table(process: Process, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Nodes, CDF and per-cell density of q(t) ∝ g(t)²/σ_t² on [t_min, t_max], float64.

    The density is integrated by the trapezoid rule on a union of uniform and log-uniform nodes (the
    log nodes resolve the 1/t-like blow-up near t_min of VP and EDM).  The sampler inverts the
    piecewise-linear CDF, so the law it draws from is exactly the piecewise-constant density
    returned here; weighting by that density keeps the estimator unbiased at any grid resolution.
    """
    t0, t1 = float(process.t_min), float(process.t_max)
    kw = dict(dtype=torch.float64, device=device)
    nodes = torch.cat(
        [
            torch.linspace(t0, t1, _GRID_POINTS, **kw),
            torch.exp(torch.linspace(math.log(t0), math.log(t1), _GRID_POINTS, **kw)),
        ]
    )
    nodes = torch.unique(nodes.clamp(t0, t1))  # sorted, no zero-width cells
    _, sigma = process.marginal(nodes)
    dens = process.diffusion(nodes).to(torch.float64) ** 2 / sigma.to(torch.float64) ** 2
    width = nodes[1:] - nodes[:-1]
    mass = 0.5 * (dens[1:] + dens[:-1]) * width
    total = mass.sum()
    if not bool(torch.isfinite(dens).all()) or not total > 0:
        raise ValueError(
            f"importance weighting needs a finite, positive g(t)²/σ_t² on [{t0}, {t1}] for {process!r}"
        )
    cdf = torch.cat([torch.zeros(1, **kw), torch.cumsum(mass, 0) / total])
    return nodes, cdf, mass / total / width


def _cell(nodes: Tensor, t: Tensor) -> Tensor:
    return (torch.searchsorted(nodes, t.contiguous(), right=True) - 1).clamp(0, nodes.numel() - 2)


def _importance_time(
    process: Process, x: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """t ~ q̃ (the tabulated q ∝ g²/σ²) by inverse CDF, and q̃(t), both ``(B,)`` in x's dtype."""
    u = rand((x.shape[0],), generator, device=x.device, dtype=torch.float64)
    nodes, cdf, density = _importance_table(process, x.device)
    i = _cell(cdf, u)
    t = nodes[i] + (u - cdf[i]) / density[i]
    t = t.clamp(process.t_min, process.t_max).to(x.dtype)
    return t, _importance_density(process, t, (nodes, density))


def _importance_density(process: Process, t: Tensor, table=None) -> Tensor:
    """q̃(t) of the importance sampler (0 outside [t_min, t_max])."""
    if table is None:
        nodes, _, density = _importance_table(process, t.device)
    else:
        nodes, density = table
    t64 = t.to(torch.float64)
    q = density[_cell(nodes, t64)]
    inside = (t64 >= nodes[0]) & (t64 <= nodes[-1])
    return torch.where(inside, q, torch.zeros_like(q)).to(t.dtype)


def diffusion(
    model: ScoreModel,
    process: Process,
    x: Tensor,
    *,
    weighting: str = "sigma2",
    generator: torch.Generator | None = None,
    t: Tensor | float | None = None,
    noise: Tensor | None = None,
    reduction: str = "mean",
    cells: Tensor | None = None,
) -> Tensor:
    """Continuous-time denoising score matching of the score SDE (Song et al. 2021, eq. 7).

    x_t = α_t x + σ_t ε, target ∇log p(x_t | x) = −ε/σ_t, and per sample

        ℓ = λ(t) · ½ ‖s_θ(x_t, t) + ε/σ_t‖²,

    an unbiased estimate of E_{t ~ U[t_min, t_max]} λ(t) · ½ E‖s_θ − ∇log p(x_t|x)‖².  ``weighting``:

    * ``"sigma2"`` — λ = σ_t² (Song et al. 2021's default): ℓ = ½‖σ_t s_θ + ε‖², O(1) at every t.
    * ``"likelihood"`` — λ = g(t)² (Song, Durkan, Murray & Ermon 2021, "Maximum Likelihood Training
      of Score-Based Diffusion Models", Thm. 1): then (t_max − t_min) · E[ℓ] + const, with the
      constant free of θ, bounds the negative log-likelihood of the SDE model (the reverse SDE
      driven by s_θ).  It does not bound the probability-flow ODE's likelihood (what
      ``log_likelihood`` computes); the two coincide only when s_θ is the exact score.
    * ``"importance"`` — the same expectation as ``"likelihood"`` with lower variance (ibid., §5):
      t is drawn from q(t) ∝ g(t)²/σ_t² and ℓ is weighted by g(t)²/(q(t)(t_max − t_min)).  q is
      tabulated and inverted numerically, so this works for any process; the weight uses the
      density the sampler really draws from, so the estimator is exactly unbiased.

    t is drawn uniformly (except "importance") in x's dtype; the model is called ``model(x_t, t)``
    with t of shape ``(B,)``.

    Args:
        model: time-conditional score model.
        process: the forward process.
        x: clean data ``(B, *event)``.
        weighting: ``"sigma2"``, ``"likelihood"`` or ``"importance"``.
        generator: source of the time and noise draws.
        t: times to use instead of drawing them (scalar or ``(B,)``); the weights stay as above.
        noise: ε to use instead of drawing it.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        cells: booleans of x's shape: sum the loss over these entries only (see ``ncsn``).
    """
    check_batch(x, "x")
    check_reduction(reduction)
    check_process(process)
    cells = _cells(cells, x)
    if weighting not in WEIGHTINGS:
        raise ValueError(
            f"unknown weighting {weighting!r}; choose one of {', '.join(map(repr, WEIGHTINGS))}"
        )
    t0, t1 = float(process.t_min), float(process.t_max)
    if not t0 < t1:
        raise ValueError(f"process {process!r} has an empty time range [{t0}, {t1}]")
    q = None
    if t is None:
        if weighting == "importance":
            t, q = _importance_time(process, x, generator)
        else:
            u = rand((x.shape[0],), generator, device=x.device, dtype=x.dtype)
            t = t0 + (t1 - t0) * u
    else:
        t = per_sample(t, x, "t", positive=False)
        if weighting == "importance":
            if bool((t < t0).any()) or bool((t > t1).any()):
                raise ValueError(
                    f"with weighting='importance', t must lie in [{t0}, {t1}], got {t.tolist()}"
                )
            q = _importance_density(process, t)
    eps = given_or_drawn_noise(x, noise, generator)
    alpha, sigma = _marginal(process, t, x)
    sig = expand_like(sigma, x)
    score = call_model(model, expand_like(alpha, x) * x + sig * eps, t)
    half_sq = 0.5 * sq_norm(_on(cells, sig * score + eps))  # = σ² · ½‖s + ε/σ‖²
    if weighting == "sigma2":
        loss = half_sq
    else:
        g2_over_s2 = process.diffusion(t).to(x.dtype) ** 2 / sigma**2
        loss = g2_over_s2 * half_sq
        if weighting == "importance":
            loss = loss / (q * (t1 - t0))
    return _reduce(loss, reduction)


# ------------------------------------------------------------------------------------------------
# EDM
# ------------------------------------------------------------------------------------------------
def edm(
    model: ScoreModel,
    process: Process,
    x: Tensor,
    *,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    sigma_data: float | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    sigma: Tensor | float | None = None,
    noise: Tensor | None = None,
    cells: Tensor | None = None,
) -> Tensor:
    """The EDM training loss (Karras et al. 2022, "Elucidating the Design Space…", §5, eq. 2/8).

    Per sample, ln σ̂ ~ N(P_mean, P_std²), x̃ = x + σ̂ ε, and

        ℓ = λ(σ̂) ‖D(x̃, σ̂) − x‖²,  λ(σ̂) = (σ̂² + σ_d²)/(σ̂ σ_d)²,

    where D is the denoiser implied by any score model through Tweedie's formula: on the rescaled
    state y = x_t/α_t = x + σ̂ ε, D = y + σ̂² ∇_y log p(y) = x_t/α_t + σ̂² α_t s(x_t, t) (x̃ + σ̂² s
    when α = 1).  No ½ factor, as in the paper and its code: with EDM preconditioning
    λ = 1/c_out², so ℓ = ‖F_θ − F_target‖² with a unit-variance target per dimension.  (ℓ equals
    2 λ σ̂⁴ α_t² times the ½-convention DSM loss at the same level.)

    Any process: σ̂ = σ_t/α_t is the scaled noise level, so σ̂ maps to t = t_of_log_snr(−2 ln σ̂),
    x_t = α_t (x + σ̂ ε) and the model is called ``model(x_t, t)``; on EDM (α = 1) t = σ̂.  Times
    outside [t_min, t_max] are clamped to the nearer end, and σ̂ is then recomputed from the clamped
    t, so every term is the exact loss at a level the model is used at (the level law gets small
    atoms at the ends: for EDM(0.002, 80) under the defaults, a probability of about 2·10⁻⁵).
    The implementation uses D − x = σ̂(ε + σ_t s), free of cancellation at small σ̂.

    Args:
        model: time-conditional score model.
        process: the forward process.
        x: clean data ``(B, *event)``.
        P_mean, P_std: log-normal law of the level (paper defaults −1.2, 1.2).
        sigma_data: σ_d; default ``process.sigma_data`` if the process states one, else 0.5.
        generator: source of the level and noise draws.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        sigma: scaled levels σ̂ to use instead of drawing them (scalar or ``(B,)``).
        noise: ε to use instead of drawing it.
        cells: booleans of x's shape: sum the loss over these entries only (see ``ncsn``).
    """
    check_batch(x, "x")
    check_reduction(reduction)
    check_process(process)
    cells = _cells(cells, x)
    if not math.isfinite(float(P_mean)):
        raise ValueError(f"P_mean must be finite, got {P_mean}")
    P_std = check_positive(P_std, "P_std")
    if sigma_data is None:
        sigma_data = process.data_scale
    sigma_data = check_positive(sigma_data, "sigma_data")
    if sigma is None:
        z = randn((x.shape[0],), generator, device=x.device, dtype=x.dtype)
        log_sigma = float(P_mean) + P_std * z
    else:
        log_sigma = per_sample(sigma, x, "sigma", positive=True).log()
    eps = given_or_drawn_noise(x, noise, generator)
    t = process.t_of_log_snr(-2 * log_sigma).to(x.dtype).clamp(process.t_min, process.t_max)
    alpha, sig_t = _marginal(process, t, x)
    sigma_hat = sig_t / alpha
    sig = expand_like(sig_t, x)
    score = call_model(model, expand_like(alpha, x) * x + sig * eps, t)
    weight = (sigma_hat**2 + sigma_data**2) / (sigma_hat * sigma_data) ** 2
    loss = (
        weight * sigma_hat**2 * sq_norm(_on(cells, eps + sig * score))
    )  # ‖D − x‖² = σ̂²‖ε + σ_t s‖²
    return _reduce(loss, reduction)
