"""Distances between two sample sets: sliced Wasserstein, exact Wasserstein-1, MMD and energy
distance.

All take samples of shape ``(batch, *event_shape)`` (events are flattened), work in float32 or
float64 on any device, and return 0-d tensors.  Pairwise sums are computed in row blocks so ~10k
samples fit in a few tens of MB.

- ``sliced_wasserstein``: SW_p (Rabin et al. 2011; Bonneel et al. 2015).
- ``wasserstein1``: exact W1 of two equal-size sets, by the optimal assignment (Kuhn 1955).
- ``mmd``: squared maximum mean discrepancy (Gretton et al. 2012, JMLR 13).
- ``energy_distance``: Székely & Rizzo (2013), "Energy statistics".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import randn
from ._common import paired_samples

__all__ = ["energy_distance", "mmd", "sliced_wasserstein", "wasserstein1"]

# Pairwise blocks hold at most this many entries (4M floats = 16 MB in float32).
BLOCK = 1 << 22


# -- sliced Wasserstein -------------------------------------------------------------------------


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    *,
    projections: int = 256,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced p-Wasserstein distance SW_p(x, y) = (E_θ W_p^p(θᵀx, θᵀy))^{1/p}, θ uniform on the sphere.

    Rabin, Peyré, Delon & Bernot (2011); Bonneel et al. (2015). The expectation over directions is a
    Monte Carlo mean over ``projections`` random unit vectors (drawn with ``generator``). Each 1-D
    distance is exact for the two empirical measures: W_p^p = ∫₀¹ |F⁻¹(u) − G⁻¹(u)|^p du with the
    piecewise-constant quantile functions integrated on the merged grid {i/N} ∪ {j/M}, so N ≠ M needs
    no interpolation. For a pure shift y = x + δ, SW_2² = E(θᵀδ)² = ‖δ‖²/D.

    Args:
        x, y: samples ``(N, *event)`` and ``(M, *event)`` with the same event size D.
        projections: number of random directions.
        p: order p ≥ 1.
        generator: source of the directions.
    Returns:
        0-d tensor SW_p in x's (promoted) dtype; differentiable in x and y.
    """
    x, y = paired_samples(x, y)
    projections = int(projections)
    if projections < 1:
        raise ValueError(f"projections must be a positive integer, got {projections}")
    p = float(p)
    if not (p >= 1 and math.isfinite(p)):
        raise ValueError(f"p must be a finite number >= 1, got {p}")
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    theta = randn((d, projections), generator, device=x.device, dtype=x.dtype)
    theta = theta / theta.norm(dim=0, keepdim=True)

    if n != m:
        # Breakpoints of both quantile functions in units of 1/(N M), as exact integers.
        idx = torch.arange(1, n + 1, device=x.device) * m
        jdx = torch.arange(1, m + 1, device=x.device) * n
        edges = torch.unique(torch.cat([idx, jdx]))  # sorted, ends at N M
        lower = torch.cat([edges.new_zeros(1), edges[:-1]])
        widths = ((edges - lower).to(x.dtype) / (n * m))[:, None]
        mid2 = lower + edges  # twice the midpoint of each piece
        ix = mid2 // (2 * m)  # floor(u N) at the midpoint u
        iy = mid2 // (2 * n)

    chunk = max(1, BLOCK // (n + m))
    total = x.new_zeros(())
    for start in range(0, projections, chunk):
        th = theta[:, start : start + chunk]
        px = torch.sort(x @ th, dim=0).values
        py = torch.sort(y @ th, dim=0).values
        if n == m:
            cost = (px - py).abs().pow(p).mean(0)
        else:
            cost = (widths * (px[ix] - py[iy]).abs().pow(p)).sum(0)
        total = total + cost.sum()
    return (total / projections).pow(1.0 / p)


# -- pairwise statistics (MMD, energy distance) -------------------------------------------------


def _pair_sum(a: Tensor, b: Tensor | None, fn, *, diagonal: bool = True) -> Tensor:
    """Σ_{i,j} fn(‖a_i − b_j‖) in row blocks. ``b=None`` means b is a: the diagonal terms are then
    replaced by fn(0) exactly (matrix-product distances leave ~1e-8 there), or left out when
    ``diagonal`` is False."""
    same = b is None
    b = a if same else b
    rows = max(1, BLOCK // b.shape[0])
    total = a.new_zeros(())
    for start in range(0, a.shape[0], rows):
        vals = fn(torch.cdist(a[start : start + rows], b))
        total = total + vals.sum()
        if same:
            diag = vals.diagonal(offset=start)
            total = total - diag.sum()
            if diagonal:
                total = total + diag.shape[0] * fn(a.new_zeros(1)).sum()
    return total


def _median_distance(z: Tensor, max_points: int = 1024) -> Tensor:
    """Median pairwise distance of (an evenly strided subset of) the pooled sample."""
    if z.shape[0] > max_points:
        z = z[torch.linspace(0, z.shape[0] - 1, max_points, device=z.device).long()]
    dist = torch.cdist(z, z)
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    # quantile interpolates between the two middle values, as numpy's median does.
    med = torch.quantile(dist[iu[0], iu[1]], 0.5) if z.shape[0] > 1 else dist.new_zeros(())
    return med.detach()


_KERNELS = {
    # Gaussian: exp(−d²/(2h²)); Laplace: exp(−d/h); inverse multiquadric: (1 + d²/h²)^{-1/2}.
    "rbf": lambda d, h: torch.exp(d.square() * (-0.5 / h**2)),
    "laplace": lambda d, h: torch.exp(d * (-1 / h)),
    "imq": lambda d, h: torch.rsqrt(d.square() * (1 / h**2) + 1),
}


def mmd(
    x: Tensor,
    y: Tensor,
    *,
    kernel: str = "rbf",
    bandwidth: float | Sequence[float] | None = None,
    unbiased: bool = True,
) -> Tensor:
    """Squared maximum mean discrepancy MMD²(x, y) (Gretton, Borgwardt, Rasch, Schölkopf & Smola 2012).

    MMD² = E k(X,X') + E k(Y,Y') − 2 E k(X,Y).  ``unbiased=True`` gives the U-statistic MMD²_u (eq. 3
    of the paper: pairs i = j left out, so its expectation is the population MMD² and it may be
    slightly negative); ``unbiased=False`` the V-statistic (all pairs, always ≥ 0).

    Args:
        x, y: samples ``(N, *event)``, ``(M, *event)``.
        kernel: ``"rbf"`` exp(−‖a−b‖²/(2h²)), ``"laplace"`` exp(−‖a−b‖/h) or ``"imq"``
            (1 + ‖a−b‖²/h²)^{-1/2}.
        bandwidth: h; ``None`` uses the median heuristic (median pairwise distance of the pooled
            sample, on at most 1024 evenly strided points); a sequence gives the multi-scale kernel
            (1/L) Σ_l k_{h_l}.
        unbiased: U-statistic (default) or V-statistic.
    Returns:
        0-d tensor in the (promoted) input dtype; differentiable in x and y (not through the
        median heuristic).
    """
    x, y = paired_samples(x, y)
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(_KERNELS)}, got {kernel!r}")
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError(f"the unbiased MMD needs at least 2 samples in x and y, got {n} and {m}")
    if bandwidth is None:
        h = _median_distance(torch.cat([x, y]))
        widths = [h if h > 0 else torch.ones_like(h)]  # all points equal: any width gives 0
    else:
        seq = list(bandwidth) if isinstance(bandwidth, Sequence) else [bandwidth]
        if not seq:
            raise ValueError("bandwidth must not be an empty sequence")
        for b in seq:
            if not (float(b) > 0 and math.isfinite(float(b))):
                raise ValueError(f"bandwidths must be positive and finite, got {bandwidth}")
        widths = [float(b) for b in seq]
    base = _KERNELS[kernel]

    def k(d: Tensor) -> Tensor:
        out = base(d, widths[0])
        for h in widths[1:]:
            out = out + base(d, h)
        return out / len(widths) if len(widths) > 1 else out

    kxx = _pair_sum(x, None, k, diagonal=not unbiased)
    kyy = _pair_sum(y, None, k, diagonal=not unbiased)
    kxy = _pair_sum(x, y, k)
    if unbiased:
        return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)
    return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)


def energy_distance(x: Tensor, y: Tensor, *, unbiased: bool = True) -> Tensor:
    """Energy distance 2 E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (Székely & Rizzo 2013), a squared-distance-like
    quantity that is zero iff the laws agree.

    ``unbiased=True`` averages the within-sample terms over pairs i ≠ j (U-statistics: expectation
    equals the population value); ``unbiased=False`` gives the V-statistic (all pairs, ≥ 0), which in
    1-D equals 2∫(F_N − G_M)² (``scipy.stats.energy_distance`` returns its square root).
    Chunked over rows; differentiable. Returns a 0-d tensor.
    """
    x, y = paired_samples(x, y)
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError(
            f"the unbiased energy distance needs at least 2 samples in x and y, got {n} and {m}"
        )

    def ident(d: Tensor) -> Tensor:
        return d

    dxy = _pair_sum(x, y, ident) / (n * m)
    dxx = _pair_sum(x, None, ident) / (n * (n - 1) if unbiased else n * n)
    dyy = _pair_sum(y, None, ident) / (m * (m - 1) if unbiased else m * m)
    return 2 * dxy - dxx - dyy


# -- exact Wasserstein-1 ------------------------------------------------------------------------


def wasserstein1(x: Tensor, y: Tensor, *, reduction: str = "mean") -> Tensor:
    """Exact Wasserstein-1 distance between two empirical laws of the same size N, Euclidean cost:
    W1 = min over permutations π of (1/N) Σᵢ ‖xᵢ − y_π(i)‖ — for equal weights an optimal
    transport plan is a permutation (Birkhoff–von Neumann), found by the Hungarian algorithm (Kuhn
    1955; ``scipy.optimize.linear_sum_assignment``, O(N³): keep N to a few thousand).

    ``reduction="none"`` returns each x row's cost ‖xᵢ − y_π(i)‖ (their mean is W1), float64
    ``(N,)`` on the CPU; ``"mean"`` a 0-d tensor."""
    from scipy.optimize import linear_sum_assignment

    x, y = paired_samples(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"wasserstein1 compares sets of the same size (an assignment), got {x.shape[0]} and "
            f"{y.shape[0]}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    # Direct differences, not the matrix-product shortcut: equal rows cost exactly 0.
    cost = torch.cdist(
        x.detach().double().cpu(),
        y.detach().double().cpu(),
        compute_mode="donot_use_mm_for_euclid_dist",
    )
    rows, cols = linear_sum_assignment(cost.numpy())
    per_row = cost[torch.from_numpy(rows), torch.from_numpy(cols)]
    return per_row if reduction == "none" else per_row.mean()
