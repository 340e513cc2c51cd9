"""What a network predicts, turned into a score: ε-, x₀-, score-prediction and EDM preconditioning.

A network is called ``net(x_in, c_noise)`` with ``x_in`` of shape ``(B, *event)`` and ``c_noise`` of
shape ``(B,)``, and returns a tensor of x's shape.  The wrappers here are ``nn.Module`` score models
``model(x, t) -> ∇ₓ log p_t(x)`` for a process with marginal x_t = α_t x₀ + σ_t ε.  Every conversion
lives in this one module (as DPM-Solver's ``model_wrapper`` does), and each wrapper also gives the
posterior-mean estimate ``denoise(x, t) ≈ E[x₀ | x_t = x]``; the two are tied by Tweedie's formula
E[x₀ | x_t] = (x_t + σ_t² ∇log p_t(x_t)) / α_t.

Noise input of the ε/x₀/score wrappers (``noise_input``):
  * ``"t"`` — the process time itself (score-SDE convention; default for VE, VP, SubVP);
  * ``"log_sigma"`` — ¼ log σ̂ with σ̂ = σ_t/α_t (EDM convention; default for processes whose time is
    a noise level spanning beyond [0, 1], such as EDM (0.002…80) and ``NoiseLevels``).
``EDMPrecond`` always passes ¼ log σ̂ (Karras et al. 2022, Table 1).

Conditioning: a network that declares ``conditioning`` (``"label"``: a class label; ``"mask"``: the
keywords ``known``, ``mask``, ``absent`` of a mask-conditional network, :mod:`scorematch.conditional`)
is called ``net(x_in, c_noise, **cond)``, and every wrapper passes such keywords through:
``model(x, t, label=y)``.  Keywords a network does not take are refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._checks import as_time, broadcast_time, check_batch, check_positive, expand_like
from .processes import Process, SigmaClock, check_process

__all__ = [
    "CONDITIONING_KEYWORDS",
    "DataPrediction",
    "EDMCoefficients",
    "EDMPrecond",
    "EpsilonPrediction",
    "ScorePrediction",
    "at_time",
    "check_conditioning",
    "conditioning_of",
    "default_noise_input",
    "wrap",
]

Net = Callable[[Tensor, Tensor], Tensor]
NOISE_INPUTS = ("t", "log_sigma")
# What a model's ``conditioning`` entries mean as call keywords.
CONDITIONING_KEYWORDS = {"label": ("label",), "mask": ("known", "mask", "absent")}


def conditioning_of(model: object) -> tuple[str, ...]:
    """The conditioning a score model or network takes beyond (x, t): entries of
    ``CONDITIONING_KEYWORDS`` (its ``conditioning`` attribute; none for a plain model)."""
    return tuple(getattr(model, "conditioning", ()))


def check_conditioning(model: object, cond: dict) -> dict:
    """The keywords of ``cond`` that are not None, each one ``model`` takes (else a ValueError)."""
    cond = {k: v for k, v in cond.items() if v is not None}
    if not cond:
        return cond
    takes = {k for c in conditioning_of(model) for k in CONDITIONING_KEYWORDS.get(c, ())}
    extra = sorted(set(cond) - takes)
    if extra:
        what = ", ".join(conditioning_of(model)) or "no conditioning"
        raise ValueError(
            f"{type(model).__name__} takes {what}, not {', '.join(extra)}: build the network with "
            "num_classes (labels) or mask_conditional=True (known entries)"
        )
    return cond


# ------------------------------------------------------------------------------------------------
# Wrappers
# ------------------------------------------------------------------------------------------------
def default_noise_input(process: Process) -> str:
    """``"log_sigma"`` for processes whose time is a noise level beyond [0, 1] (EDM, NoiseLevels,
    any process with t_max > 1), else ``"t"``."""
    if isinstance(process, SigmaClock) or process.t_max > 1:
        return "log_sigma"
    return "t"


class _Wrapper(nn.Module):
    """Shared plumbing: validate inputs, evaluate (α_t, σ_t), build c_noise, check the net's output."""

    def __init__(self, net: Net, process: Process, noise_input: str | None) -> None:
        super().__init__()
        if not callable(net):
            raise ValueError(f"net must be callable as net(x, c_noise), got {type(net).__name__}")
        self.net = net
        self.process = check_process(process)
        noise_input = default_noise_input(process) if noise_input is None else noise_input
        if noise_input not in NOISE_INPUTS:
            raise ValueError(f"noise_input must be 't' or 'log_sigma', got {noise_input!r}")
        self.noise_input = noise_input

    def _marginal(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        check_batch(x, "x", finite=False)
        t = broadcast_time(t, x)
        alpha, sigma = self.process.marginal(t)
        return t, alpha.to(x.dtype), sigma.to(x.dtype)

    def _c_noise(self, t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        if self.noise_input == "t":
            return t
        return 0.25 * torch.log(sigma / alpha)

    @property
    def conditioning(self) -> tuple[str, ...]:
        """What the network is conditioned on (see ``conditioning_of``)."""
        return conditioning_of(self.net)

    def _net(self, x_in: Tensor, c_noise: Tensor, cond: dict) -> Tensor:
        cond = check_conditioning(self.net, cond)
        out = self.net(x_in, c_noise, **cond)
        if not isinstance(out, Tensor) or out.shape != x_in.shape:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"net must return a tensor of the input's shape {tuple(x_in.shape)}, got {shape}"
            )
        return out

    @property
    def value_and_divergence(self) -> Callable[[Tensor, Tensor | float], tuple[Tensor, Tensor]]:
        """``(x, t) -> (score, tr ∇ₓ score)``, offered only when the net offers its own exact
        divergence ``net.value_and_divergence(x_in, c_noise)`` (a hollow network); otherwise
        absent (AttributeError), so ``getattr(model, "value_and_divergence", None)`` is None."""
        if not callable(getattr(self.net, "value_and_divergence", None)):
            raise AttributeError(f"{type(self.net).__name__} offers no value_and_divergence")
        return self._value_and_divergence

    def _value_and_divergence(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _net_and_divergence(self, x_in: Tensor, c_noise: Tensor) -> tuple[Tensor, Tensor]:
        out, div = self.net.value_and_divergence(x_in, c_noise)
        if not isinstance(out, Tensor) or out.shape != x_in.shape or div.shape != x_in.shape[:1]:
            raise ValueError("net.value_and_divergence must return (output of x's shape, (B,))")
        return out, div

    def extra_repr(self) -> str:
        return f"process={self.process!r}, noise_input={self.noise_input!r}"


class EpsilonPrediction(_Wrapper):
    """Noise prediction (Ho et al. 2020): the net estimates ε in x_t = α_t x₀ + σ_t ε.

    score = −ε̂ / σ_t;  denoise = (x − σ_t ε̂) / α_t.
    """

    def __init__(self, net: Net, process: Process, *, noise_input: str | None = None) -> None:
        super().__init__(net, process, noise_input)

    def _eps(self, x: Tensor, t: Tensor | float, cond: dict):
        t, alpha, sigma = self._marginal(x, t)
        return self._net(x, self._c_noise(t, alpha, sigma), cond), alpha, sigma

    def forward(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        eps, _, sigma = self._eps(x, t, cond)
        return -eps / expand_like(sigma, x)

    def denoise(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        eps, alpha, sigma = self._eps(x, t, cond)
        return (x - expand_like(sigma, x) * eps) / expand_like(alpha, x)

    def _value_and_divergence(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t, alpha, sigma = self._marginal(x, t)
        eps, div = self._net_and_divergence(x, self._c_noise(t, alpha, sigma))
        return -eps / expand_like(sigma, x), -div / sigma


class DataPrediction(_Wrapper):
    """Data (x₀) prediction: the net estimates E[x₀ | x_t].

    score = (α_t x̂₀ − x) / σ_t²  (Tweedie's formula solved for the score);  denoise = x̂₀.
    """

    def __init__(self, net: Net, process: Process, *, noise_input: str | None = None) -> None:
        super().__init__(net, process, noise_input)

    def _x0(self, x: Tensor, t: Tensor | float, cond: dict):
        t, alpha, sigma = self._marginal(x, t)
        return self._net(x, self._c_noise(t, alpha, sigma), cond), alpha, sigma

    def forward(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        x0, alpha, sigma = self._x0(x, t, cond)
        return (expand_like(alpha, x) * x0 - x) / expand_like(sigma, x) ** 2

    def denoise(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        return self._x0(x, t, cond)[0]

    def _value_and_divergence(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t, alpha, sigma = self._marginal(x, t)
        x0, div = self._net_and_divergence(x, self._c_noise(t, alpha, sigma))
        score = (expand_like(alpha, x) * x0 - x) / expand_like(sigma, x) ** 2
        return score, (alpha * div - x[0].numel()) / sigma**2


class ScorePrediction(_Wrapper):
    """Score prediction: score = net(x, c)/σ_t when ``scale_by_sigma`` (the output scaling of
    score-SDE's NCSN++, Song et al. 2021, which keeps the net's target O(1)), else net(x, c).

    denoise = (x + σ_t² score) / α_t (Tweedie).
    """

    def __init__(
        self,
        net: Net,
        process: Process,
        *,
        scale_by_sigma: bool = True,
        noise_input: str | None = None,
    ) -> None:
        super().__init__(net, process, noise_input)
        self.scale_by_sigma = bool(scale_by_sigma)

    def _score(self, x: Tensor, t: Tensor | float, cond: dict):
        t, alpha, sigma = self._marginal(x, t)
        out = self._net(x, self._c_noise(t, alpha, sigma), cond)
        if self.scale_by_sigma:
            out = out / expand_like(sigma, x)
        return out, alpha, sigma

    def forward(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        return self._score(x, t, cond)[0]

    def denoise(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        return self.process.denoise(x, broadcast_time(t, x), self._score(x, t, cond)[0])

    def _value_and_divergence(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        t, alpha, sigma = self._marginal(x, t)
        out, div = self._net_and_divergence(x, self._c_noise(t, alpha, sigma))
        if self.scale_by_sigma:
            return out / expand_like(sigma, x), div / sigma
        return out, div

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale_by_sigma={self.scale_by_sigma}"


class EDMCoefficients(NamedTuple):
    """Preconditioning coefficients of Karras et al. 2022, Table 1, at a scaled noise level σ̂."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


class EDMPrecond(_Wrapper):
    """EDM preconditioning (Karras et al. 2022, "Elucidating the Design Space…", §5 and Table 1).

    With σ̂ = σ_t/α_t and y = x/α_t (the noisy input rescaled to unit signal, y = x₀ + σ̂ ε):

        D(y, σ̂) = c_skip y + c_out F(c_in y, c_noise),
        c_skip = σ_d²/(σ̂² + σ_d²),  c_out = σ̂ σ_d/√(σ̂² + σ_d²),  c_in = 1/√(σ̂² + σ_d²),
        c_noise = ¼ log σ̂,

    and the score with respect to x is (D − y)/(σ̂² α_t).  ``denoise`` returns D, the x₀ estimate.

    Args:
        net: the raw network F.
        process: any process (for EDM, α = 1 and σ̂ = t).
        sigma_data: data standard deviation σ_d; default ``process.sigma_data`` if the process
            states one (EDM), else 0.5.
    """

    def __init__(self, net: Net, process: Process, *, sigma_data: float | None = None) -> None:
        super().__init__(net, process, "log_sigma")
        if sigma_data is None:
            sigma_data = process.data_scale
        self.sigma_data = check_positive(sigma_data, "sigma_data")

    def coefficients(self, sigma: Tensor | float) -> EDMCoefficients:
        """(c_skip, c_out, c_in, c_noise) at scaled noise level(s) σ̂, each of σ̂'s shape."""
        sigma = as_time(sigma)
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        return EDMCoefficients(
            c_skip=sd2 / total,
            c_out=sigma * self.sigma_data / total.sqrt(),
            c_in=total.rsqrt(),
            c_noise=0.25 * sigma.log(),
        )

    def _denoise(self, x: Tensor, t: Tensor | float, cond: dict):
        _, alpha, sigma = self._marginal(x, t)
        sigma_hat = sigma / alpha
        c = self.coefficients(sigma_hat)
        y = x / expand_like(alpha, x)
        f = self._net(expand_like(c.c_in, x) * y, c.c_noise, cond)
        d = expand_like(c.c_skip, x) * y + expand_like(c.c_out, x) * f
        return d, y, alpha, sigma_hat

    def forward(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        d, y, alpha, sigma_hat = self._denoise(x, t, cond)
        return (d - y) / expand_like(sigma_hat**2 * alpha, x)

    def denoise(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        return self._denoise(x, t, cond)[0]

    def _value_and_divergence(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor]:
        # tr ∂D/∂y = c_skip·dim + c_out·c_in·tr ∂F/∂u at u = c_in y; ∂/∂x = (1/α) ∂/∂y.
        _, alpha, sigma = self._marginal(x, t)
        sigma_hat = sigma / alpha
        c = self.coefficients(sigma_hat)
        y = x / expand_like(alpha, x)
        f, div_f = self._net_and_divergence(expand_like(c.c_in, x) * y, c.c_noise)
        d = expand_like(c.c_skip, x) * y + expand_like(c.c_out, x) * f
        dim = x[0].numel()
        trace_d = c.c_skip * dim + c.c_out * c.c_in * div_f
        scale = sigma_hat**2 * alpha
        return (d - y) / expand_like(scale, x), (trace_d - dim) / (scale * alpha)

    def extra_repr(self) -> str:
        return f"process={self.process!r}, sigma_data={self.sigma_data}"


PREDICTIONS = {
    "eps": EpsilonPrediction,
    "x0": DataPrediction,
    "score": ScorePrediction,
    "edm": EDMPrecond,
}
_ALIASES = {"epsilon": "eps", "noise": "eps", "data": "x0", "x_0": "x0"}


def wrap(net: Net, process: Process, prediction: str = "eps", **options) -> nn.Module:
    """Score model for ``net`` under ``process``: ``prediction`` is ``"eps"``, ``"x0"``, ``"score"``
    or ``"edm"``; ``options`` go to the wrapper (``noise_input``, ``scale_by_sigma``,
    ``sigma_data``)."""
    key = _ALIASES.get(str(prediction).lower(), str(prediction).lower())
    if key not in PREDICTIONS:
        raise ValueError(
            f"unknown prediction {prediction!r}; choose one of {', '.join(PREDICTIONS)}"
        )
    try:
        return PREDICTIONS[key](net, process, **options)
    except TypeError as err:  # an option the chosen wrapper does not take
        raise ValueError(f"bad options for prediction {key!r}: {err}") from None


# ------------------------------------------------------------------------------------------------
# Binding the time
# ------------------------------------------------------------------------------------------------
def at_time(
    model: Callable[[Tensor, Tensor], Tensor], t: Tensor | float
) -> Callable[[Tensor], Tensor]:
    """The score function x ↦ model(x, t) at a fixed time (a scalar, or one time per sample ``(B,)``).

    Lets the objectives written for a plain score function (ESM, ISM, SSM, DSM) train a
    noise-conditional model at given noise levels, e.g. ``ism(at_time(model, 0.1), x_t)``.
    t follows x's dtype and device at every call; a ``(B,)`` t requires a batch of exactly B.
    """
    if isinstance(t, Tensor):
        if t.ndim > 1:
            raise ValueError(f"t must be a scalar or have shape (batch,), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("t contains NaN or infinite values")
    else:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"t must be finite, got {t}")

    if callable(getattr(model, "value_and_divergence", None)):
        return _AtTime(model, t)

    def score_fn(x: Tensor) -> Tensor:
        return model(x, broadcast_time(t, x))

    return score_fn


class _AtTime:
    """x ↦ model(x, t) for a model with an exact cheap divergence, which it keeps offering as
    ``value_and_divergence(x)`` (the protocol of ``objectives.ism``)."""

    def __init__(self, model, t: Tensor | float) -> None:
        self.model, self.t = model, t

    def __call__(self, x: Tensor) -> Tensor:
        return self.model(x, broadcast_time(self.t, x))

    def value_and_divergence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.value_and_divergence(x, broadcast_time(self.t, x))
