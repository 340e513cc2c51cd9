"""Exact log-likelihood of a score model through the probability-flow ODE.

The probability-flow ODE dx/dt = f(t) x − ½ g(t)² s(x, t) moves the marginal p_t of the forward
process without noise (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 13).
Along any ODE path the log-density obeys the instantaneous change of variables
d log p_t(x(t))/dt = −∇·v(x(t), t) (Chen et al. 2018, "Neural Ordinary Differential Equations",
Thm. 1), so integrating the state and the divergence together from t_min to t_max gives

    log p_{t_min}(x) = log p_{t_max}(x_T) + ∫_{t_min}^{t_max} ∇·v(x(t), t) dt     (Song et al., App. D.2)

with p_{t_max} replaced by the process's Gaussian prior.  The divergence is either the exact trace
of the Jacobian or Hutchinson's estimate vᵀ(∂v/∂x)v with a few probe vectors drawn once per call
(FFJORD, Grathwohl et al. 2019).

The ODE, its integration variable (by default the angle φ = arctan(σ_t/α_t), which needs fewer
evaluations than t) and its divergence are :mod:`scorematch.probability_flow`'s.

Step control.  The samples of a batch are independent ODEs.  By default each one keeps its own
adaptive step (:mod:`scorematch.adaptive_rk`): a batch costs the sum of what its samples need, not
its hardest sample's steps times the batch, and a sample's answer does not depend on its batch.
``step_control="batch"`` steps the batch as one with torchdiffeq's ``odeint``, as score-SDE does.
Steps never cross the end of the range, so a network is never queried outside [t_min, t_max].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchdiffeq import odeint
from tqdm.auto import tqdm

from . import adaptive_rk
from ._checks import (
    ADAPTIVE_SOLVERS,
    check_batch,
    check_positive,
    check_solver,
    rand,
)
from .probability_flow import Divergence, Flow, make_flow
from .results import BitsPerDim, LogLikelihood

__all__ = [
    "DENSITY_ERROR_WEIGHT",
    "STEP_CONTROLS",
    "BitsPerDim",
    "LogLikelihood",
    "bits_per_dim",
    "log_likelihood",
]

STEP_CONTROLS = ("per_sample", "batch")
# Per-sample error control: weight of the log-density's error against the points' (see
# _state_and_density_norm; chosen on the tuning mixture of benchmarks/likelihood.py).
DENSITY_ERROR_WEIGHT = 0.1


def log_likelihood(
    model: Callable[[Tensor, Tensor], Tensor],
    process,
    x: Tensor,
    *,
    divergence: str = "exact",
    probes: int = 1,
    probe: str = "rademacher",
    solver: str = "dopri5",
    step_control: str = "per_sample",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    time: str = "angle",
    t_min: float | None = None,
    t_max: float | None = None,
    prior_log_prob: Callable[[Tensor], Tensor] | None = None,
    options: dict | None = None,
    generator: torch.Generator | None = None,
    return_latent: bool = False,
    progress: bool = False,
    create_graph: bool = False,
) -> LogLikelihood:
    """log p_{t_min}(x) per sample by the probability-flow ODE and the instantaneous change of variables.

    log p_{t_min}(x) = log π(x_T) + ∫_{t_min}^{t_max} ∇ₓ·[f(t) x − ½ g(t)² s(x, t)] dt, where x(t)
    solves the probability-flow ODE from x(t_min) = x and π is the prior (Song et al. 2021, App. D.2;
    Chen et al. 2018).  The flow moves p_{t_min}, the data blurred by noise σ_{t_min}, not p_0 itself;
    the prior only approximates p_{t_max}.

    Args:
        model: score model ``model(x, t) -> ∇ₓ log p_t(x)`` with x ``(B, *event)`` and t ``(B,)``.
            It must treat samples independently (no batch norm in training mode): the divergence
            uses per-sample Jacobians of the batched call, and with per-sample steps each call
            gets the unfinished samples only, each at its own t.  Parameters get no gradient
            graph unless ``create_graph``.
        process: the forward process (``VE``, ``VP``, ``SubVP``, ``EDM`` …).
        x: points ``(B, *event)`` in the model's space; any event shape, float32 or float64.
        divergence: ``"exact"`` (trace of the Jacobian, D vmapped backward passes per evaluation)
            or ``"hutchinson"`` (unbiased estimate εᵀ(∂v/∂x)ε, cheap in high dimension).
        probes: number of Hutchinson probe vectors per sample, averaged.  Drawn once per call.
        probe: ``"rademacher"`` (±1, lower variance) or ``"gaussian"`` probe vectors.
        solver: the Runge–Kutta method.  Per-sample steps: ``dopri5``, ``tsit5`` or ``bosh3``
            (:data:`scorematch.adaptive_rk.TABLEAUS`).  Batch steps: any torchdiffeq method
            (adaptive: ``dopri5``, ``dopri8``, ``bosh3``, …; fixed: ``rk4``, ``euler``, … with
            ``options={"step_size": ...}``; a fixed-step method needs no ``step_control``).
        step_control: ``"per_sample"`` (default: every sample its own adaptive steps) or
            ``"batch"`` (one step size for the batch, torchdiffeq's ``odeint``).
        rtol, atol: the solver's tolerances on the joint state (points and log-density).
        time: integration variable, ``"angle"`` (default: φ = arctan(σ_t/α_t) on x/√(α_t²+σ_t²),
            see the module docstring) or ``"t"`` (the process clock on x, as in the score-SDE
            code).  Both solve the same ODE; the angle usually needs fewer evaluations.
        t_min, t_max: integration range on the process clock (default: the process's own).
        prior_log_prob: log-density of the end point, ``(B, *event) -> (B,)`` (default:
            ``process.prior_log_prob``); pass the exact log p_{t_max} to remove the prior mismatch.
        options: extra keyword options for ``torchdiffeq.odeint`` (batch steps only), e.g.
            ``{"step_size": ...}`` for fixed-step solvers.
        generator: source of the Hutchinson probes (unused by the exact divergence).
        return_latent: keep the end point x_T (on the process's scale) in ``.latent``.
        progress: show a progress bar over the integration range.
        create_graph: keep the autograd graph through the solver's steps, so that the result
            can be differentiated with respect to the model's parameters (and x): maximum
            likelihood through the ODE, as in FFJORD (Grathwohl et al. 2019), by direct
            back-propagation rather than the adjoint.  Memory grows with the number of steps.

    Returns:
        ``LogLikelihood(log_prob, nfe, latent, nfe_per_sample)`` (unpacks as ``log_prob, nfe``):
        log-densities ``(B,)`` in nats (detached unless ``create_graph``); ``nfe`` = the number of
        batched model forward passes, each one ODE right-hand-side evaluation of the samples not
        yet finished (the divergence reuses that forward pass through ``torch.func.vjp``);
        ``nfe_per_sample`` ``(B,)`` = the evaluations each sample took, whose sum is the batch's
        cost.  dopri5 costs 6 per step plus 2 to start.
    """
    check_batch(x, "x")
    div = Divergence(divergence, probes, probe)
    steps = _Steps.checked(solver, step_control, rtol, atol, options)
    flow = make_flow(time, model, process, x, t_min, t_max)
    prior = process.prior_log_prob if prior_log_prob is None else prior_log_prob
    batch, dim = x.shape[0], math.prod(x.shape[1:])
    rhs = div.rhs(flow, div.vectors(x, generator))
    integrate = _per_sample if steps.step_control == "per_sample" else _batch
    # Unless create_graph, gradients are taken by torch.func inside rhs only: nothing outside
    # needs a graph, and the caller may be in inference mode.
    with torch.inference_mode(False), torch.set_grad_enabled(create_graph):
        z0 = (x if create_graph else x.detach().clone()).reshape(batch, dim) / flow.c0
        with _Progress(flow.span, progress) as bar:
            z_end, delta, nfe, nfe_per_sample = integrate(rhs, z0, flow.span, steps, bar)
        x_end = (flow.c1 * z_end).reshape(x.shape)
        # log p_x(x) = log p_z(z) − D log c at both ends of the flow.
        log_prob = prior(x_end) + dim * torch.log(flow.c1) + delta - dim * torch.log(flow.c0)
    _check_finite(log_prob, flow, nfe)
    if not create_graph:
        log_prob, x_end = log_prob.detach(), x_end.detach()
    return LogLikelihood(log_prob, nfe, x_end if return_latent else None, nfe_per_sample)


# -- options ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Steps:
    """The Runge–Kutta method, its step control and tolerances."""

    solver: str
    step_control: str
    rtol: float
    atol: float
    options: dict

    @classmethod
    def checked(cls, solver, step_control, rtol, atol, options) -> _Steps:
        if step_control not in STEP_CONTROLS:
            raise ValueError(f"step_control must be 'per_sample' or 'batch', got {step_control!r}")
        if step_control == "per_sample" and solver not in adaptive_rk.TABLEAUS:
            check_solver(solver)  # a name torchdiffeq knows, but not one with per-sample steps
            if solver in ADAPTIVE_SOLVERS:
                raise ValueError(
                    f"solver {solver!r} steps the batch as one: pass step_control='batch', or a "
                    f"per-sample solver ({', '.join(adaptive_rk.TABLEAUS)})"
                )
            step_control = "batch"  # a fixed-step method has no step control
        if step_control == "batch":
            check_solver(solver)
        elif options:
            raise ValueError(f"options are torchdiffeq's (step_control='batch'), got {options}")
        rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
        return cls(solver, step_control, rtol, atol, dict(options or {}))


# -- integration ------------------------------------------------------------------------------------


def _per_sample(rhs, z0: Tensor, span, steps: _Steps, bar) -> tuple[Tensor, Tensor, int, Tensor]:
    """(z at the end, ∫∇·v, batched calls, evaluations per sample), each sample its own steps."""
    dim = z0.shape[1]

    def f(s: Tensor, y: Tensor, rows: Tensor) -> Tensor:
        bar.calls += 1
        v, div = rhs(s, y[:, :dim], rows)
        return torch.cat([v, div[:, None]], 1)

    y0 = torch.cat([z0, z0.new_zeros(z0.shape[0], 1)], 1)
    sol = adaptive_rk.solve(
        f, y0, span[0], span[1], method=steps.solver, rtol=steps.rtol, atol=steps.atol,
        norm=_state_and_density_norm, on_step=bar.times,
    )  # fmt: skip
    return sol.y[:, :dim], sol.y[:, dim], sol.calls, sol.nfe


def _state_and_density_norm(scaled: Tensor) -> Tensor:
    """Per sample: the larger of the points' RMS error and the log-density's error times
    ``DENSITY_ERROR_WEIGHT``, both already divided by their scale.  The points steer the flow; the
    log-density only sums the divergence along it, and its embedded error estimate proved
    pessimistic (benchmarks/results/likelihood.md, tuning mixture)."""
    points = scaled[:, :-1].square().mean(1).sqrt()
    return torch.maximum(points, DENSITY_ERROR_WEIGHT * scaled[:, -1].abs())


def _batch(rhs, z0: Tensor, span, steps: _Steps, bar) -> tuple[Tensor, Tensor, int, Tensor]:
    """The same with one step size for the whole batch (torchdiffeq's ``odeint``)."""
    times = torch.tensor(span, dtype=z0.dtype, device=z0.device)

    def func(s: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        bar.calls += 1
        bar.times(s)
        return rhs(s, state[0], None)

    opts = dict(steps.options)
    if steps.solver in ADAPTIVE_SOLVERS and "step_t" not in opts:
        # torchdiffeq otherwise steps past the end and interpolates back, querying the model
        # outside the range it was trained on.
        opts["step_t"] = times[1:]
    delta0 = z0.new_zeros(z0.shape[0])
    zs, deltas = odeint(
        func, (z0, delta0), times, rtol=steps.rtol, atol=steps.atol, method=steps.solver,
        options=opts,
    )  # fmt: skip
    nfe = bar.calls
    return zs[-1], deltas[-1], nfe, torch.full_like(delta0, nfe, dtype=torch.int64)


class _Progress:
    """A bar over the integration range (the mean progress of the samples) that counts calls."""

    def __init__(self, span: tuple[float, float], show: bool) -> None:
        self.span, self.show, self.calls = span, show, 0
        self.bar = tqdm(total=1.0, disable=not show, desc="likelihood",
                        bar_format="{l_bar}{bar}| {elapsed}")  # fmt: skip

    def times(self, s: Tensor) -> None:
        if self.show:
            done = float(((s - self.span[0]) / (self.span[1] - self.span[0])).mean())
            self.bar.n = max(self.bar.n, min(1.0, round(done, 3)))
            self.bar.set_postfix(nfe=self.calls, refresh=True)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _check_finite(log_prob: Tensor, flow: Flow, nfe: int) -> None:
    """Never a silent NaN: name the computation, the range and the work done."""
    bad = int((~torch.isfinite(log_prob.detach())).sum())
    if bad:
        lo, hi = flow.t_range
        raise ValueError(
            f"log_likelihood: {bad} of {log_prob.shape[0]} log-densities are NaN or infinite "
            f"(probability-flow ODE over t in [{lo:g}, {hi:g}], {nfe} model evaluations): the "
            "score is not finite"
        )


def bits_per_dim(
    model: Callable[[Tensor, Tensor], Tensor],
    process,
    x: Tensor,
    *,
    data_range: tuple[float, float] | None = (0, 255),
    model_range: tuple[float, float] = (-1.0, 1.0),
    scale: float | None = None,
    shift: float | None = None,
    dequantize: str | None = "uniform",
    log_det: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
    **likelihood_kwargs,
) -> BitsPerDim:
    """Bits per dimension of data under a score model, with the scaling convention spelled out.

    Discrete data (``data_range=(lo, hi)``, integer levels lo … hi, e.g. 8-bit pixels 0 … 255):
    each level k owns the bin [k, k+1).  Uniform dequantization draws u ~ U[0,1)^D once per call
    (from ``generator``, before any Hutchinson probe) and maps v = x + u to the model's space by the
    affine map y = a·v + b, by default sending [lo, hi+1) onto ``model_range`` (a = (r₁ − r₀)/(hi+1−lo),
    b = r₀ − a·lo; for 8 bits and [−1, 1]: a = 2/256), or given directly by ``scale=a, shift=b``.
    Since log P(x) ≥ E_u log p_v(x + u) (Theis et al. 2016; Ho et al. 2019) and p_v(v) = p_y(y)·|a|^D,

        bpd(x) = −[log p_y(a(x+u)+b) + D·log|a|] / (D·ln 2),

    an upper bound (in expectation over u) on the discrete code length.  The score-SDE code writes
    the same thing as "bpd of y plus an offset": their y = v/256 ∈ [0,1) (offset 8 = −log₂(1/256))
    or y = 2v/256 − 1 ∈ [−1,1) (offset 7 = −log₂(2/256)); here that offset is −log₂|a|, computed
    from the map.  With ``dequantize=None`` the data are used as is (v = x, no noise): pass values
    already dequantized into [lo, hi+1).

    Continuous data (``data_range=None``): x is already in the model's space and
    bpd = −[log p(x) + log_det] / (D ln 2), where ``log_det`` (a number or ``(B,)``) is
    log|det ∂x/∂r| of the map that took raw data r to x, so that the bits are those of r: e.g.
    −Σ_d log s_d for the standardisation x = (r − m)/s.

    ``likelihood_kwargs`` go to :func:`log_likelihood` (``divergence``, ``rtol``, ``t_min`` …).
    Returns ``BitsPerDim(bpd, nfe, latent)`` (unpacks as ``bpd, nfe``), bpd of shape ``(B,)``;
    ``latent`` is the flow's end point when ``return_latent=True`` is passed on.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    check_batch(x, "x")
    if dequantize not in ("uniform", None):
        raise ValueError(f"dequantize must be 'uniform' or None, got {dequantize!r}")
    dim = x[0].numel()
    if data_range is None:
        if scale is not None or shift is not None:
            raise ValueError("scale/shift need data_range (they map discrete levels to the model)")
        y, log_abs_a = x, 0.0
    else:
        lo, hi = (float(v) for v in data_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"data_range must be finite (low, high) with low < high, got {data_range}"
            )
        top = hi if dequantize == "uniform" else hi + 1
        if bool((x < lo).any()) or bool((x > top).any()):
            raise ValueError(
                f"x has values outside [{lo}, {top}] (data_range {data_range}): "
                f"min {float(x.min())}, max {float(x.max())}"
            )
        if dequantize == "uniform" and not bool((x == x.round()).all()):
            raise ValueError("uniform dequantization needs integer-valued x (discrete levels)")
        if scale is None:
            r0, r1 = (float(v) for v in model_range)
            if not (math.isfinite(r0) and math.isfinite(r1) and r0 < r1):
                raise ValueError(
                    f"model_range must be finite (low, high) with low < high, got {model_range}"
                )
            a = (r1 - r0) / (hi + 1 - lo)
            b = r0 - a * lo if shift is None else float(shift)
        else:
            a = float(scale)
            if a == 0 or not math.isfinite(a):
                raise ValueError(f"scale must be a non-zero finite number, got {scale}")
            b = 0.0 if shift is None else float(shift)
        v = x
        if dequantize == "uniform":
            v = x + rand(x.shape, generator, device=x.device, dtype=x.dtype)
        y, log_abs_a = a * v + b, math.log(abs(a))
    log_det = torch.as_tensor(log_det, dtype=x.dtype, device=x.device)
    if log_det.ndim > 1 or (log_det.ndim == 1 and log_det.shape[0] not in (1, x.shape[0])):
        raise ValueError(
            f"log_det must be a number or have shape ({x.shape[0]},), got {tuple(log_det.shape)}"
        )
    out = log_likelihood(model, process, y, generator=generator, **likelihood_kwargs)
    total = out.log_prob + dim * log_abs_a + log_det
    return BitsPerDim(-total / (dim * math.log(2.0)), out.nfe, out.latent)
