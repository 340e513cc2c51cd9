"""Analytic oracles: Gaussians and Gaussian mixtures with exact densities and scores.

A mixture p(x) = Σ_k w_k N(x; μ_k, Σ_k) stays a mixture under the noising map x ↦ αx + σε,
ε ~ N(0, I):  p_{α,σ}(x) = Σ_k w_k N(x; αμ_k, α²Σ_k + σ²I).  Every covariance is stored through its
eigendecomposition Σ_k = U_k diag(λ_k) U_kᵀ, so the noised covariance α²Σ_k + σ²I = U_k diag(α²λ_k + σ²)
U_kᵀ is solved and log-determined exactly for any (α, σ), per sample, without refactorising and
without forming an inverse.  Log-densities combine components with logsumexp, so scores stay finite
far from every mode.  These classes are the ground truth that the tests and benchmarks measure against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import broadcast_time, check_batch, draw_device, randn


def _as_tensor(value, dtype: torch.dtype | None, device=None) -> Tensor:
    t = torch.as_tensor(value, device=device)
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


class GaussianMixture:
    """Mixture of K full-covariance Gaussians in D dimensions.

    Args:
        means: ``(K, D)`` component means.
        covs: ``(K, D, D)`` symmetric positive-definite covariances (``(K, D)`` is read as diagonals).
        weights: ``(K,)`` non-negative weights (normalised here); uniform when omitted.
        dtype: dtype of the stored parameters (default: that of ``means``, float32 for ints).
    """

    def __init__(self, means, covs, weights=None, *, dtype: torch.dtype | None = None) -> None:
        means = _as_tensor(means, dtype)
        dtype = means.dtype
        covs = _as_tensor(covs, dtype, means.device)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        if covs.ndim == 2 and covs.shape == (k, d):
            covs = torch.diag_embed(covs)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape ({k}, {d}, {d}), got {tuple(covs.shape)}")
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=dtype, device=means.device)
        weights = _as_tensor(weights, dtype, means.device)
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {tuple(weights.shape)}")
        if not (torch.isfinite(means).all() and torch.isfinite(covs).all()):
            raise ValueError("means and covs must be finite")
        if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative, finite and not all zero")
        if not torch.allclose(covs, covs.transpose(-1, -2), rtol=1e-5, atol=1e-8):
            raise ValueError("covs must be symmetric")
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        lam, vecs = torch.linalg.eigh(covs)
        if (lam <= 0).any():
            raise ValueError(
                f"covs must be positive definite (smallest eigenvalue {lam.min():.3g})"
            )
        self.means, self.covs = means, covs
        self.weights = weights / weights.sum()
        self._eigvals, self._eigvecs = lam, vecs

    # -- basic facts -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        return self.means.device

    def mean(self) -> Tensor:
        """Mixture mean Σ_k w_k μ_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance Σ_k w_k (Σ_k + μ_k μ_kᵀ) − m mᵀ."""
        m = self.mean()
        second = torch.einsum(
            "k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :]
        )
        return second - m[:, None] * m[None, :]

    def to(self, device=None, dtype: torch.dtype | None = None) -> GaussianMixture:
        dtype = dtype or self.dtype
        return type(self)._from_parts(self, device, dtype)

    @classmethod
    def _from_parts(cls, other: GaussianMixture, device, dtype) -> GaussianMixture:
        new = cls.__new__(cls)
        for name in ("means", "covs", "weights", "_eigvals", "_eigvecs"):
            setattr(new, name, getattr(other, name).to(device=device, dtype=dtype))
        return new

    def perturbed(self, alpha: float, sigma: float) -> GaussianMixture:
        """Exact law of α·x₀ + σ·ε with x₀ ~ self and ε ~ N(0, I): components N(αμ_k, α²Σ_k + σ²I).

        α and σ are numbers (or one-element tensors): one law.  For one time per sample use
        ``score_model(process)``, which evaluates the perturbed score per sample.
        """
        alpha, sigma = _number(alpha, "alpha"), _number(sigma, "sigma")
        if not math.isfinite(alpha) or not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"need finite alpha and sigma >= 0, got alpha={alpha}, sigma={sigma}")
        new = type(self).__new__(type(self))
        new.means = alpha * self.means
        new._eigvals = alpha**2 * self._eigvals + sigma**2
        if (new._eigvals <= 0).any():
            raise ValueError("perturbed covariance is singular (alpha = 0 and sigma = 0)")
        new._eigvecs = self._eigvecs
        new.covs = (new._eigvecs * new._eigvals[:, None, :]) @ new._eigvecs.transpose(-1, -2)
        new.weights = self.weights
        return new

    def affine(self, scale, shift=0.0) -> GaussianMixture:
        """Exact law of A·x + b with x ~ self: components N(Aμ_k + b, AΣ_kAᵀ), same weights.

        ``scale`` is A: a number, a ``(D,)`` vector (element-wise, A = diag(scale)) or an
        invertible ``(D, D)`` matrix; ``shift`` is b, a number or a ``(D,)`` vector.  With
        y = Ax + b the density and score follow the change of variables,
        log q(y) = log p(x) − log|det A| and ∇_y log q(y) = A^{−T} ∇ₓ log p(x): e.g. the law of
        standardised data z = (x − μ)/s is ``affine(1 / s, −μ / s)``.
        """
        d, dtype, device = self.dim, self.dtype, self.device
        a = torch.as_tensor(scale, dtype=dtype, device=device)
        b = torch.as_tensor(shift, dtype=dtype, device=device)
        if a.ndim == 0 or a.shape == (d,):
            a = torch.diag_embed(a.expand(d))
        if a.shape != (d, d):
            raise ValueError(f"scale must be a number, a ({d},) vector or a ({d}, {d}) matrix, got shape {tuple(a.shape)}")  # fmt: skip
        if b.ndim == 0:
            b = b.expand(d)
        if b.shape != (d,):
            raise ValueError(f"shift must be a number or a ({d},) vector, got shape {tuple(b.shape)}")  # fmt: skip
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ValueError("scale and shift must be finite")
        if torch.linalg.matrix_rank(a.to(torch.float64)) < d:
            raise ValueError("scale must be invertible (the image of a density under a singular map has none)")  # fmt: skip
        covs = a @ self.covs @ a.T
        new = type(self).__new__(type(self))
        new.means = self.means @ a.T + b
        new.covs = 0.5 * (covs + covs.transpose(-1, -2))
        new.weights = self.weights
        new._eigvals, new._eigvecs = torch.linalg.eigh(new.covs)
        if (new._eigvals <= 0).any():
            raise ValueError("the mapped covariances are not positive definite (scale too ill-conditioned)")  # fmt: skip
        return new

    # -- sampling and densities ------------------------------------------------------------------
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw n exact samples, shape ``(n, D)``."""
        if int(n) < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        n = int(n)
        # Draw where the generator lives, then move: the same seed gives the same samples anywhere.
        where = draw_device(generator, self.device)
        k = torch.multinomial(self.weights.to(where), n, replacement=True, generator=generator)
        k = k.to(self.device)
        eps = randn((n, self.dim), generator, device=self.device, dtype=self.dtype)
        root = self._eigvecs * self._eigvals.sqrt()[:, None, :]  # U diag(√λ): a square root of Σ
        return self.means[k] + torch.einsum("nij,nj->ni", root[k], eps)

    def _params_like(self, x: Tensor):
        p = (self.means, self.weights, self._eigvals, self._eigvecs)
        return [v.to(device=x.device, dtype=x.dtype) for v in p]

    def _check_x(self, x: Tensor) -> Tensor:
        check_batch(x, "x", finite=False)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        return x

    def _component_terms(self, x: Tensor, alpha: Tensor | None = None, sigma: Tensor | None = None):
        """Per-component log w_k N(x; αμ_k, α²Σ_k+σ²I) and Σ_k'^{-1}(x − αμ_k), batched over (B, K)."""
        means, weights, lam, vecs = self._params_like(x)
        if alpha is None:
            diff = x[:, None, :] - means[None]  # (B, K, D)
            lam_b = lam[None]  # (1, K, D)
        else:
            diff = x[:, None, :] - alpha[:, None, None] * means[None]
            lam_b = alpha[:, None, None] ** 2 * lam[None] + sigma[:, None, None] ** 2
        rot = torch.einsum("kji,bkj->bki", vecs, diff)  # Uᵀ(x − μ)
        scaled = rot / lam_b
        maha = (rot * scaled).sum(-1)
        logdet = lam_b.log().sum(-1)
        d = x.shape[1]
        log_comp = weights.log()[None] - 0.5 * (maha + logdet + d * math.log(2 * math.pi))
        precision_diff = torch.einsum("kij,bkj->bki", vecs, scaled)  # U diag(1/λ) Uᵀ(x − μ)
        return log_comp, precision_diff

    def component_log_prob(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; μ_k, Σ_k) for every sample and component, shape ``(B, K)``."""
        return self._component_terms(self._check_x(x))[0]

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities r_k(x) = w_k N_k(x) / p(x), shape ``(B, K)``."""
        return torch.softmax(self.component_log_prob(x), dim=-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per sample, shape ``(B,)``."""
        return torch.logsumexp(self.component_log_prob(x), dim=-1)

    def score(self, x: Tensor) -> Tensor:
        """∇ₓ log p(x) = −Σ_k r_k(x) Σ_k^{-1}(x − μ_k), shape ``(B, D)``."""
        log_comp, precision_diff = self._component_terms(self._check_x(x))
        r = torch.softmax(log_comp, dim=-1)
        return -(r[:, :, None] * precision_diff).sum(1)

    def noised_score(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Score of the law of αx₀ + σε at x, with per-sample α, σ of shape ``(B,)``."""
        log_comp, precision_diff = self._component_terms(self._check_x(x), alpha, sigma)
        r = torch.softmax(log_comp, dim=-1)
        return -(r[:, :, None] * precision_diff).sum(1)

    def noised_log_prob(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """log-density of αx₀ + σε at x, per-sample α, σ of shape ``(B,)``."""
        log_comp, _ = self._component_terms(self._check_x(x), alpha, sigma)
        return torch.logsumexp(log_comp, dim=-1)

    def score_model(self, process) -> MixtureScoreModel:
        """The exact time-dependent score model (x, t) ↦ ∇ₓ log p_t(x) under ``process``."""
        return MixtureScoreModel(self, process)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(K={self.n_components}, D={self.dim}, dtype={self.dtype})"


class Gaussian(GaussianMixture):
    """A single Gaussian N(mean, cov); ``cov`` may be a full ``(D, D)`` matrix or a ``(D,)`` diagonal."""

    def __init__(self, mean, cov, *, dtype: torch.dtype | None = None) -> None:
        mean = _as_tensor(mean, dtype)
        cov = _as_tensor(cov, mean.dtype, mean.device)
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (D,), got {tuple(mean.shape)}")
        if cov.ndim == 1:
            cov = torch.diag(cov)
        super().__init__(mean[None], cov[None], None)

    @property
    def mean_vector(self) -> Tensor:
        return self.means[0]

    @property
    def cov(self) -> Tensor:
        return self.covs[0]


class MixtureScoreModel(nn.Module):
    """Exact score model of a mixture noised by a process: ∇ₓ log p_t(x), p_t = law of α_t x₀ + σ_t ε.

    Called as ``model(x, t)`` with t a scalar or ``(B,)``; each sample uses its own (α_t, σ_t).
    An ``nn.Module`` so that ``.to(device)`` and parameter-free device discovery work like a network.
    """

    def __init__(self, mixture: GaussianMixture, process) -> None:
        super().__init__()
        self.mixture = mixture
        self.process = process
        self.register_buffer("_anchor", torch.zeros((), dtype=mixture.dtype, device=mixture.device))

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.mixture = self.mixture.to(device=self._anchor.device)
        return out

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = broadcast_time(t, x)
        alpha, sigma = self.process.marginal(t)
        return self.mixture.noised_score(x, alpha, sigma)

    def log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """log p_t(x) per sample (exact)."""
        t = broadcast_time(t, x)
        alpha, sigma = self.process.marginal(t)
        return self.mixture.noised_log_prob(x, alpha, sigma)

    def denoise(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Posterior mean E[x₀ | x_t = x] = (x + σ_t² ∇log p_t(x)) / α_t (Tweedie)."""
        t = broadcast_time(t, x)
        alpha, sigma = self.process.marginal(t)
        s = self.mixture.noised_score(x, alpha, sigma)
        return (x + sigma[:, None] ** 2 * s) / alpha[:, None]


def _number(value: float | Tensor, name: str) -> float:
    if isinstance(value, Tensor) and value.numel() != 1:
        raise ValueError(
            f"{name} must be a number (one law), got a tensor of shape {tuple(value.shape)}; "
            "use score_model(process) for per-sample times"
        )
    return float(value)
