"""Score models of a row's unknown entries given its known ones: one mechanism for every sampler.

Given a mask m of known entries with clean values v, the conditional law p(x_U | x_K = v) is
sampled by running any sampler on a score model of the product law p(x_U | x_K = v) ⊗ δ_v.  Under
the forward process the point mass δ_v becomes N(α_t v, σ_t² I), whose score is exact:

    s_K(x, t) = −(x_K − α_t v) / σ_t²,

so the known coordinates of the state follow the reverse process of a point mass and end at v
(exactly, after the final Tweedie step), whatever the sampler.  The two methods differ in the
score of the unknown coordinates:

* ``Replacement`` (score-SDE's inpainting, Song et al. 2021, App. I.2): the model's joint score at
  the current state, s_U(x, t) = ∇_{x_U} log p_t(x_U, x_K).  Any unconditional model can do it, but
  it is biased: x_K is a noisy copy of v, and ∇_{x_U} log p_t(x_U, x_K) is not the score of
  p_t(x_U | x₀,K = v) (the noisy x_K carries less information than v; the bias vanishes only
  where σ_t is small).
* ``MaskConditioned`` (CSDI, Tashiro et al. 2021): a mask-conditional network's score of
  p_t(x_U | x₀,K = v), given the clean values and the mask as inputs (``model(x, t, known=v,
  mask=m)``).  Exact when the network is (the exact one is the oracle's, see
  ``MixtureScoreModel``); one network serves every pattern of missing entries.

Both are ``nn.Module`` score models ``model(x, t)``: every sampler (and the likelihood) takes them
unchanged.  ``impute`` (:mod:`.imputation`) builds them for a table.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import Tensor, nn

from .._checks import broadcast_time, check_batch, expand_like
from ..parametrization import check_conditioning, conditioning_of

__all__ = ["KnownEntries", "MaskConditioned", "Replacement", "point_mass_score"]


def point_mass_score(process, x: Tensor, t: Tensor, known: Tensor) -> Tensor:
    """−(x − α_t v)/σ_t²: the exact score of the noised point mass at v, N(α_t v, σ_t² I)."""
    alpha, sigma = process.marginal(broadcast_time(t, x))
    return -(x - expand_like(alpha, x) * known) / expand_like(sigma**2, x)


class KnownEntries(nn.Module, metaclass=ABCMeta):
    """A score model given known entries: the point-mass score on them, ``unknown_score`` elsewhere.

    Args:
        model: the score model ``model(x, t, **cond)`` being conditioned.
        process: the forward process the model was trained on.
        known: ``(B, *event)`` clean values (read where ``mask`` is True; anything finite elsewhere).
        mask: ``(B, *event)`` booleans, True where the entry is known.
    """

    def __init__(self, model, process, known: Tensor, mask: Tensor) -> None:
        super().__init__()
        check_batch(known, "known")
        if not isinstance(mask, Tensor) or mask.shape != known.shape:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must have the shape of known {tuple(known.shape)}, got {got}")
        self.model, self.process = model, process
        self.mask = mask.to(device=known.device, dtype=torch.bool)
        self.known = torch.where(self.mask, known, torch.zeros_like(known))

    @abstractmethod
    def unknown_score(self, x: Tensor, t: Tensor) -> Tensor:
        """The score on the unknown entries (values elsewhere are replaced)."""

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        if x.shape != self.known.shape:
            raise ValueError(
                f"this conditioned model holds {tuple(self.known.shape)} rows, got x of shape "
                f"{tuple(x.shape)}"
            )
        t = broadcast_time(t, x)
        known = self.known.to(x.dtype)
        point = point_mass_score(self.process, x, t, known)
        return torch.where(self.mask, point, self.unknown_score(x, t))


class Replacement(KnownEntries):
    """Unknown entries get the model's joint score at the current state (biased; see the module)."""

    def unknown_score(self, x: Tensor, t: Tensor) -> Tensor:
        return self.model(x, t)


class MaskConditioned(KnownEntries):
    """Unknown entries get a mask-conditional model's score of p_t(x_U | x₀,K = v)."""

    def __init__(self, model, process, known: Tensor, mask: Tensor) -> None:
        if "mask" not in conditioning_of(model):
            raise ValueError(
                f"{type(model).__name__} is not mask-conditional; train a network with "
                "mask_conditional=True (or impute with method='replacement')"
            )
        super().__init__(model, process, known, mask)

    def unknown_score(self, x: Tensor, t: Tensor) -> Tensor:
        cond = check_conditioning(self.model, {"known": self.known.to(x.dtype), "mask": self.mask})
        return self.model(x, t, **cond)
