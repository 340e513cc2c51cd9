"""Embedded Runge–Kutta pairs with one step size per sample: a batch of independent ODEs solved at once.

A batched ODE dy_b/dt = f(t_b, y_b), b = 1 … B, whose samples do not interact, is B separate
problems.  A solver that steps the whole batch with one h (torchdiffeq's ``odeint``) must take the
step of its hardest sample everywhere.  Here every sample keeps its own time t_b, step h_b and
error estimate; each iteration makes one trial step of every unfinished sample (all stages batched
over those samples only), then accepts or rejects it and picks the next h per sample.  The batch
then costs the sum over samples of the evaluations each one needs (``Solution.nfe``), and a sample's
steps never depend on which other samples share its batch.  torchode (Lienen & Günnemann 2022,
"torchode: A Parallel ODE Solver for PyTorch") steps samples separately in the same way.

Error control (Hairer, Nørsett & Wanner, "Solving ODEs I", §II.4): the embedded pair gives
err = h Σ_i e_i k_i; a step is accepted when r = ‖err / (atol + rtol·max(|y|, |y_new|))‖ ≤ 1 (an
RMS norm unless the caller gives its own).  After an accepted step the next is
h·0.9·r_n^{−β₁/q}·r_{n−1}^{β₂/q}, a PI controller (Gustafsson 1991, "Control theoretic techniques
for stepsize selection in explicit Runge–Kutta methods"), q − 1 the order of the lower method; after
a rejection h·0.9·r^{−1/q}, never larger; always within a factor 0.2 … 10.  The first step follows
Hairer et al.'s starting-step algorithm (one extra evaluation).  Steps are clipped to end exactly at
t1: f is never called outside [t0, t1].  A sample whose error is not finite stops there, its state
not finite, for the caller to report.

Tableaux: ``dopri5`` (Dormand & Prince 1980, 5(4), 7 stages, first-same-as-last), ``tsit5``
(Tsitouras 2011, "Runge–Kutta pairs of order 5(4) satisfying only the first column simplifying
assumption", 7 stages, FSAL) and ``bosh3`` (Bogacki & Shampine 1989, 3(2), 4 stages, FSAL).  Every
step of an FSAL pair costs s − 1 evaluations: its last stage is the next step's first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TABLEAUS", "Solution", "Tableau", "solve"]


@dataclass(frozen=True)
class Tableau:
    """An explicit embedded pair: nodes c, stage matrix rows a (row i has i entries), weights b of
    the propagated solution (order ``order``) and e = b − b̂ of the error estimate (order
    ``error_order`` for b̂).  First-same-as-last: the last row of a equals b and c_s = 1."""

    name: str
    order: int
    error_order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]

    @property
    def stages(self) -> int:
        return len(self.c)


def _dopri5() -> Tableau:
    b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
    b_hat = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
    return Tableau(
        "dopri5",
        5,
        4,
        (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        (
            (),
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            b[:6],
        ),
        b,
        tuple(p - q for p, q in zip(b, b_hat, strict=True)),
    )


def _tsit5() -> Tableau:
    b = (
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    )
    e = (  # b − b̂, as published
        0.001780011052226,
        0.000816434459657,
        -0.007880878010262,
        0.144711007173263,
        -0.582357165452555,
        0.458082105929187,
        -1 / 66,
    )
    return Tableau(
        "tsit5",
        5,
        4,
        (0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
        (
            (),
            (0.161,),
            (-0.008480655492356989, 0.335480655492357),
            (2.897153057105493, -6.359448489975075, 4.3622954328695815),
            (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
            (
                5.86145544294642,
                -12.92096931784711,
                8.159367898576159,
                -0.071584973281401,
                -0.028269050394068383,
            ),
            b[:6],
        ),
        b,
        e,
    )


def _bosh3() -> Tableau:
    b = (2 / 9, 1 / 3, 4 / 9, 0.0)
    b_hat = (7 / 24, 1 / 4, 1 / 3, 1 / 8)
    return Tableau(
        "bosh3",
        3,
        2,
        (0.0, 1 / 2, 3 / 4, 1.0),
        ((), (1 / 2,), (0.0, 3 / 4), b[:3]),
        b,
        tuple(p - q for p, q in zip(b, b_hat, strict=True)),
    )


TABLEAUS: dict[str, Tableau] = {t.name: t for t in (_dopri5(), _tsit5(), _bosh3())}

# Step-size controller constants (Hairer et al. §II.4): safety factor and growth bounds.
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
# PI control (Gustafsson 1991): h ← h·SAFETY·r_n^{−β₁/q}·r_{n−1}^{β₂/q} after an accepted step.
# β = (1, 0) is the classical controller; (0.6, 0.2) was chosen on the tuning mixture of
# benchmarks/likelihood.py (fewest evaluations at the reference accuracy; results/likelihood.md).
PI_EXPONENTS = (0.6, 0.2)


@dataclass(frozen=True)
class Solution:
    """The state at t1 ``(B, n)``, the evaluations each sample needed ``nfe`` ``(B,)`` (int64), the
    number of batched calls of f ``calls``, and accepted/rejected steps per sample ``(B,)``."""

    y: Tensor
    nfe: Tensor
    calls: int
    accepted: Tensor
    rejected: Tensor


# f(t, y, rows): t (b,), y (b, n), rows (b,) the samples' indices in the batch → dy/dt (b, n).
RHS = Callable[[Tensor, Tensor, Tensor], Tensor]


def solve(
    f: RHS,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    norm: Callable[[Tensor], Tensor] | None = None,
    controller: tuple[float, float] = PI_EXPONENTS,
    max_steps: int = 10_000,
    on_step: Callable[[Tensor], None] | None = None,
) -> Solution:
    """Solve dy/dt = f(t, y) from t0 to t1 (t1 > t0) for every row of y0 ``(B, n)``, each row with
    its own adaptive steps (see the module docstring).

    ``f(t, y, rows)`` gets the unfinished samples only: their times ``(b,)``, states ``(b, n)``
    and indices ``rows`` into the batch (for per-sample data such as Hutchinson probes).  The
    update is out of place, so the result is differentiable through the accepted steps when y0 or
    f carries a graph; the step sizes themselves are not differentiated.  ``on_step(t)`` is called
    after every iteration with all samples' current times ``(B,)`` (for progress).  ``norm`` maps
    the scaled errors err / (atol + rtol·max(|y|, |y_new|)) ``(b, n)`` to one number per sample
    (default: the RMS over the n components).  ``controller`` = (β₁, β₂) of the PI step control;
    (1, 0) is the classical one.
    """
    if method not in TABLEAUS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(TABLEAUS)}")
    if not t1 > t0:
        raise ValueError(f"need t0 < t1, got t0={t0} and t1={t1}")
    tab = TABLEAUS[method]
    norm = _rms if norm is None else norm
    batch, device, dtype = y0.shape[0], y0.device, y0.dtype
    t = torch.full((batch,), float(t0), dtype=dtype, device=device)
    rows = torch.arange(batch, device=device)
    calls = 1
    k1 = f(t, y0, rows)
    nfe = torch.ones(batch, dtype=torch.int64, device=device)
    h = _first_step(f, t, y0, k1, rows, tab.error_order, rtol, atol, float(t1 - t0), norm)
    calls += 1
    nfe += 1
    y = y0
    accepted = torch.zeros(batch, dtype=torch.int64, device=device)
    rejected = torch.zeros_like(accepted)
    previous = torch.ones(batch, dtype=dtype, device=device)  # r of the last accepted step
    for _ in range(max_steps):
        active = (t < t1).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        t_a, y_a, k_a = t[active], y[active], k1[active]
        # Clip to the end; a step within rounding of the end lands on it exactly.
        h_a = torch.minimum(h[active], t1 - t_a)
        last = t_a + h_a * (1 + 1e-12) >= t1
        y_new, k_last, err = _trial_step(f, tab, t_a, y_a, k_a, h_a, active)
        calls += tab.stages - 1
        nfe[active] += tab.stages - 1
        scale = atol + rtol * torch.maximum(y_a.abs(), y_new.abs())
        ratio = norm((err / scale).detach())
        broken = ~torch.isfinite(ratio)  # stops here with its non-finite state
        ok, last = (ratio <= 1) | broken, last | broken
        ratio = torch.where(broken, 1.0, ratio).clamp_min(1e-10)
        q = tab.error_order + 1
        beta1, beta2 = controller
        grow = SAFETY * ratio ** (-beta1 / q) * previous[active] ** (beta2 / q)
        shrink = (SAFETY * ratio ** (-1.0 / q)).clamp(max=1.0)
        factor = torch.where(ok, grow, shrink).clamp(MIN_FACTOR, MAX_FACTOR)
        previous[active[ok]] = ratio[ok].clamp_min(1e-4)
        done_rows, ok_f = active[ok], ok[:, None]
        y = y.index_copy(0, active, torch.where(ok_f, y_new, y_a))
        k1 = k1.index_copy(0, active, torch.where(ok_f, k_last, k_a))
        t[done_rows] = torch.where(last[ok], torch.full_like(t_a[ok], t1), t_a[ok] + h_a[ok])
        h[active] = h_a * factor
        accepted[done_rows] += 1
        rejected[active[~ok]] += 1
        if on_step is not None:
            on_step(t)
    else:
        raise RuntimeError(
            f"adaptive_rk.solve: {int((t < t1).sum())} of {batch} samples did not reach t1={t1} "
            f"in {max_steps} steps (rtol={rtol}, atol={atol}): the ODE is too stiff or not finite"
        )
    return Solution(y, nfe, calls, accepted, rejected)


def _trial_step(
    f: RHS, tab: Tableau, t: Tensor, y: Tensor, k1: Tensor, h: Tensor, rows: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the pair from (t, y) with per-sample h: (y_new, last stage, error estimate)."""
    hc = h[:, None]
    ks = [k1]
    for i in range(1, tab.stages):
        incr = sum(
            (a * k for a, k in zip(tab.a[i], ks, strict=True) if a != 0), torch.zeros_like(y)
        )
        ks.append(f(t + tab.c[i] * h, y + hc * incr, rows))
    # FSAL: the last stage was evaluated at y + h Σ b_i k_i, the new state itself.
    y_new = y + hc * sum((b * k for b, k in zip(tab.b, ks, strict=True) if b != 0), 0.0)
    err = hc * sum((e * k for e, k in zip(tab.e, ks, strict=True) if e != 0), 0.0)
    return y_new, ks[-1], err


def _rms(scaled: Tensor) -> Tensor:
    """Root mean square per sample of ``(b, n)``."""
    return scaled.square().mean(1).sqrt()


def _first_step(
    f: RHS,
    t: Tensor,
    y: Tensor,
    k1: Tensor,
    rows: Tensor,
    error_order: int,
    rtol: float,
    atol: float,
    span: float,
    norm: Callable[[Tensor], Tensor],
) -> Tensor:
    """Hairer et al.'s starting step (Solving ODEs I, §II.4), per sample, at most the whole span."""
    with torch.no_grad():
        scale = atol + rtol * y.abs()
        d0, d1 = norm(y / scale), norm(k1 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
        h0 = h0.clamp(max=span)
        k2 = f(t + h0, y + h0[:, None] * k1, rows)
        d2 = norm((k2 - k1) / scale) / h0
        big = torch.maximum(d1, d2)
        h1 = torch.where(
            big <= 1e-15,
            torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
            (0.01 / big.clamp_min(1e-300)) ** (1.0 / (error_order + 1)),
        )
        return torch.minimum(100 * h0, h1).clamp(max=span)
