"""The scikit-learn density baselines the benchmarks compare against, scored per held-out point.

* ``fit_gmm`` — ``GaussianMixture`` with full covariances; K minimises the BIC on the training
  data over a coarse grid, then every K (step ⌈K/10⌉) between the coarse winner's neighbours.
* ``fit_kde`` — Gaussian ``KernelDensity``; the bandwidth maximises the 5-fold cross-validated
  log-likelihood (``GridSearchCV``) over a coarse log grid, then 7 values between the coarse
  winner's neighbours; test points are scored with ``rtol=1e-4`` (≤ 1e-4 nats).
* ``fit_gaussian`` — one Gaussian, maximum likelihood.

Each returns the per-point negative log-likelihood of ``test`` (in the units of the arrays it is
given) and the chosen setting.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bic_gmm", "fit_gaussian", "fit_gmm", "fit_kde"]


def bic_gmm(train: np.ndarray, coarse: tuple[int, ...]):
    """GaussianMixture (full covariances, ``random_state=0``) with K minimising the BIC: over
    ``coarse``, then every K (step ⌈K/10⌉) between the coarse winner's neighbours."""
    from sklearn.mixture import GaussianMixture

    fits: dict[int, tuple[float, GaussianMixture]] = {}

    def fit(k: int) -> None:
        if k not in fits:
            g = GaussianMixture(k, covariance_type="full", random_state=0).fit(train)
            fits[k] = (g.bic(train), g)

    for k in coarse:
        fit(k)
    best = min(fits, key=lambda k: fits[k][0])
    i = coarse.index(best)
    lo, hi = coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)]
    for k in range(lo, hi + 1, max(1, math.ceil(best / 10))):
        fit(k)
    return fits[min(fits, key=lambda k: fits[k][0])][1]


def fit_gmm(train: np.ndarray, test: np.ndarray, coarse: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """GaussianMixture (full covariances) with K chosen by BIC; returns per-point test NLL and K."""
    g = bic_gmm(train, coarse)
    return -g.score_samples(test), g.n_components


def fit_kde(train: np.ndarray, test: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, float]:
    """Gaussian KernelDensity, bandwidth by 5-fold GridSearchCV (coarse, then refined)."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity

    def search(grid: np.ndarray) -> float:
        # rtol bounds the relative error of each density in the tree sum (1e-4 → ≤ 1e-4 nats).
        cv = GridSearchCV(KernelDensity(kernel="gaussian", rtol=1e-4), {"bandwidth": grid}, cv=5)
        return float(cv.fit(train).best_params_["bandwidth"])

    best = search(coarse)
    ratio = coarse[1] / coarse[0]
    best = search(np.geomspace(best / ratio, best * ratio, 7))
    kde = KernelDensity(kernel="gaussian", bandwidth=best).fit(train)
    return -kde.score_samples(test), best


def fit_gaussian(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, int]:
    """One Gaussian N(mean, cov) fitted by maximum likelihood (a tiny ridge keeps it regular)."""
    from sklearn.mixture import GaussianMixture

    g = GaussianMixture(1, covariance_type="full", random_state=0).fit(train)
    return -g.score_samples(test), 1
