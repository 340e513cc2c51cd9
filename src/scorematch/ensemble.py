"""A weighted average of score models, itself a score model, and its weights fitted by held-out ISM.

    ŝ_w(x) = Σⱼ wⱼ sⱼ(x)        (or Σⱼ wⱼ sⱼ(x, t) for time-conditional members).

Choosing w without the true score.  Implicit score matching (Hyvärinen 2005, Thm. 1) on held-out
clean data, J(s) = E_p[tr ∇ₓs + ½‖s‖²], equals the Fisher divergence ½E_p‖s − ∇log p‖² minus a
constant free of s.  For a combination it is a quadratic in the weights,

    J(ŝ_w) = ½ wᵀ G w + wᵀ b,   G_jk = E[sⱼ(x)·s_k(x)],   b_j = E[tr ∇ₓsⱼ(x)],

so the best weights on a validation split have a closed form.  ``constraint="affine"`` (Σw = 1,
weights of any sign: an extrapolation towards σ → 0 in the spirit of Richardson's, when the members
are denoising models at several σ) solves the KKT system

    [G  1] [w]   [−b]
    [1ᵀ 0] [ν] = [ 1 ];

``constraint="simplex"`` (w ≥ 0, Σw = 1: a convex average) is a small strictly convex QP solved
exactly by a primal active-set method (Nocedal & Wright 2006, "Numerical Optimization", Alg. 16.3).
``fit`` solves with a relative ridge, G + ρ·mean(diag G)·I with ρ = ``ridge`` (default
``DEFAULT_RIDGE`` = 1e-3); the loss reported is the quadratic with the unregularised G.  The ridge
makes a singular G (two identical members, a zero member) definite, and it damps the direction
along which nearly collinear members — denoising models at neighbouring σ — leave the affine
weights undetermined: there the unregularised weights are mostly the Monte Carlo error of the
validation estimate (their spread over validation draws falls like 1/√N), and the ridge pulls
them towards the minimum-norm affine weights.  ρ = 1e-3 was chosen on exact blurred scores and
judged on ensembles of trained DSM networks (benchmarks/results/ensemble_weights.md); with very
large validation sets a smaller ρ extrapolates further (``ridge=1e-10`` is the old, essentially unregularised, fit).
``solve_weights`` alone (the exact solver of the quadratic) keeps a negligible ridge, 1e-10.
``divergence="hutchinson"`` replaces tr ∇ₓsⱼ by vᵀ∇ₓsⱼ v averaged over ``probes`` vectors with
E[vvᵀ] = I (Hutchinson 1989), the same vectors for every member — the SSM-VR estimate of J (Song
et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._checks import check_batch
from .objectives.implicit import exact_trace
from .objectives.sliced import PROJECTIONS, projections
from .parametrization import at_time

__all__ = [
    "CONSTRAINTS", "DEFAULT_RIDGE", "DIVERGENCES", "EnsembleFit", "ScoreEnsemble", "solve_weights",
]  # fmt: skip

CONSTRAINTS = ("affine", "simplex")
DIVERGENCES = ("exact", "hutchinson")
DEFAULT_RIDGE = 1e-3  # relative to mean(diag G); measured in benchmarks/results/ensemble_weights.md


class EnsembleFit(NamedTuple):
    """What ``ScoreEnsemble.fit`` returns: the ensemble and its held-out ISM, ½wᵀGw + wᵀb."""

    ensemble: ScoreEnsemble
    loss: float


class ScoreEnsemble(nn.Module):
    """ŝ(x) = Σⱼ wⱼ sⱼ(x), or ŝ(x, t) = Σⱼ wⱼ sⱼ(x, t): a score model made of score models.

    Called as ``ens(x)`` it calls every member as ``sⱼ(x)`` (an unconditional score function);
    called as ``ens(x, t)`` it calls ``sⱼ(x, t)``.  So it goes wherever its members go: into
    ``objectives.esm/ism/ssm/dsm`` (unconditional), ``objectives.ncsn/diffusion/edm``, every sampler
    and ``log_likelihood`` (time-conditional).  Members that are ``nn.Module`` are registered as
    submodules (``.to()``, ``state_dict`` and parameter-based device discovery see them).

    Args:
        models: the members, a non-empty sequence of callables.
        weights: one finite weight per member (any sign; the fitted ones sum to 1); default
            uniform 1/J.  Stored as the buffer ``weights`` in the members' floating dtype (for
            members without tensors, plain functions: the given tensor's dtype, else the default
            dtype), and applied in x's dtype.
    """

    def __init__(self, models: Sequence[Callable[..., Tensor]], weights=None) -> None:
        super().__init__()
        models = list(models) if not isinstance(models, nn.Module) else [models]
        if not models:
            raise ValueError("ScoreEnsemble needs at least one model, got an empty sequence")
        for j, m in enumerate(models):
            if not callable(m):
                raise ValueError(f"model {j} must be callable, got {type(m).__name__}")
        self._members = models
        self.members = nn.ModuleList(m for m in models if isinstance(m, nn.Module))
        n = len(models)
        given = (
            weights.dtype if isinstance(weights, Tensor) and weights.is_floating_point() else None
        )
        if weights is None:
            weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
        if weights.ndim != 1 or weights.numel() != n:
            raise ValueError(
                f"weights must be a 1-D sequence of one weight per model ({n}), "
                f"got shape {tuple(weights.shape)}"
            )
        if not bool(torch.isfinite(weights).all()):
            raise ValueError(f"weights must be finite, got {weights.tolist()}")
        dtype, device = _members_dtype_device(self.members, given)
        self.register_buffer("weights", weights.to(dtype=dtype, device=device))

    def __len__(self) -> int:
        return len(self._members)

    @property
    def models(self) -> list[Callable[..., Tensor]]:
        """The members, in order (the same objects that were given)."""
        return list(self._members)

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        w = self.weights.to(dtype=x.dtype, device=x.device)
        out = None
        for j, m in enumerate(self._members):
            s = m(x) if t is None else m(x, t)
            if not isinstance(s, Tensor) or s.shape != x.shape:
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ValueError(
                    f"ensemble member {j} must return a score of x's shape {tuple(x.shape)}, "
                    f"got {got}"
                )
            out = w[j] * s if out is None else out + w[j] * s
        return out

    def extra_repr(self) -> str:
        shown = ", ".join(f"{float(w):.4g}" for w in self.weights)
        return f"n={len(self)}, weights=[{shown}]"

    # -- fitting ---------------------------------------------------------------------------------
    @staticmethod
    def ism_quadratic(
        models: Sequence[Callable[..., Tensor]],
        x: Tensor,
        *,
        t: Tensor | float | None = None,
        divergence: str = "exact",
        probes: int = 1,
        projection: str = "rademacher",
        batch_size: int = 1024,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(G, b) in float64: the held-out ISM of Σ wⱼ sⱼ on x is ½ wᵀ G w + wᵀ b.

        G_jk = mean over x of sⱼ(x)·s_k(x); b_j = mean of tr ∇ₓsⱼ(x) (``"exact"``, D backward
        passes per batch) or of vᵀ∇ₓsⱼ(x) v averaged over ``probes`` vectors v of kind
        ``projection`` (``"hutchinson"``; the same v for every member, drawn with ``generator``).
        With ``t`` the members are called ``sⱼ(x, t)`` (x then holds data at that noise level).
        x is processed ``batch_size`` rows at a time.
        """
        models = list(models)
        if not models:
            raise ValueError("need at least one model")
        check_batch(x, "x_val")
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        fns = [m if t is None else at_time(m, t) for m in models]
        if t is not None and isinstance(t, Tensor) and t.ndim == 1 and t.numel() > 1:
            if t.numel() != x.shape[0]:
                raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},)")
        n, k = x.shape[0], len(fns)
        gram = torch.zeros(k, k, dtype=torch.float64, device=x.device)
        lin = torch.zeros(k, dtype=torch.float64, device=x.device)
        for start in range(0, n, int(batch_size)):
            xb = x[start : start + int(batch_size)]
            if t is not None and isinstance(t, Tensor) and t.ndim == 1 and t.numel() > 1:
                fns = [at_time(m, t[start : start + xb.shape[0]]) for m in models]
            v = None
            if divergence == "hutchinson":
                v = projections(probes, xb, projection, generator=generator)
            scores, traces = [], []
            for fn in fns:
                s, tr = _score_and_trace(fn, xb, v)
                scores.append(s.reshape(xb.shape[0], -1).to(torch.float64))
                traces.append(tr.to(torch.float64))
            flat = torch.stack(scores)  # (K, B, D)
            gram += torch.einsum("jbd,kbd->jk", flat, flat)
            lin += torch.stack(traces).sum(1)
        return gram / n, lin / n

    @classmethod
    def fit(
        cls,
        models: Sequence[Callable[..., Tensor]],
        x_val: Tensor,
        *,
        constraint: str = "affine",
        divergence: str = "exact",
        t: Tensor | float | None = None,
        probes: int = 1,
        projection: str = "rademacher",
        ridge: float = DEFAULT_RIDGE,
        batch_size: int = 1024,
        generator: torch.Generator | None = None,
    ) -> EnsembleFit:
        """The ensemble whose weights minimise the held-out ISM on ``x_val``, and that ISM.

        See the module docstring for the quadratic ½wᵀGw + wᵀb (``ism_quadratic``) and the two
        constraints (``solve_weights``).  The loss estimates ½E_p‖ŝ − ∇log p‖² − ½E_p‖∇log p‖²,
        so losses are comparable between ensembles fitted on the same x_val, not across data sets.

        Args:
            models: the members.
            x_val: held-out data ``(N, *event)``, not used to train the members.
            constraint: ``"affine"`` (Σw = 1) or ``"simplex"`` (w ≥ 0, Σw = 1).
            divergence: ``"exact"`` trace or ``"hutchinson"`` probes.
            t: call the members as ``sⱼ(x, t)`` at this time (time-conditional members).
            probes, projection, generator: Hutchinson's probe vectors.
            ridge: relative ridge ρ added to G before solving (see the module docstring).
            batch_size: rows of x_val per evaluation.
        """
        gram, lin = cls.ism_quadratic(
            models, x_val, t=t, divergence=divergence, probes=probes, projection=projection,
            batch_size=batch_size, generator=generator,
        )  # fmt: skip
        w = solve_weights(gram, lin, constraint, ridge=ridge)
        loss = float(0.5 * w @ gram @ w + w @ lin)
        return EnsembleFit(cls(models, w.to(x_val.dtype)), loss)


def solve_weights(gram: Tensor, lin: Tensor, constraint: str = "affine", *, ridge: float = 1e-10):
    """argmin ½ wᵀ G w + wᵀ b subject to Σw = 1 (``"affine"``) or w ≥ 0, Σw = 1 (``"simplex"``).

    Solved in float64 with G + ρ·mean(diag G)·I (ρ = ``ridge``), which is definite for ρ > 0
    whenever diag G ≠ 0; affine by the KKT system, simplex by a primal active-set method started
    from the uniform weights (finite: each iteration either adds a blocking index or drops the
    index whose multiplier is most negative, and the objective never increases).
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
    g = torch.as_tensor(gram, dtype=torch.float64)
    b = torch.as_tensor(lin, dtype=torch.float64, device=g.device)
    k = b.numel()
    if g.shape != (k, k) or b.ndim != 1:
        raise ValueError(f"need G of shape (K, K) and b of shape (K,), got {tuple(g.shape)}, {tuple(b.shape)}")  # fmt: skip
    if not (bool(torch.isfinite(g).all()) and bool(torch.isfinite(b).all())):
        raise ValueError("G and b must be finite (a member returned NaN or inf on x_val?)")
    ridge = float(ridge)
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}")
    scale = float(g.diagonal().mean()) if float(g.diagonal().mean()) > 0 else 1.0
    g = 0.5 * (g + g.T) + ridge * scale * torch.eye(k, dtype=g.dtype, device=g.device)
    if constraint == "affine":
        return _affine(g, b, torch.ones(k, dtype=torch.bool, device=g.device))
    return _simplex(g, b)


def _affine(g: Tensor, b: Tensor, free: Tensor) -> Tensor:
    """KKT solution on the free indices (the others fixed at 0); lstsq if the system is singular."""
    idx = free.nonzero().flatten()
    m = idx.numel()
    kkt = torch.zeros(m + 1, m + 1, dtype=g.dtype, device=g.device)
    kkt[:m, :m] = g[idx][:, idx]
    kkt[:m, m] = 1.0
    kkt[m, :m] = 1.0
    rhs = torch.cat([-b[idx], torch.ones(1, dtype=g.dtype, device=g.device)])
    try:
        sol = torch.linalg.solve(kkt, rhs)
    except RuntimeError:  # singular: the minimum-norm least-squares solution
        sol = torch.linalg.pinv(kkt) @ rhs
    w = torch.zeros_like(b)
    w[idx] = sol[:m]
    return w


def _simplex(g: Tensor, b: Tensor, tol: float = 1e-12) -> Tensor:
    k = b.numel()
    w = torch.full((k,), 1.0 / k, dtype=g.dtype, device=g.device)
    free = torch.ones(k, dtype=torch.bool, device=g.device)
    for _ in range(10 * k + 10):
        target = _affine(g, b, free)
        p = target - w
        if float(p.abs().max()) <= tol:
            grad = g @ w + b
            nu = -float(grad[free].mean())
            mult = grad + nu  # multipliers of the active bounds w_i >= 0
            mult[free] = math.inf
            i = int(mult.argmin())
            if float(mult[i]) >= -tol * max(1.0, float(grad.abs().max())):
                return w.clamp_min(0.0) / w.clamp_min(0.0).sum()
            free[i] = True
            continue
        step, block = 1.0, -1
        for i in (free & (p < 0)).nonzero().flatten().tolist():
            ratio = float(-w[i] / p[i])
            if ratio < step:
                step, block = ratio, i
        w = w + step * p
        if block >= 0:
            w[block] = 0.0
            free[block] = False
    raise RuntimeError("simplex QP did not converge (report this: it should be finite)")


def _members_dtype_device(
    members: nn.ModuleList, given: torch.dtype | None
) -> tuple[torch.dtype, torch.device | None]:
    """The members' floating dtype and device; without member tensors, the given weights' dtype
    (else the default dtype)."""
    for tensor in (*members.parameters(), *members.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return given or torch.get_default_dtype(), None


def _score_and_trace(fn, x: Tensor, v: Tensor | None) -> tuple[Tensor, Tensor]:
    """s(x) and tr ∇s(x) (exact when v is None, else the mean of vᵀ∇s v over v's rows), detached."""
    if v is None:
        s, tr = exact_trace(fn, x)
        return s.detach(), tr.detach()
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        s = fn(xr)
        if not isinstance(s, Tensor) or s.shape != x.shape:
            raise ValueError(f"a member must return a score of x's shape {tuple(x.shape)}")
        quad = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(v.shape[0]):
            if not s.requires_grad:
                break
            (jtv,) = torch.autograd.grad(s, xr, v[i], retain_graph=True, allow_unused=True)
            if jtv is not None:
                quad = quad + (jtv * v[i]).reshape(x.shape[0], -1).sum(1)
    return s.detach(), quad / v.shape[0]
