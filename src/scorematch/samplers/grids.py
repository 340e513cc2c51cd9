"""Time grids for samplers: decreasing times t_0 = t_max > … > t_N = t_min, N = steps.

Each grid is a function ``grid(process, steps) -> Tensor (steps + 1,)`` on the process's own clock,
so one sampler runs on any process with any grid.  Non-uniform grids are laid out in the scaled
noise level σ̂ = σ_t/α_t (the noise level of x_t/α_t) or in the log-SNR λ = −2 log σ̂ and mapped back
to t through the process's closed-form inverse ``t_of_log_snr``.

Named grids: ``uniform``, ``edm_rho``, ``log_snr``, ``few_step`` (DPM-Solver's few-step grid),
``dpm_recipe`` (DPM-Solver's default, in the data's scale, by the step count) and ``levels``
(a ``NoiseLevels`` process's own levels).

``resolve`` turns a sampler's ``grid``/``steps``/``denoise`` into the one explicit tensor the sampler
runs on: ``"auto"`` is ``process.default_grid(family)`` (the one meaning of "auto", stated per
process), and a grid ending exactly at t = 0 means "the last step is x̂₀" — the convention of
k-diffusion's and EDM's grids; ``denoise=True`` appends that 0 to a grid that lacks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_positive, check_positive_int
from ..processes import NoiseLevels

__all__ = [
    "dpm_recipe",
    "edm_rho",
    "few_step",
    "levels",
    "log_snr",
    "make_grid",
    "recipe_range",
    "resolve",
    "t_of_sigma",
    "uniform",
]

# DPM-Solver's few-step recipe, in units of σ_data: its first stop and its end (benchmarks/samplers.py)
FEW_STEP_JUMP, FEW_STEP_END = 10.0, 0.1
# dpm_recipe, in units of σ_data: the first stop and the end at 4 steps (recipe_range)
RECIPE_JUMP, RECIPE_END = 2.0, 0.1


def _ends(process, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    lo = process.t_min if t_min is None else float(t_min)
    hi = process.t_max if t_max is None else float(t_max)
    if not lo < hi:
        raise ValueError(f"need t_min < t_max, got {lo} and {hi}")
    return lo, hi


def uniform(
    process,
    steps: int,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Equally spaced times from t_max down to t_min (the score-SDE samplers' grid)."""
    lo, hi = _ends(process, t_min, t_max)
    return torch.linspace(
        hi, lo, check_positive_int(steps, "steps") + 1, device=device, dtype=dtype
    )


def edm_rho(
    process,
    steps: int,
    *,
    rho: float = 7.0,
    t_min: float | None = None,
    t_max: float | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Karras et al. 2022, eq. 5: σ̂_i = (σ̂_max^{1/ρ} + i/N (σ̂_min^{1/ρ} − σ̂_max^{1/ρ}))^ρ.

    ρ = 7 spends most steps at low noise; ρ = 1 is uniform in σ̂, ρ → ∞ uniform in log σ̂.
    """
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    lo, hi = _ends(process, t_min, t_max)
    n = check_positive_int(steps, "steps")
    ends = torch.tensor([hi, lo], dtype=torch.float64)
    alpha, sigma = process.marginal(ends)
    s_hi, s_lo = (sigma / alpha).tolist()
    i = torch.linspace(0, 1, n + 1, dtype=torch.float64)
    s = (s_hi ** (1 / rho) + i * (s_lo ** (1 / rho) - s_hi ** (1 / rho))) ** rho
    t = process.t_of_log_snr(-2 * s.log())
    t[0], t[-1] = hi, lo  # exact end points despite round-off in the inverse
    return t.to(device=device, dtype=dtype)


def log_snr(
    process,
    steps: int,
    *,
    t_min: float | None = None,
    t_max: float | None = None,
    sigma_jump: float | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Equally spaced in λ = log(α²/σ²) (DPM-Solver's "logSNR" grid, Lu et al. 2022).

    With ``sigma_jump`` (a scaled noise level σ̂ = σ/α inside the grid's range) and ``steps ≥ 2``,
    the first interval goes from t_max straight to σ̂_jump and the other ``steps − 1`` are equally
    spaced in λ below it: for few-step sampling, where the intervals above ≈ 10 σ_data (x̂₀ is close
    to the data mean and varies slowly) are better spent where the data have structure.
    """
    lo, hi = _ends(process, t_min, t_max)
    n = check_positive_int(steps, "steps")
    lam = process.log_snr(torch.tensor([hi, lo], dtype=torch.float64)).tolist()
    first = []
    if sigma_jump is not None and n >= 2:
        lam_jump = -2.0 * math.log(check_positive(sigma_jump, "sigma_jump"))
        if not lam[0] < lam_jump < lam[1]:
            s_hi, s_lo = (math.exp(-v / 2) for v in lam)
            raise ValueError(
                f"sigma_jump {sigma_jump:g} is not inside the grid's noise range ({s_lo:g}, {s_hi:g})"
            )
        first, lam[0], n = [lam[0]], lam_jump, n - 1
    lam_grid = torch.tensor(
        first + torch.linspace(lam[0], lam[1], n + 1, dtype=torch.float64).tolist(),
        dtype=torch.float64,
    )
    t = process.t_of_log_snr(lam_grid)
    t[0], t[-1] = hi, lo
    return t.to(device=device, dtype=dtype)


def few_step(
    process,
    steps: int,
    *,
    sigma_data: float | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """DPM-Solver's few-step grid: one interval from t_max straight to σ̂ = 10 σ_data, then
    ``steps − 1`` intervals equally spaced in log-SNR down to σ̂ = 0.1 σ_data — a grid meant to be
    followed by the final x̂₀ (Tweedie) step, which removes the remaining noise.

    Measured on Gaussian mixtures (benchmarks/samplers.py, 10 NFE with ``dpm_solver``): 5× / 4.5×
    lower error than the plain log-SNR grid in 2-D / 16-D.  Few steps are better spent where the
    data have structure: above ≈ 10 σ_data x̂₀ is close to the data mean and varies slowly.  The
    final x̂₀ at 0.1 σ_data shrinks each mode's covariance Σ to Σ(Σ + σ̂²I)⁻¹Σ, a bias below the
    discretisation error of few steps only.  ``sigma_data`` defaults to ``process.sigma_data``,
    else ``SIGMA_DATA`` (0.5).  Needs steps ≥ 2 and 0.1 σ_data < 10 σ_data < σ̂(t_max).
    """
    steps = check_positive_int(steps, "steps")
    if steps < 2:
        raise ValueError("the few_step grid needs steps >= 2 (a jump, then log-SNR steps)")
    jump, end = few_step_range(process, sigma_data)
    if jump is None:
        raise ValueError(f"the few_step grid does not fit {process!r}: see grids.few_step_range")
    t_end = process.t_min if end is None else t_of_sigma(process, end)
    return log_snr(process, steps, t_min=t_end, sigma_jump=jump, device=device, dtype=dtype)


def few_step_range(process, sigma_data: float | None = None) -> tuple[float | None, float | None]:
    """(σ̂ of the jump, σ̂ of the end) of the few-step grid on ``process``; (None, None) when the
    process's noise range cannot hold it, and end None when it ends at the process's t_min."""
    if sigma_data is None:
        sigma_data = process.data_scale
    sigma_data = check_positive(sigma_data, "sigma_data")
    ends = torch.tensor([process.t_max, process.t_min], dtype=torch.float64)
    s_max, s_min = process.sigma_hat(ends).tolist()
    jump, end = FEW_STEP_JUMP * sigma_data, FEW_STEP_END * sigma_data
    if not max(end, s_min) < jump < s_max:
        return None, None
    return jump, (end if end > s_min else None)


def recipe_range(process, steps: int) -> tuple[float | None, float | None] | None:
    """(σ̂ of the jump, σ̂ of the end) of ``dpm_recipe`` at ``steps`` intervals, in the data's scale
    σ_d = ``process.data_scale`` (``process.sigma_data``, else ``SIGMA_DATA`` = 0.5):

        jump = 2 · 2.5^{(steps − 4)/5} σ_d,     end = 0.1 · (4 / steps) σ_d,

    i.e. 2 σ_d → 0.1 σ_d at 4 steps (5 NFE with x̂₀), 5 σ_d → 0.044 σ_d at 9 (10 NFE), 31 σ_d →
    0.021 σ_d at 19; past the prior's σ̂_max (≈ 24 steps on EDM for σ_d = 1) there is no jump
    (None), while the end keeps shrinking.  Chosen on a family of mixtures
    (benchmarks/results/samplers.md, "how the default recipe was chosen").  End None: the
    process's t_min is above it.  None when the process's noise range cannot hold the end.
    """
    sigma_data = process.data_scale
    ends = torch.tensor([process.t_max, process.t_min], dtype=torch.float64)
    s_max, s_min = process.sigma_hat(ends).tolist()
    jump = RECIPE_JUMP * 2.5 ** ((steps - 4) / 5) * sigma_data
    end = RECIPE_END * 4.0 / steps * sigma_data
    if not end < s_max:
        return None
    return (jump if max(end, s_min) < jump < s_max else None), (end if end > s_min else None)


def dpm_recipe(
    process,
    steps: int,
    *,
    denoise: bool = True,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """DPM-Solver's default grid (``grid="auto"`` of ``dpm_solver``), for the sampler that ends with
    x̂₀ (``denoise``): one interval from t_max straight to σ̂ = jump, then ``steps − 1`` intervals
    equally spaced in log-SNR down to σ̂ = end (``recipe_range``: both in units of the data's
    standard deviation σ_d, shrinking the end with the budget; once the jump would pass the
    prior's σ̂, all ``steps`` intervals equal in log-SNR), then x̂₀.  Above ≈ 10 σ_d, x̂₀ is
    close to the data mean and varies slowly (one data-prediction step crosses it), and below the
    data's finest scale x̂₀ barely changes: few steps are best spent between.  Without ``denoise``,
    for a single step or where the process's range cannot hold it: ``log_snr`` over the whole
    range."""
    steps = check_positive_int(steps, "steps")
    span = recipe_range(process, steps) if denoise and steps >= 2 else None
    if span is None:
        return log_snr(process, steps, device=device, dtype=dtype)
    jump, end = span
    t_end = process.t_min if end is None else t_of_sigma(process, end)
    return log_snr(process, steps, t_min=t_end, sigma_jump=jump, device=device, dtype=dtype)


def levels(process, steps: int | None = None, *, device=None, dtype=torch.float64) -> Tensor:
    """A ``NoiseLevels`` process's own levels σ_1 > … > σ_L as times (t = σ): the only times its
    models were trained at.  ``steps`` (intervals), if given, must be L − 1."""
    if not isinstance(process, NoiseLevels):
        raise ValueError(f"the levels grid needs a NoiseLevels process, got {process!r}")
    if steps is not None and steps != len(process) - 1:
        raise ValueError(
            f"{process!r} has {len(process)} levels, so its levels grid has steps = "
            f"{len(process) - 1}, not {steps}"
        )
    return process.sigmas.to(device=device, dtype=dtype)


def t_of_sigma(process, sigma: float) -> float:
    """The time at which the scaled noise level σ_t/α_t equals ``sigma``."""
    lam = torch.tensor(-2.0 * math.log(check_positive(sigma, "sigma")), dtype=torch.float64)
    return float(process.t_of_log_snr(lam))


GRIDS: dict[str, Callable[..., Tensor]] = {
    "uniform": uniform,
    "edm_rho": edm_rho,
    "log_snr": log_snr,
    "few_step": few_step,
    "dpm_recipe": dpm_recipe,
    "levels": levels,
}
IMPLIED = ("levels",)  # grids whose number of points is fixed by the process
RECIPES = ("dpm_recipe",)  # grids that depend on whether the sampler ends with x̂₀


def make_grid(
    grid,
    process,
    steps: int | None = None,
    *,
    device=None,
    dtype: torch.dtype = torch.float64,
    min_points: int = 2,
    denoise: bool = True,
) -> Tensor:
    """Resolve a grid given by name, as a function ``grid(process, steps)``, or as explicit times.

    Names are those of ``GRIDS`` (``denoise`` is passed to the recipes, which choose by it);
    ``"auto"`` is not one — samplers resolve it through ``process.default_grid`` (``resolve``).
    Explicit times and ``"levels"`` imply the number of intervals: ``steps`` may be None there;
    everywhere else it is required.  The times must decrease strictly inside the process's range
    [t_min, t_max]; explicit times may end with exactly 0 (the x̂₀ step, see ``resolve``).
    """
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(
                f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)} (samplers also take auto)"
            )
        if steps is None and grid not in IMPLIED:
            raise ValueError(f"the {grid!r} grid needs steps")
        extra = {"denoise": denoise} if grid in RECIPES else {}
        times = GRIDS[grid](process, steps, device=device, dtype=dtype, **extra)
    elif callable(grid):
        if steps is None:
            raise ValueError("a grid function needs steps")
        times = torch.as_tensor(grid(process, steps))
    else:
        times = torch.as_tensor(grid)
    times = times.to(device=device, dtype=dtype)
    if (
        times.ndim != 1
        or times.numel() < min_points
        or not bool(torch.isfinite(times).all())
        or not bool((times[1:] < times[:-1]).all())
    ):
        raise ValueError(
            f"a time grid must be 1-D, finite, have >= {min_points} points and strictly decrease"
        )
    inner = times[:-1] if times.numel() > 1 and float(times[-1]) == 0.0 else times
    lo, hi = float(inner[-1]), float(inner[0])
    # Tolerance: the grids' own end points pass through t_of_log_snr and back.
    slack = 1e-9 * max(1.0, abs(process.t_max))
    if lo < process.t_min - slack or hi > process.t_max + slack:
        raise ValueError(
            f"the time grid spans [{lo:g}, {hi:g}], outside the process's range "
            f"[{process.t_min:g}, {process.t_max:g}] (a grid may also end with exactly 0: "
            "the x̂₀ step)"
        )
    return times


def resolve(
    grid,
    process,
    steps: int | None = None,
    *,
    family: str,
    default_steps: int,
    denoise: bool = True,
    min_points: int = 2,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The explicit times a sampler runs on: t_0 = t_max > … > t_N ≥ t_min, then 0 with ``denoise``.

    ``grid``: ``"auto"`` (= ``process.default_grid(family)``), a name of ``GRIDS``, a function
    ``grid(process, steps)`` or explicit times.  ``steps`` counts the intervals of that grid
    (default ``default_steps``); explicit times (and ``"levels"``) imply it, and a ``steps`` given
    with them must agree.  A final time of exactly 0 is the x̂₀ step: the sampler's last move is
    Tweedie's x̂₀ = E[x₀ | x_{t_N}] from the time before it (one model call, the Euler step to σ = 0
    of EDM's and k-diffusion's samplers).  ``denoise=True`` appends it to a grid that does not end
    at 0; ``denoise=False`` with a grid that does is an error.  Idempotent: resolving the result
    again (same ``denoise``) returns it unchanged, so ``sample`` resolves once and hands the tensor on.
    """
    if steps is not None:
        steps = check_positive_int(steps, "steps")
    if isinstance(grid, str) and grid == "auto":
        grid = process.default_grid(family)
    implied = (isinstance(grid, str) and grid in IMPLIED) or not (
        isinstance(grid, str) or callable(grid)
    )
    n = steps if (steps is not None or implied) else default_steps
    times = make_grid(
        grid, process, n, min_points=min_points, denoise=denoise, device=device, dtype=dtype
    )
    if steps is not None and times.numel() != steps + 1:
        raise ValueError(
            f"steps = {steps} disagrees with the time grid's {times.numel()} points, which imply "
            f"steps = {times.numel() - 1}; give one or the other"
        )
    ends_at_zero = float(times[-1]) == 0.0
    if ends_at_zero and not denoise:
        raise ValueError(
            "the time grid ends at t = 0, i.e. with the x̂₀ step; drop the final 0 or keep "
            "denoise=True"
        )
    if denoise and not ends_at_zero:
        times = torch.cat([times, times.new_zeros(1)])
    return times
