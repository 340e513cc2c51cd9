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
        return _mixture_terms(x, weights.log(), means, lam, vecs, alpha, sigma)

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
        return _score_of(*self._component_terms(self._check_x(x)))

    def noised_score(
        self, x: Tensor, alpha: Tensor, sigma: Tensor, label: Tensor | None = None
    ) -> Tensor:
        """Score of the law of αx₀ + σε at x, with per-sample α, σ of shape ``(B,)``; with
        ``label`` ``(B,)`` row b gets that of component ``label[b]`` alone (−1: the mixture)."""
        log_comp, precision_diff = self._component_terms(self._check_x(x), alpha, sigma)
        if label is not None:
            log_comp = _only_label(log_comp, label)
        return _score_of(log_comp, precision_diff)

    def noised_log_prob(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """log-density of αx₀ + σε at x, per-sample α, σ of shape ``(B,)``."""
        log_comp, _ = self._component_terms(self._check_x(x), alpha, sigma)
        return torch.logsumexp(log_comp, dim=-1)

    # -- conditioning --------------------------------------------------------------------------
    def condition(self, known_index, known_values) -> GaussianMixture:
        """The exact law of the other coordinates given x_K = v: again a mixture.

        With K the known and U the other coordinates (in increasing order), Bayes' rule on each
        component gives (Bishop 2006, "Pattern Recognition and Machine Learning", §2.3.1 and §9.2)

            w_k' ∝ w_k N(v; μ_k,K, Σ_k,KK),
            μ_k' = μ_k,U + Σ_k,UK Σ_k,KK⁻¹ (v − μ_k,K),
            Σ_k' = Σ_k,UU − Σ_k,UK Σ_k,KK⁻¹ Σ_k,KU   (the Schur complement).

        Args:
            known_index: the known coordinates, as distinct indices ``(n,)`` or a boolean mask
                ``(D,)``.
            known_values: their values ``(n,)``, in the order of ``known_index``.
        Returns:
            a ``GaussianMixture`` on the D − n unknown coordinates (weights computed in log space,
            so far-away values keep the nearest component instead of underflowing).
        """
        known = _index(known_index, self.dim)
        values = _as_tensor(known_values, self.dtype, self.device)
        if values.shape != known.shape:
            raise ValueError(
                f"known_values must have shape {tuple(known.shape)} (one per known index), "
                f"got {tuple(values.shape)}"
            )
        if not bool(torch.isfinite(values).all()):
            raise ValueError("known_values must be finite")
        order = torch.argsort(known)
        known, values = known[order], values[order]
        unknown = _complement(known, self.dim)
        if unknown.numel() == 0:
            raise ValueError("every coordinate is known: nothing is left to condition")
        log_w, means, covs = self.conditional_parts(known, unknown, values[None])
        return GaussianMixture(means[0], covs, torch.softmax(log_w[0], 0))

    def conditional_parts(
        self, known: Tensor, modelled: Tensor, values: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The law of x_M given x_K = v for a batch of values: per-row log-weights ``(B, K)``
        (unnormalised: log w_k + log N(v; μ_k,K, Σ_k,KK)), per-row means ``(B, K, |M|)`` and the
        shared covariances ``(K, |M|, |M|)`` (see :meth:`condition`).  ``known`` and ``modelled``
        are disjoint index tensors; coordinates in neither are marginalised out (dropped)."""
        values = values.to(self.dtype)
        covs, means = self.covs, self.means
        s_mm = covs[:, modelled][:, :, modelled]
        mu_m = means[:, modelled]
        log_w = self.weights.log().expand(values.shape[0], -1)
        if known.numel() == 0:
            return log_w, mu_m.expand(values.shape[0], -1, -1), s_mm
        s_kk = covs[:, known][:, :, known]
        s_mk = covs[:, modelled][:, :, known]
        chol = torch.linalg.cholesky(s_kk)  # (K, n, n)
        diff = values[:, None, :] - means[None, :, known]  # (B, K, n)
        solved = torch.cholesky_solve(diff.unsqueeze(-1), chol).squeeze(-1)  # Σ_KK⁻¹(v − μ_K)
        maha = (diff * solved).sum(-1)
        logdet = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        log_w = log_w - 0.5 * (maha + logdet + known.numel() * math.log(2 * math.pi))
        cond_means = mu_m + torch.einsum("kmj,bkj->bkm", s_mk, solved)
        gain = torch.cholesky_solve(s_mk.transpose(-1, -2), chol)  # Σ_KK⁻¹ Σ_KM
        schur = s_mm - s_mk @ gain
        return log_w, cond_means, 0.5 * (schur + schur.transpose(-1, -2))

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

    It takes the conditioning keywords of the networks (``conditioning``), exactly:

    * ``label`` ``(B,)``: the mixture's components are its classes; row b gets the score of
      component ``label[b]`` alone (−1: the whole mixture).
    * ``mask``, ``known``, ``absent`` ``(B, D)``: row b gets, on its modelled coordinates
      M = ¬mask ∧ ¬absent, the score of p_t(x_M | x₀,K = known_K) with K = mask — the law of
      ``condition`` restricted to M (absent coordinates marginalised), noised — and 0 elsewhere.
      This is the score a mask-conditional network learns (``scorematch.conditional``).
    """

    conditioning = ("label", "mask")

    def __init__(self, mixture: GaussianMixture, process) -> None:
        super().__init__()
        self.mixture = mixture
        self.process = process
        self.register_buffer("_anchor", torch.zeros((), dtype=mixture.dtype, device=mixture.device))

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.mixture = self.mixture.to(device=self._anchor.device)
        return out

    def forward(
        self,
        x: Tensor,
        t: Tensor | float,
        *,
        label: Tensor | None = None,
        known: Tensor | None = None,
        mask: Tensor | None = None,
        absent: Tensor | None = None,
    ) -> Tensor:
        t = broadcast_time(t, x)
        alpha, sigma = self.process.marginal(t)
        if mask is None and absent is None:
            return self.mixture.noised_score(x, alpha, sigma, label)
        return self._conditional_score(x, alpha, sigma, label, known, mask, absent)

    def _conditional_score(self, x, alpha, sigma, label, known, mask, absent) -> Tensor:
        mix = self.mixture.to(device=x.device, dtype=x.dtype)
        shape = tuple(x.shape)
        mask = torch.zeros_like(x, dtype=torch.bool) if mask is None else mask.bool()
        absent = torch.zeros_like(mask) if absent is None else absent.bool()
        known = torch.zeros_like(x) if known is None else known.to(x.dtype)
        if not mask.shape == absent.shape == known.shape == shape:
            raise ValueError(f"mask, known and absent must have x's shape {shape}")
        out = torch.zeros_like(x)
        patterns, which = torch.unique(torch.cat([mask, absent], 1), dim=0, return_inverse=True)
        for p, pattern in enumerate(patterns):
            rows = (which == p).nonzero().reshape(-1)
            k_idx = pattern[: mix.dim].nonzero().reshape(-1)
            m_idx = (~pattern[: mix.dim] & ~pattern[mix.dim :]).nonzero().reshape(-1)
            if m_idx.numel() == 0:
                continue
            log_w, means, covs = mix.conditional_parts(k_idx, m_idx, known[rows][:, k_idx])
            lam, vecs = torch.linalg.eigh(covs)
            log_comp, precision_diff = _mixture_terms(
                x[rows][:, m_idx], log_w, means, lam, vecs, alpha[rows], sigma[rows]
            )
            if label is not None:
                log_comp = _only_label(log_comp, label[rows])
            out[rows[:, None], m_idx[None, :]] = _score_of(log_comp, precision_diff)
        return out

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


def _mixture_terms(x, log_w, means, lam, vecs, alpha=None, sigma=None):
    """log w_k N(x; αμ_k, α²Σ_k + σ²I) and (α²Σ_k + σ²I)^{-1}(x − αμ_k) for every (sample, component).

    ``log_w`` is ``(K,)`` or per sample ``(B, K)``, ``means`` ``(K, D)`` or ``(B, K, D)``; ``lam``,
    ``vecs`` (``(K, D)``, ``(K, D, D)``) are the eigendecomposition Σ_k = U diag(λ) Uᵀ; α, σ ``(B,)``
    or None (the clean law).  Returns ``(B, K)`` and ``(B, K, D)``.
    """
    if alpha is None:
        diff = x[:, None, :] - means  # (B, K, D)
        lam_b = lam[None]  # (1, K, D)
    else:
        diff = x[:, None, :] - alpha[:, None, None] * means
        lam_b = alpha[:, None, None] ** 2 * lam[None] + sigma[:, None, None] ** 2
    rot = torch.einsum("kji,bkj->bki", vecs, diff)  # Uᵀ(x − μ)
    scaled = rot / lam_b
    maha = (rot * scaled).sum(-1)
    logdet = lam_b.log().sum(-1)
    d = x.shape[1]
    log_comp = log_w - 0.5 * (maha + logdet + d * math.log(2 * math.pi))
    precision_diff = torch.einsum("kij,bkj->bki", vecs, scaled)  # U diag(1/λ) Uᵀ(x − μ)
    return log_comp, precision_diff


def _only_label(log_comp: Tensor, label: Tensor) -> Tensor:
    """Keep component label[b] of row b (all of them where the label is −1)."""
    label = torch.as_tensor(label, device=log_comp.device).long().expand(log_comp.shape[0])
    k = torch.arange(log_comp.shape[1], device=log_comp.device)
    keep = (label[:, None] < 0) | (k[None, :] == label[:, None])
    return log_comp.masked_fill(~keep, -math.inf)


def _score_of(log_comp: Tensor, precision_diff: Tensor) -> Tensor:
    """−Σ_k r_k (α²Σ_k + σ²I)⁻¹(x − αμ_k) with r = softmax(log_comp)."""
    return -(torch.softmax(log_comp, dim=-1)[:, :, None] * precision_diff).sum(1)


def _index(index, dim: int) -> Tensor:
    """Distinct coordinate indices in [0, dim) from indices or a boolean mask ``(dim,)``."""
    t = torch.as_tensor(index)
    if t.dtype == torch.bool:
        if t.shape != (dim,):
            raise ValueError(
                f"a boolean known_index must have shape ({dim},), got {tuple(t.shape)}"
            )
        return t.nonzero().reshape(-1)
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if t.is_floating_point() or t.ndim > 1:
        raise ValueError(f"known_index must be integer indices (n,) or a boolean mask ({dim},)")
    t = t.reshape(-1).long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= dim):
        raise ValueError(f"known_index must lie in [0, {dim}), got {t.tolist()}")
    if t.unique().numel() != t.numel():
        raise ValueError(f"known_index must not repeat an index, got {t.tolist()}")
    return t


def _complement(index: Tensor, dim: int) -> Tensor:
    keep = torch.ones(dim, dtype=torch.bool)
    keep[index] = False
    return keep.nonzero().reshape(-1)


def _number(value: float | Tensor, name: str) -> float:
    if isinstance(value, Tensor) and value.numel() != 1:
        raise ValueError(
            f"{name} must be a number (one law), got a tensor of shape {tuple(value.shape)}; "
            "use score_model(process) for per-sample times"
        )
    return float(value)
