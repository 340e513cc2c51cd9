"""Time grids for samplers: decreasing times t_0 = t_max > … > t_N = t_min, N = steps.

Each grid is a function ``grid(process, steps) -> Tensor (steps + 1,)`` on the process's own clock,
so one sampler runs on any process with any grid.  Non-uniform grids are laid out in the scaled
noise level σ̂ = σ_t/α_t (the noise level of x_t/α_t) or in the log-SNR λ = −2 log σ̂ and mapped back
to t through the process's closed-form inverse ``t_of_log_snr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_positive

__all__ = ["edm_rho", "log_snr", "make_grid", "t_of_sigma", "uniform"]


def _ends(process, t_min: float | None, t_max: float | None) -> tuple[float, float]:
    lo = process.t_min if t_min is None else float(t_min)
    hi = process.t_max if t_max is None else float(t_max)
    if not lo < hi:
        raise ValueError(f"need t_min < t_max, got {lo} and {hi}")
    return lo, hi


def _check(steps: int) -> int:
    if int(steps) != steps or int(steps) < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    return int(steps)


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
    return torch.linspace(hi, lo, _check(steps) + 1, device=device, dtype=dtype)


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
    n = _check(steps)
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
    n = _check(steps)
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


def t_of_sigma(process, sigma: float) -> float:
    """The time at which the scaled noise level σ_t/α_t equals ``sigma``."""
    lam = torch.tensor(-2.0 * math.log(check_positive(sigma, "sigma")), dtype=torch.float64)
    return float(process.t_of_log_snr(lam))


GRIDS: dict[str, Callable[..., Tensor]] = {
    "uniform": uniform,
    "edm_rho": edm_rho,
    "log_snr": log_snr,
}


def make_grid(
    grid, process, steps: int, *, device=None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Resolve a grid given by name, as a function ``grid(process, steps)``, or as explicit times.

    ``"auto"`` is the process's ``default_grid``: uniform in t for VP, sub-VP and VE (score-SDE's
    grids; VE's σ is geometric in t), EDM's ρ = 7 grid for EDM (whose t = σ).
    """
    if isinstance(grid, str) and grid == "auto":
        grid = getattr(process, "default_grid", "uniform")
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
        return GRIDS[grid](process, steps, device=device, dtype=dtype)
    if callable(grid):
        times = grid(process, steps)
    else:
        times = torch.as_tensor(grid)
    times = times.to(device=device, dtype=dtype)
    if times.ndim != 1 or times.numel() < 2 or not bool((times[1:] < times[:-1]).all()):
        raise ValueError("an explicit time grid must be 1-D, have ≥ 2 points and strictly decrease")
    return times
