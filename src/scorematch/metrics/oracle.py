"""A learned score or density against a known one: the Fisher divergence to a ``GaussianMixture``'s
exact score at a noise level, and the exact negative-log-likelihood gap to its density.

Both compare with the law the model actually targets at time t, the mixture noised by the process,
p_t = law of α_t x₀ + σ_t ε (``GaussianMixture.perturbed``); without a process, the clean mixture.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_positive_int

__all__ = ["fisher_divergence", "nll_gap"]


def _law(mixture, process, t):
    """p_t and the t to call the model with (None: an unconditional score function)."""
    if process is None:
        if t is not None:
            raise ValueError("t needs a process (the noise level t means nothing without one)")
        return mixture, None
    if t is None:
        t = process.t_min
    t = float(t)
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"t must be a finite time >= 0, got {t}")
    alpha, sigma = process.marginal(torch.tensor(t, dtype=torch.float64))
    return mixture.perturbed(float(alpha), float(sigma)), t


def _model_dtype_device(model) -> tuple[torch.dtype | None, torch.device | None]:
    """The floating dtype and device of a module's first floating tensor (None for functions)."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
    return None, None


def _points(law, x: Tensor | None, n: int, generator) -> Tensor:
    if x is None:
        return law.sample(check_positive_int(n, "n"), generator=generator)
    check_batch(x, "x")
    if x.ndim != 2 or x.shape[1] != law.dim:
        raise ValueError(f"x must have shape (batch, {law.dim}), got {tuple(x.shape)}")
    return x


def fisher_divergence(
    model: Callable[..., Tensor],
    mixture,
    *,
    process=None,
    t: float | None = None,
    x: Tensor | None = None,
    n: int = 4096,
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Fisher divergence F = E_{p_t}‖s_θ(x, t) − ∇ₓlog p_t(x)‖² of a score model against a mixture.

    p_t is the law of α_t x₀ + σ_t ε with x₀ ~ ``mixture`` (``process.marginal(t)``), whose score is
    exact; ESM (Hyvärinen 2005) is ½F.  Without ``process`` the model is an unconditional score
    function ``model(x)`` compared with the clean mixture; with one, it is called ``model(x, t)``
    (t = ``process.t_min`` by default, the level a sampler ends at).  The expectation is a Monte
    Carlo mean over ``n`` exact samples of p_t drawn with ``generator`` (or over the given ``x``,
    which must then be samples of p_t), evaluated ``batch_size`` rows at a time without gradients.

    Returns a dict of floats: ``fisher`` (F), ``stderr`` (its Monte Carlo standard error),
    ``scale`` = E‖∇log p_t‖² (the F of the zero score, for scale), ``relative`` = F / scale,
    ``t`` (nan without a process) and ``n``.
    """
    if not callable(model):
        raise ValueError(f"model must be callable, got {type(model).__name__}")
    law, t = _law(mixture, process, t)
    x = _points(law, x, n, generator)
    check_positive_int(batch_size, "batch_size")
    exact = law.to(device=x.device, dtype=torch.float64)
    dtype, device = _model_dtype_device(model)  # a module is fed its own dtype and device
    errors, scales = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            xm = xb.to(dtype=dtype or xb.dtype, device=device or xb.device)
            s = model(xm) if t is None else model(xm, torch.full((xm.shape[0],), t, dtype=xm.dtype, device=xm.device))  # fmt: skip
            if not isinstance(s, Tensor) or s.shape != xb.shape:
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ValueError(f"model must return a score of x's shape {tuple(xb.shape)}, got {got}")  # fmt: skip
            true = exact.score(xb.to(torch.float64))
            errors.append((s.to(device=xb.device, dtype=torch.float64) - true).square().sum(1))
            scales.append(true.square().sum(1))
    err, scale = torch.cat(errors), torch.cat(scales)
    if not bool(torch.isfinite(err).all()):
        raise ValueError("the model returned NaN or inf scores on samples of p_t")
    value = float(err.mean())
    return {
        "fisher": value,
        "stderr": float(err.std() / math.sqrt(err.numel())) if err.numel() > 1 else math.nan,
        "scale": float(scale.mean()),
        "relative": value / float(scale.mean()) if float(scale.mean()) > 0 else math.nan,
        "t": math.nan if t is None else t,
        "n": int(err.numel()),
    }


def nll_gap(
    log_prob: Tensor, x: Tensor, mixture, *, process=None, t: float | None = None
) -> dict[str, float]:
    """The model's held-out NLL against the exact NLL of the law it targets, on the same points.

    With x ~ p_t (the mixture, or its noised law at t under ``process``; t = ``process.t_min`` by
    default, the level ``log_likelihood`` reports) and ``log_prob`` the model's log-density at x,

        gap = mean(log p_t(x) − log_prob(x)),  an unbiased estimate of KL(p_t ‖ p_θ) ≥ 0,

    with its paired standard error (the same points in both terms, so the data's own spread of
    log p cancels).  Returns ``nll`` (the model's), ``nll_true`` (the exact density's), ``gap``,
    ``stderr``, ``t`` (nan without a process) and ``n``.
    """
    law, t = _law(mixture, process, t)
    check_batch(x, "x")
    log_prob = torch.as_tensor(log_prob).reshape(-1).to(torch.float64)
    if log_prob.numel() != x.shape[0]:
        raise ValueError(f"log_prob must hold one value per row of x ({x.shape[0]}), got {log_prob.numel()}")  # fmt: skip
    if not bool(torch.isfinite(log_prob).all()):
        raise ValueError("log_prob contains NaN or infinite values")
    exact = law.to(device=x.device, dtype=torch.float64)
    true = exact.log_prob(x.to(torch.float64)).cpu()
    diff = true - log_prob.cpu()
    return {
        "nll": float(-log_prob.mean()),
        "nll_true": float(-true.mean()),
        "gap": float(diff.mean()),
        "stderr": float(diff.std() / math.sqrt(diff.numel())) if diff.numel() > 1 else math.nan,
        "t": math.nan if t is None else t,
        "n": int(diff.numel()),
    }
