"""Residual MLPs for low-dimensional data: a score network and an energy network.

Both share one trunk: an input projection, ``depth`` residual blocks
h ← h + W₂ act(W₁ act(norm(h)) + A e(t)) (norm: identity by default, or LayerNorm), and an output
head norm → act → linear.  The noise
embedding e(t) (``TimeEmbedding``) is added inside every block.  The output layer starts at zero,
so an untrained score network returns s(x, t) = 0 and an untrained energy is constant — the
usual choice for diffusion networks (Ho et al. 2020; Karras et al. 2022), which keeps the initial
loss at its data-only value.

A score network may be conditioned (``MLPScore(num_classes=..., mask_conditional=...)``): a class
label's embedding is added to the noise embedding, and a mask-conditional network reads the known
entries of a row as extra inputs (``embedding.mask_channels``; :mod:`scorematch.conditional`).

Only smooth activations are offered, because implicit and sliced score matching differentiate
s_θ (for an energy, E_θ twice) with respect to x (Hyvärinen 2005; Song et al. 2019).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from .embedding import (
    InputFourierFeatures,
    LabelEmbedding,
    TimeEmbedding,
    make_activation,
    mask_channels,
    time_as_batch,
)

NORMS = ("layer", "none")


class _Block(nn.Module):
    def __init__(self, width: int, emb_dim: int, activation: str, norm: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if norm == "layer" else nn.Identity()
        self.act = make_activation(activation)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width) if emb_dim else None
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, emb: Tensor | None) -> Tensor:
        z = self.fc1(self.act(self.norm(h)))
        if emb is not None and self.emb is not None:
            z = z + self.emb(emb)
        return h + self.fc2(self.act(z))


class _ResidualMLP(nn.Module):
    """Shared trunk: (B, in_dim), optional (B,) conditioning → (B, out_dim)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        width: int,
        depth: int,
        time_embed_dim: int,
        fourier_scale: float,
        activation: str,
        norm: str,
        seed: int,
        input_features: int = 0,
        input_scale: float = 1.0,
        num_classes: int = 0,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        for name, value, low in (("dim", in_dim, 1), ("width", width, 1), ("depth", depth, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        if int(time_embed_dim) != time_embed_dim or time_embed_dim < 0:
            raise ValueError(f"time_embed_dim must be an integer >= 0, got {time_embed_dim}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        make_activation(activation)  # validate early
        self.time_embed = (
            TimeEmbedding(
                time_embed_dim, fourier_scale=fourier_scale, activation=activation, seed=seed
            )
            if time_embed_dim
            else None
        )
        self.emb_act = make_activation(activation)
        # seed + 1: frequencies independent of the noise embedding's
        self.features = (
            InputFourierFeatures(in_dim, input_features, input_scale, seed + 1)
            if input_features
            else None
        )
        self.inp = nn.Linear(self.features.out_dim if self.features else in_dim, width)
        self.blocks = nn.ModuleList(
            _Block(width, time_embed_dim, activation, norm) for _ in range(depth)
        )
        self.out_norm = nn.LayerNorm(width) if norm == "layer" else nn.Identity()
        self.out_act = make_activation(activation)
        self.out = nn.Linear(width, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # built last, so that the other layers draw the same initial weights as without labels
        self.label_embed = None
        if num_classes:
            if not time_embed_dim:
                raise ValueError("num_classes needs a noise embedding (time_embed_dim > 0)")
            self.label_embed = LabelEmbedding(num_classes, time_embed_dim)
        self.skip = None
        if linear_skip:  # a linear map from the input to the output, zero at first
            self.skip = nn.Linear(in_dim, out_dim, bias=False)
            nn.init.zeros_(self.skip.weight)

    def forward(self, h: Tensor, t: Tensor | float | None, label=None) -> Tensor:
        emb = None
        if t is not None and self.time_embed is not None:
            emb = self.time_embed(time_as_batch(t, h))
            if self.label_embed is not None:
                emb = emb + self.label_embed(label, h.shape[0], emb)
            emb = self.emb_act(emb)
        h_in = h
        if self.features is not None:
            h = self.features(h)
        h = self.inp(h)
        for block in self.blocks:
            h = block(h, emb)
        out = self.out(self.out_act(self.out_norm(h)))
        return out if self.skip is None else out + self.skip(h_in)


def _flatten(x: Tensor, dim: int, cls: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{cls} expects x of shape (batch, *event), got {shape}")
    if math.prod(x.shape[1:]) != dim:
        raise ValueError(
            f"{cls} was built for {dim} features per sample, got x of shape {tuple(x.shape)}"
        )
    return x.reshape(x.shape[0], dim)


class _MLPNetwork(nn.Module):
    """What ``MLPScore`` and ``MLPEnergy`` share: their arguments (recorded in ``config``; the
    width and depth default to the class's ``default_width``/``default_depth``) and the residual
    trunk from ``dim`` features to ``dim`` outputs (a score) or one (an energy).  Labels, masks and
    the linear skip are the score network's (an energy network refuses them)."""

    default_width: int
    default_depth: int
    scalar_output: bool

    def __init__(
        self,
        dim: int,
        width: int | None = None,
        depth: int | None = None,
        time_embed_dim: int = 64,
        fourier_scale: float = 16.0,
        activation: str = "silu",
        norm: str = "none",
        seed: int = 0,
        input_features: int = 0,
        input_scale: float = 1.0,
        num_classes: int = 0,
        mask_conditional: bool = False,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        self.dim = int(dim)
        width = self.default_width if width is None else width
        depth = self.default_depth if depth is None else depth
        self.mask_conditional = bool(mask_conditional)
        self.conditioning = ("label",) * bool(num_classes) + ("mask",) * self.mask_conditional
        self.config = dict(
            dim=dim,
            width=width,
            depth=depth,
            time_embed_dim=time_embed_dim,
            fourier_scale=fourier_scale,
            activation=activation,
            norm=norm,
            seed=seed,
            input_features=input_features,
            input_scale=input_scale,
        )
        if self.scalar_output:
            if num_classes or mask_conditional or linear_skip:
                raise ValueError(
                    f"{type(self).__name__} takes no num_classes, mask_conditional or linear_skip"
                )
        else:
            self.config.update(
                num_classes=num_classes,
                mask_conditional=self.mask_conditional,
                linear_skip=bool(linear_skip),
            )
        self.net = _ResidualMLP(
            4 * self.dim if self.mask_conditional else self.dim,
            1 if self.scalar_output else self.dim,
            width,
            depth,
            time_embed_dim,
            fourier_scale,
            activation,
            norm,
            seed,
            input_features,
            input_scale,
            num_classes,
            linear_skip,
        )


class MLPScore(_MLPNetwork):
    """Residual MLP score network s_θ(x, t) with the shape of x.

    Args:
        dim: number of features per sample (an event of any shape with ``dim`` elements is
            flattened and the output reshaped back).
        width, depth: hidden width and number of residual blocks (default 256 and 4).
        time_embed_dim: size of the noise embedding; 0 builds an unconditional network.
        fourier_scale: standard deviation s of the Fourier frequencies, w ~ N(0, s²).
        activation: ``"silu"`` (default), ``"gelu"``, ``"softplus"`` or ``"tanh"``.
        norm: ``"none"`` (default) or ``"layer"`` (pre-norm LayerNorm in every block).  On the
            2-D toys both reach the same denoising loss; "none" is simpler and faster.
        seed: seed of the private generator that draws the Fourier frequencies.
        input_features, input_scale: m > 0 adds random Fourier features of x with frequencies
            ~ N(0, input_scale²) (:class:`InputFourierFeatures`; for sharp low-dimensional data).
        num_classes: C > 0 takes ``label=`` (C classes and a "no label" token, −1 or None).
        mask_conditional: take ``known=``, ``mask=``, ``absent=`` (a row's known entries, see
            ``embedding.mask_channels``) and model the other entries given them.
        linear_skip: add a linear map from the input (with the known entries) to the output,
            zero at first: linear relations between a table's columns are then one layer away.

    Call ``model(x, t)`` with t a scalar or ``(B,)`` tensor, or ``model(x)`` / ``t=None`` to use
    it as a plain score function s_θ(x) (the noise embedding is then skipped).
    """

    default_width, default_depth, scalar_output = 256, 4, False

    def forward(
        self,
        x: Tensor,
        t: Tensor | float | None = None,
        *,
        label: Tensor | int | None = None,
        known: Tensor | None = None,
        mask: Tensor | None = None,
        absent: Tensor | None = None,
    ) -> Tensor:
        h = _flatten(x, self.dim, "MLPScore")
        if label is not None and "label" not in self.conditioning:
            raise ValueError("this MLPScore has no labels (built with num_classes=0)")
        if self.mask_conditional:
            flat = [None if v is None else v.reshape(h.shape) for v in (known, mask, absent)]
            h = mask_channels(h, *flat)
        elif not (known is None and mask is None and absent is None):
            raise ValueError("this MLPScore is not mask-conditional (mask_conditional=False)")
        return self.net(h, t, label).reshape(x.shape)


class MLPEnergy(_MLPNetwork):
    """Residual MLP energy E_θ(x, t) → one scalar per sample, shape ``(B,)``.

    The model density is p_θ(x) ∝ exp(−E_θ(x)) and its score is s_θ(x) = −∇ₓE_θ(x); the
    normalising constant never enters score matching (Hyvärinen 2005).  All layers are smooth, so
    E_θ is C^∞ in x and second derivatives (needed by implicit / sliced score matching of
    −∇E_θ) exist.  Arguments as in :class:`MLPScore` (width and depth default to 128 and 3); the
    output layer starts at zero, so the initial energy is constant and the initial score is 0.
    """

    default_width, default_depth, scalar_output = 128, 3, True

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        return self.net(_flatten(x, self.dim, "MLPEnergy"), t)[:, 0]
