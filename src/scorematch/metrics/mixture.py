"""A low-noise measure of a sampler against a known ``GaussianMixture``: the mode-weight error and
the per-mode Bures–Wasserstein error, each against the same figures of exact samples."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_batch
from ._common import flatten_samples
from .gaussian import gaussian_w2_squared

__all__ = ["mixture_error", "mixture_figures"]


def mixture_figures(x: Tensor, mix, n_bad: int = 0) -> tuple[float, float]:
    """(weight error, Σ_k w_k BW(r_k-weighted moments, component k)) of finite samples x, with
    ``n_bad`` further non-finite samples counted as a spurious mode of true weight 0."""
    r = mix.responsibilities(x)  # (n, K)
    mass = r.sum(0)
    n = x.shape[0] + n_bad
    weight_error = 0.5 * (float((mass / n - mix.weights).abs().sum()) + n_bad / n)
    terms = []
    for k in range(mix.n_components):
        rk = r[:, k]
        if not mass[k] > 0:  # the mode got no responsibility at all (underflow far from it)
            terms.append(torch.tensor(math.inf, dtype=x.dtype, device=x.device))
            continue
        m_k = (rk @ x) / mass[k]
        xc = x - m_k
        # Reliability-weights normaliser V1 − V2/V1 removes the small-sample bias of the covariance.
        # With fewer than D + 1 effective samples (n_eff = V1²/V2) it nears 0 and the covariance
        # explodes, so such a mode keeps the plain weighted covariance (normaliser V1).
        v2 = rk.square().sum()
        if mass[k] ** 2 / v2 >= x.shape[1] + 1:
            norm = mass[k] - v2 / mass[k]
        else:
            norm = mass[k]
        c_k = (xc * rk[:, None]).T @ xc / norm
        terms.append(gaussian_w2_squared(m_k, c_k, mix.means[k], mix.covs[k]).sqrt())
    bures = float((mix.weights * torch.stack(terms)).sum())
    return weight_error, bures


def mixture_error(
    x: Tensor,
    mixture,
    *,
    reference_samples: Tensor | None = None,
    reference_draws: int = 8,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Measure samples ``x`` against a known ``GaussianMixture`` with two low-noise figures.

    Sliced or plain Wasserstein distances between sample sets are dominated by the random count of
    samples per mode and swing by 2–3× between seeds. With r_k(x) the exact posterior
    responsibilities of the (clean) mixture:

    (a) ``weight_error`` = ½ Σ_k |mean_i r_k(x_i) − w_k|: the total-variation distance between mode
        weights. Each mean r_k is unbiased (E_p r_k = w_k), so for exact samples the figure is pure
        sampling noise of order √(w_k(1 − w_k)/n) per mode; its mean over the reference sets is
        reported as ``weight_error_exact`` (non-finite samples: see below).
    (b) ``bures`` = Σ_k w_k BW((m_k, C_k), (μ_k, Σ_k)), with m_k, C_k the r_k-weighted mean and
        covariance of the finite samples and BW the 2-Wasserstein distance between Gaussians.

    Both figures are consistent whatever the overlap of the components: r_k p = w_k N(μ_k, Σ_k), so
    E_p[r_k] = w_k, E_p[r_k x] = w_k μ_k and E_p[r_k (x − μ_k)(x − μ_k)ᵀ] = w_k Σ_k. But BW is a
    distance, so at finite n estimation noise makes (b) positive even for exact samples, and more so
    when components overlap (fewer effective samples per mode). (b) is therefore also computed for
    ``reference_draws`` exact sample sets of the same size (or for disjoint size-n chunks of
    ``reference_samples``) and ``bures_excess`` = bures − their mean: ≈ 0 for an exact sampler.
    Averaging several references makes their noise small next to that of ``x`` itself (a large
    reference sample would instead give the n → ∞ value ≈ 0 and leave the noise floor in the
    excess); ``bures_noise``, the references' standard deviation, is the sampling noise of
    ``bures`` at this n — the yardstick to judge ``bures_excess`` by.

    A mode with fewer than D + 1 effective samples (n_eff = (Σ r_k)² / Σ r_k²) has no unbiased
    covariance estimate; its moments use the plain r_k-weighted covariance instead, so a mode that
    kept a single sample scores about √(‖x − μ_k‖² + tr Σ_k), not an overflow.

    Non-finite rows are counted (``nonfinite``), left out of the moments, and enter ``weight_error``
    as an extra mode with true weight 0: weight_error = ½(Σ_k |Σ_i r_ik / n − w_k| + n_bad / n),
    so a sampler that diverges on a fraction q of its samples scores at least q.

    Summary: ``total`` = weight_error + max(bures_excess, 0) / scale, with scale =
    √(Σ_k w_k tr Σ_k / D) the RMS per-coordinate standard deviation of the components: both terms
    are unit-free, and 0 is perfect.

    Args:
        x: samples ``(n, D)`` (or ``(n, *event)`` with D elements).
        mixture: a ``scorematch.GaussianMixture`` (its own clean law, not a noised one).
        reference_samples: exact samples ``(M, D)``, M ≥ n, used instead of fresh draws.
        reference_draws: number of fresh exact sample sets of size n (default 8).
        generator: generator for the fresh draws; default a seed-0 generator on x's device, so
            the result is deterministic.
    Returns:
        dict of floats: weight_error, weight_error_exact (the mean figure of exact samples),
        bures, bures_exact, bures_noise (NaN with a single reference set), bures_excess, scale,
        total, and the ints nonfinite, n. Cost: one responsibility pass per reference set.
    """
    check_batch(x, "x", finite=False)
    n = x.shape[0]
    x = x.reshape(n, -1)
    if x.shape[1] != mixture.dim:
        raise ValueError(f"x must have {mixture.dim} features per sample, got {x.shape[1]}")
    reference_draws = int(reference_draws)
    if reference_samples is None and reference_draws < 1:
        raise ValueError(f"reference_draws must be a positive integer, got {reference_draws}")
    mix = mixture.to(device=x.device, dtype=torch.float64)
    x = x.to(torch.float64)
    finite = torch.isfinite(x).all(1)
    n_bad = int((~finite).sum())
    xf = x[finite]
    n_good = n - n_bad

    # Reference sets of the same size as the finite part of x.
    if reference_samples is not None:
        ref = flatten_samples(reference_samples, "reference_samples").to(
            device=x.device, dtype=torch.float64
        )
        if ref.shape[1] != mixture.dim:
            raise ValueError(
                f"reference_samples must have {mixture.dim} features, got {ref.shape[1]}"
            )
        size = max(n_good, 1)
        if ref.shape[0] < size:
            raise ValueError(
                f"reference_samples must hold at least as many samples as x ({size}), got {ref.shape[0]}"
            )
        refs = list(ref[: (ref.shape[0] // size) * size].split(size))
    else:
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        size = max(n_good, 1)
        refs = [mix.sample(size, generator=generator) for _ in range(reference_draws)]
    ref_figs = torch.tensor([mixture_figures(r, mix) for r in refs], dtype=torch.float64)
    weight_exact = float(ref_figs[:, 0].mean())
    bures_exact = float(ref_figs[:, 1].mean())
    bures_noise = float(ref_figs[:, 1].std()) if len(refs) > 1 else math.nan

    if n_good > 0:
        w_err, bures = mixture_figures(xf, mix, n_bad)
    else:
        w_err, bures = 1.0, math.inf
    excess = bures - bures_exact
    scale = math.sqrt(
        float((mix.weights * torch.diagonal(mix.covs, dim1=-2, dim2=-1).sum(-1)).sum()) / mix.dim
    )
    return {
        "weight_error": w_err,
        "weight_error_exact": weight_exact,
        "bures": bures,
        "bures_exact": bures_exact,
        "bures_noise": bures_noise,
        "bures_excess": excess,
        "scale": scale,
        "total": w_err + max(excess, 0.0) / scale,
        "nonfinite": n_bad,
        "n": n,
    }
