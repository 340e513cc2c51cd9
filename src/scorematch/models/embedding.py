"""Noise-level embeddings shared by the score networks.

A network receives its noise conditioning as one float per sample: diffusion time t ∈ [0, 1], or
EDM's c_noise = ¼ log σ, as chosen by the caller.  The value is lifted to a vector with fixed random
Fourier features γ(t) = [sin 2π t w, cos 2π t w], w ~ N(0, s²) (Tancik et al. 2020, "Fourier
features let networks learn high frequency functions"; used for noise levels by Song et al. 2021,
"Score-based generative modeling through SDEs"), then passed through a small MLP.

Conditioning enters the networks here too: a class label as a learned embedding added to the noise
embedding (``LabelEmbedding``), and the known entries of a mask-conditional network as extra input
channels (``mask_channels``; :mod:`scorematch.conditional`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    """Return a smooth (C^∞) activation module by name; ReLU is excluded on purpose.

    Implicit and sliced score matching differentiate the network's output with respect to its input
    (energies twice), so the activation must have non-vanishing, continuous derivatives.
    """
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[key]()


def time_as_batch(t: Tensor | float, x: Tensor) -> Tensor:
    """Return the noise conditioning as a ``(batch,)`` tensor with x's dtype and device.

    Written without data-dependent Python control flow so it works under ``torch.func.vmap``.
    """
    if isinstance(t, Tensor):
        t = t.to(dtype=x.dtype, device=x.device)
    else:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    batch = x.shape[0]
    if t.ndim == 0:
        return t.expand(batch)
    if t.ndim == 1 and t.shape[0] in (1, batch):
        return t.expand(batch)
    raise ValueError(f"t must be a scalar or have shape ({batch},), got shape {tuple(t.shape)}")


class GaussianFourierFeatures(nn.Module):
    """γ(t) = [sin(2π t w), cos(2π t w)] with w ~ N(0, scale²) fixed at construction.

    The frequencies come from a private ``torch.Generator`` seeded with ``seed``, so two modules
    built with the same arguments hold identical buffers (they are also saved in ``state_dict``).
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"Fourier feature dim must be an even integer >= 2, got {dim}")
        if not scale > 0:
            raise ValueError(f"fourier_scale must be positive, got {scale}")
        gen = torch.Generator().manual_seed(int(seed))
        freqs = torch.randn(dim // 2, generator=gen) * float(scale)
        self.register_buffer("freqs", freqs)
        self.dim, self.scale = dim, float(scale)

    def forward(self, t: Tensor) -> Tensor:
        angle = 2 * math.pi * t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([angle.sin(), angle.cos()], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale}"


class InputFourierFeatures(nn.Module):
    """x ↦ [x, sin(2π Bᵀx), cos(2π Bᵀx)] with B ∈ R^{D×m}, B_ij ~ N(0, scale²) fixed at construction.

    Random Fourier features of the input (Tancik et al. 2020, "Fourier Features Let Networks Learn
    High Frequency Functions in Low Dimensional Domains"): an MLP on raw low-dimensional x learns
    high-frequency structure slowly (spectral bias); on the sharp 2-D toys (thin rings) they halve
    the held-out NLL gap to a kernel density estimate (benchmarks/density.py).  The map is smooth,
    so ISM and SSM can still differentiate the network in x.  ``scale`` is in units of x (for
    standardised data ~1–2); B comes from a private generator seeded with ``seed``.
    """

    def __init__(self, in_dim: int, features: int, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if int(features) != features or features < 1:
            raise ValueError(f"input_features must be a positive integer, got {features}")
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"input_scale must be a positive number, got {scale}")
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer(
            "freqs", torch.randn(int(in_dim), int(features), generator=gen) * scale
        )
        self.out_dim = int(in_dim) + 2 * int(features)

    def forward(self, x: Tensor) -> Tensor:
        angle = (2 * math.pi) * (x @ self.freqs.to(x.dtype))
        return torch.cat([x, angle.sin(), angle.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Fourier features of the scalar conditioning followed by Linear → act → Linear."""

    def __init__(
        self,
        out_dim: int,
        fourier_dim: int | None = None,
        fourier_scale: float = 16.0,
        activation: str = "silu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        fourier_dim = out_dim if fourier_dim is None else fourier_dim
        fourier_dim += fourier_dim % 2
        self.fourier = GaussianFourierFeatures(fourier_dim, fourier_scale, seed)
        self.mlp = nn.Sequential(
            nn.Linear(fourier_dim, out_dim),
            make_activation(activation),
            nn.Linear(out_dim, out_dim),
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.fourier(t))


class LabelEmbedding(nn.Module):
    """A learned vector per class plus one "no label" token (index ``num_classes``), added to the
    noise embedding (as class-conditional diffusion networks do: Dhariwal & Nichol 2021; Karras
    et al. 2022).  The token is what classifier-free guidance trains with label dropout and
    evaluates as the unconditional score (Ho & Salimans 2022).  Zero at initialisation, so an
    untrained labelled network is the unlabelled one.

    ``forward(label, batch, like)``: ``label`` None (every row unlabelled), an int, or ``(B,)``
    integers in [0, num_classes) with −1 for "no label"; returns ``(B, dim)`` in ``like``'s dtype.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, int(dim))
        nn.init.zeros_(self.table.weight)

    def forward(self, label: Tensor | int | None, batch: int, like: Tensor) -> Tensor:
        if label is None:
            index = torch.full((batch,), self.num_classes, device=like.device)
        else:
            label = torch.as_tensor(label, device=like.device)
            if label.is_floating_point() and bool((label != label.round()).any()):
                raise ValueError("labels must be integers (−1 for no label)")
            label = label.long().reshape(-1).expand(batch) if label.numel() == 1 else label.long()
            if label.shape != (batch,):
                raise ValueError(
                    f"label must be an int or have shape ({batch},), got {tuple(label.shape)}"
                )
            if bool(((label < -1) | (label >= self.num_classes)).any()):
                raise ValueError(
                    f"labels must lie in [0, {self.num_classes}) or be −1 (no label), got "
                    f"{sorted(set(label.tolist()))[:8]}"
                )
            index = torch.where(label < 0, self.num_classes, label)
        return self.table(index).to(like.dtype)


def mask_channels(
    x: Tensor, known: Tensor | None, mask: Tensor | None, absent: Tensor | None
) -> Tensor:
    """The input of a mask-conditional network: [x·modelled, known·mask, mask, absent] along
    dimension 1 (4× the features of a table row, 4× the channels of an image).

    ``mask`` marks the known entries (their clean values in ``known``), ``absent`` the entries that
    are neither known nor modelled (a training row's missing cells); the network models the rest,
    so it sees x only there (CSDI, Tashiro et al. 2021, feeds the conditioning values and the noisy
    targets in separate channels in the same way).  None means no entry (nothing known/absent).
    """
    zeros = torch.zeros_like(x)
    mask = zeros if mask is None else mask.to(x.dtype)
    absent = zeros if absent is None else absent.to(x.dtype)
    known = zeros if known is None else torch.nan_to_num(known.to(x.dtype))
    if not mask.shape == absent.shape == known.shape == x.shape:
        raise ValueError(f"known, mask and absent must have x's shape {tuple(x.shape)}")
    modelled = (1 - mask) * (1 - absent)
    return torch.cat([x * modelled, known * mask, mask, absent], dim=1)
