"""Class-conditional score models and classifier-free guidance, as score models themselves.

A network trained with labels and label dropout (``LabelEmbedding``'s "no label" token) gives
both s(x, t | y) and the unconditional s(x, t).  Classifier-free guidance (Ho & Salimans 2022,
"Classifier-Free Diffusion Guidance", eq. 6, written for scores) samples with

    s_w(x, t | y) = (1 + w) s(x, t | y) − w s(x, t) = s(x, t | y) + w ∇ₓ log p_t(y | x),

the score of p_t(x | y) p_t(y | x)^w up to the normaliser: w > 0 trades diversity for class
fidelity, w = 0 is plain conditional sampling.  ``Guided`` is an ``nn.Module`` score model
``model(x, t)``, so every sampler and the likelihood take it unchanged.  It passes any other
conditioning through (a mask-conditional model's ``known=``, ``mask=``, ``absent=``), so a
labelled row is imputed by ``impute(Guided(model, label), ...)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import broadcast_time
from ..parametrization import conditioning_of

__all__ = ["Guided"]


class Guided(nn.Module):
    """The score of class ``label``, guided with weight ``guidance`` (see the module docstring).

    Args:
        model: a score model that takes ``label=`` (a network built with ``num_classes``, or the
            oracle ``MixtureScoreModel``, whose classes are its components).
        label: an int for every row, or ``(B,)`` integers (−1: no label, i.e. unconditional).
        guidance: w ≥ 0.  w = 0 costs one model call per evaluation, w > 0 two.
    """

    def __init__(self, model, label: Tensor | int, guidance: float = 0.0) -> None:
        super().__init__()
        if "label" not in conditioning_of(model):
            raise ValueError(
                f"{type(model).__name__} takes no labels; train a network with num_classes "
                "(train --labels COLUMN)"
            )
        guidance = float(guidance)
        if not (math.isfinite(guidance) and guidance >= 0):
            raise ValueError(f"guidance must be a finite number >= 0, got {guidance}")
        self.model, self.guidance = model, guidance
        self.label = torch.as_tensor(label)
        if self.label.is_floating_point() or self.label.ndim > 1:
            raise ValueError(f"label must be an int or a (batch,) integer tensor, got {label!r}")
        # what it still takes: the model's other conditioning (e.g. a mask-conditional one's)
        self.conditioning = tuple(c for c in conditioning_of(model) if c != "label")

    def forward(self, x: Tensor, t: Tensor | float, **cond) -> Tensor:
        t = broadcast_time(t, x)
        label = self.label.to(x.device)
        label = label.expand(x.shape[0]) if label.ndim == 0 else label
        conditional = self.model(x, t, label=label, **cond)
        if self.guidance == 0:
            return conditional
        unconditional = self.model(x, t, label=None, **cond)
        return (1 + self.guidance) * conditional - self.guidance * unconditional

    def extra_repr(self) -> str:
        return f"guidance={self.guidance}"
