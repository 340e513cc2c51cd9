"""Forward noising processes (Song et al. 2021, "Score-Based Generative Modeling through SDEs").

Each process is the linear SDE dx = f(t) x dt + g(t) dW whose marginal given x₀ is
x_t = α_t x₀ + σ_t ε, ε ~ N(0, I).  A subclass states α_t, σ_t and f(t) = d log α_t / dt; the
diffusion follows from the variance equation dσ²/dt = 2 f σ² + g², i.e. g² = dσ²/dt − 2 f σ².
Samplers and the likelihood use only this interface, so a new process is one small class.

The log signal-to-noise ratio λ(t) = log(α_t² / σ_t²) decreases in t; every process also gives its
inverse ``t_of_log_snr`` in closed form, which exponential-integrator solvers (DPM-Solver) need.

The reverse dynamics are derived here once, for every process (as score-SDE's ``SDE.reverse``):
``reverse_drift`` is the drift of the family of reverse-time SDEs with the forward marginals
(η = 1 Anderson's reverse SDE, η = 0 the probability-flow ODE), and ``denoise`` is Tweedie's
posterior mean of x₀.  ``SigmaClock`` is the base of the processes whose time is their noise
level (α = 1, σ = t): ``EDM`` and NCSN's discrete ``NoiseLevels``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor

from ._checks import as_time, check_positive, check_positive_int, expand_like, randint, randn

__all__ = [
    "EDM",
    "SIGMA_DATA",
    "VE",
    "VP",
    "NoiseLevels",
    "Process",
    "SigmaClock",
    "SubVP",
    "check_process",
    "make_process",
]


def _time(t: Tensor | float) -> Tensor:
    """A tensor t as it is; a Python number in float64 (coefficients exact, then cast to x's dtype)."""
    return as_time(t) if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64)


class Process(ABC):
    """A forward SDE dx = f(t) x dt + g(t) dW with Gaussian marginals x_t = α_t x₀ + σ_t ε."""

    t_min: float
    t_max: float
    # grid="auto" per sampler family, decided here only (``default_grid``): reverse-SDE samplers
    # step uniformly in the process's clock (score-SDE's), annealed Langevin on geometric levels
    # (NCSN), ode/heun on Karras et al.'s ρ = 7 grid, DPM-Solver on ``samplers.grids.dpm_recipe``.
    DEFAULT_GRIDS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"sde": "uniform", "langevin": "log_snr", "ode": "edm_rho", "dpm": "dpm_recipe"}
    )
    # The data's RMS standard deviation, when stated (``sigma_data=`` on every process): EDM's
    # preconditioning and loss weight and DPM-Solver's default grid (in units of it) read it.
    sigma_data: float | None = None

    @property
    def data_scale(self) -> float:
        """σ_data as its readers use it: the stated ``sigma_data``, else ``SIGMA_DATA``."""
        return SIGMA_DATA if self.sigma_data is None else self.sigma_data

    @abstractmethod
    def marginal(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(α_t, σ_t), each of t's shape."""

    @abstractmethod
    def log_alpha_rate(self, t: Tensor | float) -> Tensor:
        """f(t) = d log α_t / dt."""

    @abstractmethod
    def diffusion(self, t: Tensor | float) -> Tensor:
        """g(t), with g² = dσ²/dt − 2 f(t) σ²."""

    @abstractmethod
    def t_of_log_snr(self, log_snr: Tensor | float) -> Tensor:
        """Inverse of λ(t) = log(α_t²/σ_t²)."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior N(0, prior_std² I) that approximates p_{t_max}."""

    def default_grid(self, family: str) -> str:
        """The grid name ``grid="auto"`` stands for with samplers of ``family`` ("sde": euler_maruyama,
        reverse_diffusion, ancestral, predictor_corrector; "langevin": annealed_langevin; "ode":
        ode, heun; "dpm": dpm_solver), from ``DEFAULT_GRIDS``."""
        if family not in self.DEFAULT_GRIDS:
            raise ValueError(
                f"unknown sampler family {family!r}; choose one of {', '.join(self.DEFAULT_GRIDS)}"
            )
        return self.DEFAULT_GRIDS[family]

    def drift(self, x: Tensor, t: Tensor | float) -> Tensor:
        """f(t) x, with t a scalar or of shape ``(batch,)``."""
        return expand_like(self.log_alpha_rate(as_time(t, x)), x) * x

    def reverse_drift(
        self, x: Tensor, t: Tensor | float, score: Tensor, eta: float = 1.0
    ) -> Tensor:
        """f(t) x − ½(1 + η²) g(t)² s: the drift of dx = [f x − ½(1 + η²) g² ∇log p_t] dt + η g dW̄.

        For every η ≥ 0 this reverse-time SDE has the forward process's marginals p_t (the
        Fokker–Planck equations agree: the extra ½η²g²∇log p_t drift cancels the extra diffusion);
        η = 1 is Anderson's (1982) reverse SDE, η = 0 the probability-flow ODE (Song et al. 2021,
        eq. 6 and 13).  ``score`` = ∇ₓ log p_t(x), x's shape; t a scalar or ``(batch,)``.
        """
        t = _time(t)
        g2 = self.diffusion(t).square()
        return (
            expand_like(self.log_alpha_rate(t), x) * x
            - expand_like(0.5 * (1.0 + eta * eta) * g2, x) * score
        )

    def denoise(self, x: Tensor, t: Tensor | float, score: Tensor) -> Tensor:
        """Tweedie's formula E[x₀ | x_t = x] = (x + σ_t² ∇log p_t(x)) / α_t (Efron 2011)."""
        alpha, sigma = self.marginal(_time(t))
        return (x + expand_like(sigma * sigma, x) * score) / expand_like(alpha, x)

    def sigma_hat(self, t: Tensor | float) -> Tensor:
        """σ_t / α_t: the noise level of the rescaled state x_t / α_t = x₀ + (σ_t/α_t) ε."""
        alpha, sigma = self.marginal(t)
        return sigma / alpha

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) = log(α_t² / σ_t²)."""
        alpha, sigma = self.marginal(t)
        return 2.0 * (alpha.log() - sigma.log())

    def prior_sample(
        self,
        shape: tuple[int, ...] | torch.Size,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw from the prior N(0, prior_std² I) with the given full shape ``(batch, *event)``."""
        if len(shape) < 2 or any(int(s) < 1 for s in shape):
            raise ValueError(
                f"shape must be (batch, *event_shape) with positive sizes, got {tuple(shape)}"
            )
        return self.prior_std * randn(shape, generator, device=device, dtype=dtype)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, prior_std² I) summed over the event, shape ``(batch,)``."""
        d = z[0].numel()
        s2 = self.prior_std**2
        flat = z.reshape(z.shape[0], -1)
        return -0.5 * (flat.square().sum(1) / s2 + d * math.log(2 * math.pi * s2))

    def config(self) -> dict:
        """Constructor arguments, for saving with a run (``make_process(**config)`` rebuilds it)."""
        return {"name": type(self).__name__, **self._args()}

    def _args(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"


class VE(Process):
    """Variance exploding SDE (SMLD/NCSN++): α_t = 1, σ_t = σ_min (σ_max/σ_min)^t, t ∈ [t_min, 1].

    g(t) = σ_t √(2 log(σ_max/σ_min)) (Song et al. 2021, eq. 30); prior N(0, σ_max² I).
    ``sigma_data``: the data's standard deviation, if known (see ``Process.sigma_data``).
    """

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        *,
        t_min: float = 1e-5,
        sigma_data: float | None = None,
    ) -> None:
        self.sigma_data = _check_sigma_data(sigma_data)
        self.sigma_min = check_positive(sigma_min, "sigma_min")
        self.sigma_max = check_positive(sigma_max, "sigma_max")
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.t_min, self.t_max = _check_range(t_min, 1.0)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def marginal(self, t):
        t = as_time(t)
        sigma = self.sigma_min * torch.exp(t * self._log_ratio)
        return torch.ones_like(sigma), sigma

    def log_alpha_rate(self, t):
        return torch.zeros_like(as_time(t))

    def diffusion(self, t):
        return self.marginal(t)[1] * math.sqrt(2 * self._log_ratio)

    def t_of_log_snr(self, log_snr):
        log_sigma = -0.5 * as_time(log_snr)
        return (log_sigma - math.log(self.sigma_min)) / self._log_ratio

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def _args(self):
        args = {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "t_min": self.t_min}
        return _with_sigma_data(args, self.sigma_data)


class VP(Process):
    """Variance preserving SDE (DDPM): β(t) = β_min + t(β_max − β_min), dx = −½β x dt + √β dW.

    With B(t) = ∫₀ᵗ β = β_min t + ½(β_max − β_min) t²:  α_t = e^{−B/2}, σ_t = √(1 − e^{−B}); prior N(0, I).
    ``sigma_data``: the data's standard deviation, if known (see ``Process.sigma_data``).
    """

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        *,
        t_min: float = 1e-3,
        sigma_data: float | None = None,
    ) -> None:
        self.sigma_data = _check_sigma_data(sigma_data)
        self.beta_min = check_positive(beta_min, "beta_min")
        self.beta_max = check_positive(beta_max, "beta_max")
        if not self.beta_min <= self.beta_max:
            raise ValueError(f"need beta_min <= beta_max, got {beta_min} and {beta_max}")
        self.t_min, self.t_max = _check_range(t_min, 1.0)

    def beta(self, t):
        return self.beta_min + as_time(t) * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        t = as_time(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def marginal(self, t):
        b = self.integrated_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def log_alpha_rate(self, t):
        return -0.5 * self.beta(t)

    def diffusion(self, t):
        return self.beta(t).sqrt()

    def _t_of_integrated_beta(self, b: Tensor) -> Tensor:
        slope = self.beta_max - self.beta_min
        if slope == 0:
            return b / self.beta_min
        # Positive root of ½ slope t² + β_min t − B = 0, written without cancellation.
        return 2 * b / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * slope * b))

    def t_of_log_snr(self, log_snr):
        # λ = −log(e^B − 1)  ⇒  B = log(1 + e^{−λ}) = softplus(−λ)
        return self._t_of_integrated_beta(torch.nn.functional.softplus(-as_time(log_snr)))

    @property
    def prior_std(self) -> float:
        return 1.0

    def _args(self):
        args = {"beta_min": self.beta_min, "beta_max": self.beta_max, "t_min": self.t_min}
        return _with_sigma_data(args, self.sigma_data)


class SubVP(VP):
    """Sub-VP SDE (Song et al. 2021, eq. 34): same α_t as VP, σ_t = 1 − e^{−B(t)}, g² = β(1 − e^{−2B}).

    Its marginal variance is below the VP one at every t; prior N(0, I).
    """

    def marginal(self, t):
        b = self.integrated_beta(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)

    def diffusion(self, t):
        return torch.sqrt(self.beta(t) * -torch.expm1(-2 * self.integrated_beta(t)))

    def t_of_log_snr(self, log_snr):
        # With a = α² = e^{−B}: e^λ (1 − a)² = a.  Writing u = e^{−λ/2}, the root in (0, 1) gives
        # e^B − 1 = ½u(u + √(u² + 4)), so B = log1p(·) stays exact at large λ (no log of a ≈ 1).
        u = torch.exp(-0.5 * as_time(log_snr))
        return self._t_of_integrated_beta(torch.log1p(0.5 * u * (u + torch.sqrt(u * u + 4))))


class SigmaClock(Process):
    """A process whose clock is its noise level: α_t = 1, σ_t = t, drift 0, g(t) = √(2t)
    (so dσ²/dt = g²), λ(t) = −2 log t, prior N(0, t_max² I).  Subclasses set t_min and t_max."""

    # t = σ: a grid uniform in t would spend nearly every step at high noise
    DEFAULT_GRIDS = MappingProxyType({**Process.DEFAULT_GRIDS, "sde": "edm_rho"})

    def marginal(self, t):
        t = as_time(t)
        return torch.ones_like(t), t

    def log_alpha_rate(self, t):
        return torch.zeros_like(as_time(t))

    def diffusion(self, t):
        return torch.sqrt(2 * as_time(t))

    def t_of_log_snr(self, log_snr):
        return torch.exp(-0.5 * as_time(log_snr))

    @property
    def prior_std(self) -> float:
        return self.t_max


# The data standard deviation EDM's preconditioning assumes unless a process states its own
# (Karras et al. 2022, Table 1): EDM's default, and the fallback of every σ_data.
SIGMA_DATA = 0.5


class EDM(SigmaClock):
    """Karras et al. 2022 ("Elucidating the Design Space…"): α_t = 1, σ_t = t, g(t) = √(2t).

    t ∈ [σ_min, σ_max]; σ_data is the data standard deviation its preconditioning assumes;
    prior N(0, σ_max² I).  The reverse-SDE samplers' default grid is Karras et al.'s ρ = 7 grid
    (uniform in σ would spend nearly every step at high noise), as the ODE solvers'.
    """

    def __init__(
        self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = SIGMA_DATA
    ) -> None:
        self.sigma_min = check_positive(sigma_min, "sigma_min")
        self.sigma_max = check_positive(sigma_max, "sigma_max")
        self.sigma_data = check_positive(sigma_data, "sigma_data")
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        self.t_min, self.t_max = self.sigma_min, self.sigma_max

    def _args(self):
        return {
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sigma_data": self.sigma_data,
        }


class NoiseLevels(SigmaClock):
    """The noise levels σ_1 > … > σ_L of NCSN (Song & Ermon 2019) as a process.

    Like ``EDM`` (α_t = 1, σ_t = t), but training (``objectives.ncsn``) and annealed Langevin
    sampling only visit the levels, t ∈ {σ_i}; the marginal is defined for every t > 0.  Its
    default grid (``grid="auto"``) for the stochastic and Langevin samplers is the levels themselves.

    Args:
        sigmas: the levels, any order (stored descending as a float64 tensor ``.sigmas``); positive,
            finite, distinct, at least one.
    """

    # the models were trained at the levels only
    DEFAULT_GRIDS = MappingProxyType(
        {**SigmaClock.DEFAULT_GRIDS, "sde": "levels", "langevin": "levels"}
    )

    def __init__(self, sigmas: Sequence[float] | Tensor) -> None:
        levels = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
        if levels.ndim != 1 or levels.numel() == 0:
            raise ValueError(
                f"sigmas must be a non-empty 1-D sequence of noise levels, "
                f"got shape {tuple(levels.shape)}"
            )
        if not bool(torch.isfinite(levels).all()) or bool((levels <= 0).any()):
            raise ValueError(f"sigmas must be positive and finite, got {levels.tolist()}")
        levels = torch.sort(levels, descending=True).values
        if levels.numel() > 1 and bool((levels[1:] == levels[:-1]).any()):
            raise ValueError(f"sigmas must be distinct, got {levels.tolist()}")
        self.sigmas = levels
        self.t_min = float(levels[-1])
        self.t_max = float(levels[0])

    @classmethod
    def geometric(
        cls, sigma_min: float = 0.01, sigma_max: float = 10.0, n: int = 10
    ) -> NoiseLevels:
        """n levels σ_i = σ_max (σ_min/σ_max)^{i/(n−1)}, i = 0…n−1 (Song & Ermon 2019, §4.2)."""
        sigma_min = check_positive(sigma_min, "sigma_min")
        sigma_max = check_positive(sigma_max, "sigma_max")
        if not sigma_min < sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        if check_positive_int(n, "n") < 2:
            raise ValueError(f"n must be an integer >= 2, got {n}")
        i = torch.arange(int(n), dtype=torch.float64)
        levels = sigma_max * (sigma_min / sigma_max) ** (i / (int(n) - 1))
        levels[0], levels[-1] = sigma_max, sigma_min  # exact ends, whatever the rounding
        return cls(levels)

    def __len__(self) -> int:
        return self.sigmas.numel()

    def sample(
        self,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """One level per sample, uniform over the levels: shape ``(batch,)``, dtype ``dtype``
        (default: torch's default dtype)."""
        batch = check_positive_int(batch, "batch")
        idx = randint(len(self), (batch,), generator, device=device)
        dtype = dtype or torch.get_default_dtype()
        return self.sigmas.to(device=idx.device, dtype=dtype)[idx].to(device)

    def _args(self) -> dict:
        return {"sigmas": self.sigmas.tolist()}

    def __repr__(self) -> str:
        return f"NoiseLevels(n={len(self)}, sigma_max={self.t_max:.4g}, sigma_min={self.t_min:.4g})"


def _check_sigma_data(sigma_data: float | None) -> float | None:
    return None if sigma_data is None else check_positive(sigma_data, "sigma_data")


def _with_sigma_data(args: dict, sigma_data: float | None) -> dict:  # named only when stated
    return args if sigma_data is None else {**args, "sigma_data": sigma_data}


def _check_range(t_min: float, t_max: float) -> tuple[float, float]:
    t_min = check_positive(t_min, "t_min")
    if not t_min < t_max:
        raise ValueError(f"need t_min < t_max = {t_max}, got t_min = {t_min}")
    return t_min, float(t_max)


PROCESSES = {"VE": VE, "VP": VP, "SubVP": SubVP, "EDM": EDM, "NoiseLevels": NoiseLevels}
_ALIASES = {"noiseensemble": "noiselevels"}  # the name runs saved before NoiseLevels was renamed


def make_process(name: str, **kwargs) -> Process:
    """Build a process by name (case-insensitive: ve, vp, subvp, edm, noiselevels) with its
    constructor arguments; ``make_process(**process.config())`` rebuilds a process."""
    lookup = {k.lower(): v for k, v in PROCESSES.items()}
    key = str(name).lower().replace("-", "").replace("_", "")
    key = _ALIASES.get(key, key)
    if key not in lookup:
        raise ValueError(f"unknown process {name!r}; choose one of {', '.join(lookup)}")
    return lookup[key](**kwargs)


def check_process(process: object) -> Process:
    """Require a scorematch ``Process``: one clear error instead of an AttributeError deep inside."""
    if not isinstance(process, Process):
        raise ValueError(f"process must be a scorematch Process, got {type(process).__name__}")
    return process
