"""Built-in two-dimensional data sets, generated from a ``torch.Generator``.

The shapes and noise levels follow the toy sets popularised by FFJORD (Grathwohl et al. 2019,
"FFJORD: free-form continuous dynamics for scalable reversible generative models") and
scikit-learn's ``make_moons`` / ``make_circles`` / ``make_swiss_roll``, written here directly in
torch so that one generator seed fixes every sample.  All sets live roughly in [-4, 4]².

Two sets are Gaussian mixtures whose exact density is known: ``"mixture"`` and ``"8gaussians"``
(``TOY_MIXTURES``).  ``toy_mixture(name)`` returns the exact ``GaussianMixture`` that
``toy_dataset(name, n)`` samples, the oracle to measure a model of those data against (their true
score ∇log p, the exact NLL); ``toy_mixture_params()`` gives the raw parameters of ``"mixture"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..distributions import GaussianMixture

TOY_DESCRIPTIONS: dict[str, str] = {
    "moons": "two interleaving half circles (noise 0.1), centred and scaled by 2",
    "swissroll": "2-D swiss roll t·(cos t, sin t), t ∈ [1.5π, 4.5π], noise 1, scaled by 1/5",
    "circles": "two concentric circles of radii 3 and 1.5 (noise 0.24)",
    "8gaussians": "8 Gaussians (std 0.5/√2) evenly spaced on a circle of radius 2√2",
    "checkerboard": "uniform density on the black squares of a 4×4 checkerboard over [-4, 4]²",
    "pinwheel": "5 curved arms of a pinwheel (radial std 0.3, tangential std 0.1)",
    "2spirals": "two interleaved noisy spirals (noise 0.1)",
    "rings": "4 concentric rings of radii 0.75, 1.5, 2.25, 3 (noise 0.08)",
    "mixture": "5-component anisotropic Gaussian mixture with known density (toy_mixture_params)",
}
TOY_DATASETS: tuple[str, ...] = tuple(TOY_DESCRIPTIONS)


def toy_mixture_params() -> tuple[Tensor, Tensor, Tensor]:
    """Parameters of the ``"mixture"`` toy set: means (5, 2), covariances (5, 2, 2), weights (5,).

    Each covariance is R(φ) diag(a², b²) R(φ)ᵀ with a rotation R(φ); the components differ in
    weight, scale and orientation so that mode-weight and per-mode covariance errors are visible.
    Returned in float64; pass them to ``scorematch.distributions.GaussianMixture``.
    """
    means = torch.tensor(
        [[-2.0, -1.5], [2.0, -1.5], [-0.2, 2.3], [-2.7, 1.4], [2.8, 0.9]], dtype=torch.float64
    )
    stds = torch.tensor(
        [[0.7, 0.25], [0.5, 0.5], [0.8, 0.3], [0.35, 0.2], [0.6, 0.2]], dtype=torch.float64
    )
    angles = torch.tensor([0.6, 0.0, -0.2, 1.2, -0.9], dtype=torch.float64)
    c, s = angles.cos(), angles.sin()
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    covs = rot @ torch.diag_embed(stds**2) @ rot.transpose(-1, -2)
    weights = torch.tensor([0.3, 0.2, 0.2, 0.15, 0.15], dtype=torch.float64)
    return means, covs, weights


# 8gaussians: centres on a circle of radius 4/√2, isotropic std 0.5/√2 (``_eight_gaussians``).
_EIGHT_RADIUS, _EIGHT_STD = 4.0 / math.sqrt(2.0), 0.5 / math.sqrt(2.0)


def _eight_gaussians_params() -> tuple[Tensor, Tensor, Tensor]:
    """Means (8, 2), covariances (8, 2, 2) and weights (8,) of ``"8gaussians"`` (float64)."""
    angle = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    means = _EIGHT_RADIUS * torch.stack([angle.cos(), angle.sin()], 1)
    covs = torch.eye(2, dtype=torch.float64).expand(8, 2, 2) * _EIGHT_STD**2
    return means, covs, torch.full((8,), 1 / 8, dtype=torch.float64)


# The built-in sets whose density is known exactly, and the parameters of each.
_MIXTURE_PARAMS: dict[str, Callable[[], tuple[Tensor, Tensor, Tensor]]] = {
    "mixture": toy_mixture_params,
    "8gaussians": _eight_gaussians_params,
}
TOY_MIXTURES: tuple[str, ...] = tuple(_MIXTURE_PARAMS)


def toy_mixture(name: str) -> GaussianMixture:
    """The exact law of the built-in set ``name`` (one of ``TOY_MIXTURES``), a float64
    ``GaussianMixture`` in the set's own units: ``toy_dataset(name, n)`` draws from it."""
    key = str(name).lower()
    if key not in _MIXTURE_PARAMS:
        raise ValueError(
            f"the density of {name!r} is not known exactly; it is known for the built-in "
            f"mixture sets: {', '.join(TOY_MIXTURES)}"
        )
    return GaussianMixture(*_MIXTURE_PARAMS[key]())


def _rand(n: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g)


def _randn(*shape: int, g: torch.Generator) -> Tensor:
    return torch.randn(*shape, generator=g)


def _moons(n: int, g: torch.Generator) -> Tensor:
    upper = torch.rand(n, generator=g) < 0.5
    theta = math.pi * _rand(n, g)
    x = torch.where(upper, theta.cos(), 1 - theta.cos())
    y = torch.where(upper, theta.sin(), 0.5 - theta.sin())
    pts = torch.stack([x, y], 1) + 0.1 * _randn(n, 2, g=g)
    return 2.0 * (pts - torch.tensor([0.5, 0.25]))


def _swissroll(n: int, g: torch.Generator) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    pts = torch.stack([t * t.cos(), t * t.sin()], 1) + _randn(n, 2, g=g)
    return pts / 5.0


def _circles(n: int, g: torch.Generator) -> Tensor:
    radius = torch.where(_rand(n, g) < 0.5, 1.0, 0.5)
    theta = 2 * math.pi * _rand(n, g)
    pts = radius[:, None] * torch.stack([theta.cos(), theta.sin()], 1)
    return 3.0 * (pts + 0.08 * _randn(n, 2, g=g))


def _rings(n: int, g: torch.Generator) -> Tensor:
    radius = 0.75 * (1 + torch.randint(0, 4, (n,), generator=g)).float()
    theta = 2 * math.pi * _rand(n, g)
    pts = radius[:, None] * torch.stack([theta.cos(), theta.sin()], 1)
    return pts + 0.08 * _randn(n, 2, g=g)


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    angle = torch.randint(0, 8, (n,), generator=g).float() * (math.pi / 4)
    centres = 4.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return (centres + 0.5 * _randn(n, 2, g=g)) / math.sqrt(2.0)  # = toy_mixture("8gaussians")


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = 4 * _rand(n, g) - 2
    x2 = _rand(n, g) - 2 * torch.randint(0, 2, (n,), generator=g).float()
    x2 = x2 + torch.floor(x1).remainder(2)
    return 2.0 * torch.stack([x1, x2], 1)


def _pinwheel(n: int, g: torch.Generator) -> Tensor:
    arms, rate = 5, 0.25
    feats = _randn(n, 2, g=g) * torch.tensor([0.3, 0.1])
    feats[:, 0] += 1.0
    arm = torch.randint(0, arms, (n,), generator=g).float()
    angle = arm * (2 * math.pi / arms) + rate * feats[:, 0].exp()
    c, s = angle.cos(), angle.sin()
    x = feats[:, 0] * c + feats[:, 1] * s
    y = -feats[:, 0] * s + feats[:, 1] * c
    return 2.0 * torch.stack([x, y], 1)


def _two_spirals(n: int, g: torch.Generator) -> Tensor:
    t = _rand(n, g).sqrt() * (540 * 2 * math.pi / 360)
    px = -t.cos() * t + 0.5 * _rand(n, g)
    py = t.sin() * t + 0.5 * _rand(n, g)
    sign = torch.where(_rand(n, g) < 0.5, 1.0, -1.0)
    pts = sign[:, None] * torch.stack([px, py], 1) / 3.0
    return pts + 0.1 * _randn(n, 2, g=g)


def _mixture(n: int, g: torch.Generator) -> Tensor:
    means, covs, weights = toy_mixture_params()
    comp = torch.multinomial(weights, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(covs)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return means[comp] + (chol[comp] @ eps[:, :, None])[:, :, 0]


_GENERATORS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "moons": _moons,
    "swissroll": _swissroll,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "rings": _rings,
    "mixture": _mixture,
}


def toy_dataset(name: str, n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` i.i.d. points of a built-in 2-D set; returns a float32 ``(n, 2)`` tensor.

    Args:
        name: one of ``TOY_DATASETS`` (case-insensitive).
        n: number of samples (≥ 1).
        generator: CPU ``torch.Generator`` driving every random draw (a fresh unseeded one when
            omitted); the same seed always gives the same points.
    """
    key = str(name).lower()
    if key not in _GENERATORS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    return _GENERATORS[key](int(n), generator).to(torch.float32).contiguous()
