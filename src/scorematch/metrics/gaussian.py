"""The 2-Wasserstein (Fréchet, Bures–Wasserstein) distance between Gaussians, and the Fréchet
distance of two feature sets (Dowson & Landau 1982; the formula behind FID, Heusel et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import paired_samples

__all__ = ["bures_wasserstein", "frechet_distance", "gaussian_w2_squared"]


def _sym_sqrt(c: Tensor) -> Tensor:
    lam, vec = torch.linalg.eigh(c)
    return (vec * lam.clamp_min(0).sqrt()[..., None, :]) @ vec.transpose(-1, -2)


def gaussian_w2_squared(m1: Tensor, c1: Tensor, m2: Tensor, c2: Tensor) -> Tensor:
    """W2² between N(m1, C1) and N(m2, C2): ‖m1−m2‖² + tr(C1 + C2 − 2(√C1 C2 √C1)^{½}), batched,
    unchecked, in the given dtype (call it in float64)."""
    c1 = 0.5 * (c1 + c1.transpose(-1, -2))
    c2 = 0.5 * (c2 + c2.transpose(-1, -2))
    s1 = _sym_sqrt(c1)
    mid = s1 @ c2 @ s1
    mid = 0.5 * (mid + mid.transpose(-1, -2))
    # tr (Σ1 Σ2)^{½} = Σ √eig(√Σ1 Σ2 √Σ1): a symmetric PSD problem, unlike sqrtm(Σ1 Σ2).
    cross = torch.linalg.eigvalsh(mid).clamp_min(0).sqrt().sum(-1)
    tr = torch.diagonal(c1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(c2, dim1=-2, dim2=-1).sum(-1)
    out = (m1 - m2).square().sum(-1) + tr - 2 * cross
    return out.clamp_min(0)  # rounding can leave −1e-16 for equal laws


def _check_moments(mean: Tensor, cov: Tensor, name: str) -> tuple[Tensor, Tensor]:
    mean, cov = torch.as_tensor(mean), torch.as_tensor(cov)
    if mean.ndim < 1 or cov.ndim < 2 or cov.shape[-2:] != (mean.shape[-1], mean.shape[-1]):
        raise ValueError(
            f"{name}: mean must be (..., D) and cov (..., D, D), got {tuple(mean.shape)} and {tuple(cov.shape)}"
        )
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise ValueError(f"{name}: mean and cov must be finite")
    return mean, cov


def bures_wasserstein(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> Tensor:
    """2-Wasserstein distance between N(mean1, cov1) and N(mean2, cov2) (Dowson & Landau 1982):

    W2² = ‖μ₁−μ₂‖² + tr(Σ₁ + Σ₂ − 2(√Σ₁ Σ₂ √Σ₁)^{½}); the covariance part is the Bures metric.
    Computed in float64 through two symmetric eigendecompositions (stable for singular or
    non-commuting covariances). Means ``(..., D)`` and covariances ``(..., D, D)`` broadcast over
    leading batch dimensions; returns W2 (not squared) with that batch shape, in the inputs' dtype.
    """
    mean1, cov1 = _check_moments(mean1, cov1, "first Gaussian")
    mean2, cov2 = _check_moments(mean2, cov2, "second Gaussian")
    if mean1.shape[-1] != mean2.shape[-1]:
        raise ValueError(f"dimensions differ: {mean1.shape[-1]} and {mean2.shape[-1]}")
    dtype = torch.promote_types(mean1.dtype, mean2.dtype)
    dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    f = (v.to(torch.float64) for v in (mean1, cov1, mean2, cov2))
    return gaussian_w2_squared(*f).sqrt().to(dtype)


def _moments64(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.to(torch.float64)
    mean = x.mean(0)
    xc = x - mean
    return mean, xc.T @ xc / (x.shape[0] - 1)


def frechet_distance(x_features: Tensor, y_features: Tensor) -> Tensor:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
    Inception activations; Heusel et al. 2017):

    ‖μ_x − μ_y‖² + tr(Σ_x + Σ_y − 2(Σ_x Σ_y)^{½}),  i.e. the *squared* 2-Wasserstein distance of the
    fitted Gaussians, with unbiased (N − 1) covariances. Computed in float64 via the eigenvalues of
    √Σ_x Σ_y √Σ_x (symmetric, so no complex ``sqrtm`` round-off). Returns a 0-d tensor in the
    features' dtype.
    """
    x, y = paired_samples(x_features, y_features)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(
            f"need at least 2 samples per set to estimate covariances, got {x.shape[0]} and {y.shape[0]}"
        )
    m1, c1 = _moments64(x)
    m2, c2 = _moments64(y)
    return gaussian_w2_squared(m1, c1, m2, c2).to(x.dtype)
