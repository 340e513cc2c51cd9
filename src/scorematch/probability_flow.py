"""The probability-flow ODE of a score model in an integration variable, with its divergence.

The probability-flow ODE dx/dt = f(t) x − ½ g(t)² s(x, t) moves the marginal p_t of the forward
process without noise (Song et al. 2021, "Score-Based Generative Modeling through SDEs", eq. 13).
:func:`scorematch.log_likelihood` integrates it together with its divergence ∇·v, here.

Integration variable.  By default the ODE is written in the angle φ = arctan(σ_t/α_t) ∈ (0, π/2)
on the rescaled state z = x / c_t, c_t = √(α_t² + σ_t²).  For every process z = cos φ·x₀ + sin φ·ε, so
the flow is the variance-preserving one with the trigonometric schedule and its velocity is the
"v" of Salimans & Ho (2022), dz/dφ = E[cos φ·ε − sin φ·x₀ | z]:

    dz/dφ = −tan φ · (z + s_z(z)),   s_z(z) = c · s(c z, t(φ)),   t(φ) = t_of_log_snr(−2 log tan φ),

which stays O(1) from the data (φ ≈ 0) to the prior (φ ≈ π/2, where s_z → −z) for data of unit
scale.  The path is the same as in t (the flow depends only on the marginals), so the answer is the
same; adaptive solvers need fewer evaluations (benchmarks/results/likelihood.md).  ``"t"`` writes
the flow in t on x itself, as the score-SDE code does.

Divergence.  The exact trace of ∂v/∂z (D vector-Jacobian products), Hutchinson's estimate
εᵀ(∂v/∂z)ε with probes drawn once per solve (FFJORD, Grathwohl et al. 2019), or — for a model that
offers ``value_and_divergence(x, t) -> (s, tr ∇ₓs)`` (a hollow network,
:class:`scorematch.models.HollowMLP`) — the exact trace from the model itself, since
∇·v = a·D + b·c·tr ∇ₓs for v = a·z + b·s(c z, t).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import vjp, vmap

from ._checks import check_positive, rademacher, randn

__all__ = ["TIMES", "AngleFlow", "ClockFlow", "Divergence", "Flow", "make_flow"]

TIMES = ("angle", "t")
# rhs(s, z, rows) -> (v, ∇·v): s (b,) or a scalar, z (b, D), rows the samples' batch indices or None
RHS = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]


class Flow:
    """The probability-flow ODE of ``model`` in an integration variable s on a rescaled state
    z = x / c(s): ``span`` = (s at t_min, s at t_max), ``c0``/``c1`` the scales at both ends,
    ``velocity(s, z)`` = dz/ds on flat z ``(b, D)`` (s a scalar or ``(b,)``), and, when the model
    offers ``value_and_divergence``, ``velocity_and_divergence(s, z)`` from it."""

    def __init__(self, model, process, x: Tensor, t_min: float | None, t_max: float | None):
        lo = process.t_min if t_min is None else check_positive(t_min, "t_min")
        hi = process.t_max if t_max is None else check_positive(t_max, "t_max")
        if not lo < hi:
            raise ValueError(f"need t_min < t_max, got t_min={lo} and t_max={hi}")
        self.model, self.process, self.t_range = model, process, (lo, hi)
        self.event, self.dtype, self.device = x.shape[1:], x.dtype, x.device
        self.span = (self.variable(lo), self.variable(hi))
        self.c0, self.c1 = (self.end_scale(t) for t in (lo, hi))
        self.cheap_divergence = callable(getattr(model, "value_and_divergence", None))

    def score(self, x_flat: Tensor, t: Tensor) -> Tensor:
        b = x_flat.shape[0]
        return self.model(x_flat.reshape(b, *self.event), t.expand(b)).reshape(b, -1)

    def score_and_divergence(self, x_flat: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        b = x_flat.shape[0]
        s, div = self.model.value_and_divergence(x_flat.reshape(b, *self.event), t.expand(b))
        return s.reshape(b, -1), div

    def variable(self, t: float) -> float:
        raise NotImplementedError

    def end_scale(self, t: float) -> Tensor:
        raise NotImplementedError

    def velocity(self, s: Tensor, z: Tensor) -> Tensor:
        raise NotImplementedError

    def velocity_and_divergence(self, s: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class AngleFlow(Flow):
    """s = φ = arctan(σ_t/α_t) on z = x / √(α_t² + σ_t²): dz/dφ = −tan φ · (z + c·s(c z, t(φ)))."""

    def variable(self, t: float) -> float:
        alpha, sigma = self.process.marginal(torch.tensor(t, dtype=torch.float64))
        return float(torch.atan2(sigma, alpha).to(self.dtype))

    def scale(self, t: Tensor) -> Tensor:
        alpha, sigma = self.process.marginal(t)
        return torch.sqrt(alpha.square() + sigma.square())

    def end_scale(self, t: float) -> Tensor:
        return self.scale(torch.tensor(t, dtype=self.dtype)).to(self.device)

    def _terms(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(t(φ), tan φ, c) with tan φ and c shaped to broadcast against z."""
        tan = torch.tan(s)
        t = self.process.t_of_log_snr(-2 * torch.log(tan)).to(s.dtype)
        c = self.scale(t)
        tan, c = (v[:, None] if v.ndim else v for v in (tan, c))
        return t, tan, c

    def velocity(self, s: Tensor, z: Tensor) -> Tensor:
        t, tan, c = self._terms(s)
        return -tan * (z + c * self.score(c * z, t))

    def velocity_and_divergence(self, s: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        t, tan, c = self._terms(s)
        score, div = self.score_and_divergence(c * z, t)
        tan_b, c_b = (v[:, 0] if v.ndim else v for v in (tan, c))  # per sample, or scalars
        return -tan * (z + c * score), -tan_b * (z.shape[1] + c_b.square() * div)


class ClockFlow(Flow):
    """s = t on x itself: dx/dt = f(t) x − ½ g(t)² s(x, t)."""

    def variable(self, t: float) -> float:
        return float(torch.tensor(t, dtype=self.dtype))

    def end_scale(self, t: float) -> Tensor:
        return torch.ones((), dtype=self.dtype, device=self.device)

    def velocity(self, s: Tensor, z: Tensor) -> Tensor:
        return self.process.reverse_drift(z, s, self.score(z, s), eta=0.0)

    def velocity_and_divergence(self, s: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        score, div = self.score_and_divergence(z, s)
        half_g2 = 0.5 * self.process.diffusion(s).square().to(z.dtype)
        f = self.process.log_alpha_rate(s).to(z.dtype)
        return self.process.reverse_drift(z, s, score, eta=0.0), f * z.shape[1] - half_g2 * div


def make_flow(time: str, model, process, x: Tensor, t_min=None, t_max=None) -> Flow:
    """The flow of ``model`` in the variable ``time`` (``"angle"`` or ``"t"``) over [t_min, t_max]
    (default: the process's range), for points shaped like x."""
    if time not in TIMES:
        raise ValueError(f"time must be 'angle' or 't', got {time!r}")
    return (AngleFlow if time == "angle" else ClockFlow)(model, process, x, t_min, t_max)


@dataclass(frozen=True)
class Divergence:
    """How ∇·v is computed: ``"exact"`` (the trace; from the model itself when it offers
    ``value_and_divergence``), or ``"hutchinson"`` with ``probes`` vectors of kind ``probe``."""

    kind: str = "exact"
    probes: int = 1
    probe: str = "rademacher"

    def __post_init__(self) -> None:
        if self.kind not in ("exact", "hutchinson"):
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {self.kind!r}")
        if self.probe not in ("rademacher", "gaussian"):
            raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {self.probe!r}")
        p = self.probes
        try:
            whole = not isinstance(p, bool) and int(p) == p and int(p) >= 1
        except (TypeError, ValueError):
            whole = False
        if not whole:
            raise ValueError(f"probes must be a positive integer, got {p}")

    def vectors(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """Hutchinson's probes ``(probes, B, D)`` for points x, fixed for the whole solve so that
        the integrand is a smooth function of time; None for the exact trace."""
        if self.kind == "exact":
            return None
        draw = randn if self.probe == "gaussian" else rademacher
        shape = (int(self.probes), x.shape[0], x[0].numel())
        return draw(shape, generator, device=x.device, dtype=x.dtype)

    def rhs(self, flow: Flow, vectors: Tensor | None) -> RHS:
        """``rhs(s, z, rows) -> (v, ∇·v)`` for the samples ``rows`` of the batch, on flat z (b, D).

        Both estimators are sums of quadratic forms eᵀ(∂v/∂z)e over vectors e of shape (b, D): the
        D basis vectors (exact trace) or the probes (Hutchinson, averaged).  Samples are
        independent, so one vjp of the batched velocity gives every sample's eᵀJ at once; the
        vectors are vmapped (one forward pass, one batched backward pass each), in chunks bounded
        to ~128 MB.
        """
        if self.kind == "exact" and flow.cheap_divergence:
            return lambda s, z, rows: flow.velocity_and_divergence(s, z)

        def rhs(s: Tensor, z: Tensor, rows: Tensor | None) -> tuple[Tensor, Tensor]:
            v, pullback = vjp(lambda zz: flow.velocity(s, zz), z)
            if vectors is None:
                d = z.shape[1]
                basis = torch.eye(d, dtype=z.dtype, device=z.device)[:, None, :]
                return v, _quadratic_forms(pullback, basis.expand(d, *z.shape)).sum(0)
            probes = vectors if rows is None else vectors[:, rows]
            return v, _quadratic_forms(pullback, probes).mean(0)

        return rhs


def _quadratic_forms(pullback, vectors: Tensor) -> Tensor:
    """eᵀ(∂v/∂z)e for each of the n vector sets e ``(n, b, D)`` → ``(n, b)``."""
    n, b, d = vectors.shape
    per_vector = b * d * vectors.element_size()
    chunk = None if n * per_vector <= 2**27 else max(1, 2**27 // per_vector)
    return vmap(lambda e: (pullback(e)[0] * e).sum(-1), chunk_size=chunk)(vectors)
