"""A hollow score network, s_i(x) = τ_i(x_i, h_i(x_{−i})), whose exact divergence costs one backward pass.

Chen & Duvenaud (2019), "Neural Networks with Cheap Differential Operators": when the conditioner
h_i does not depend on x_i, the Jacobian of s splits into its diagonal ∂τ_i/∂x_i and a hollow part
(zero diagonal) that goes through h.  Holding h fixed (detached from x), one backward pass of
Σ_i s_i with respect to x returns every ∂τ_i/∂x_i at once, so

    tr ∇ₓs(x) = Σ_i ∂τ_i/∂x_i (x_i, h_i)   — exact, from one forward and one backward pass,

instead of D vector-Jacobian products.  Implicit score matching (``objectives.ism``) and the exact
likelihood (``log_likelihood``) use it through :meth:`HollowMLP.value_and_divergence`.

The layers, for every coordinate i at once (activations of shape (B, D, width)):

    φ_i = act(u_i x_i + b_i) ∈ R^m                    per-coordinate features of x_i
    h_i = Σ_{j≠i} M_j φ_j + p_i                       leave-one-out sum: h_i never sees x_i
    h_i ← conditioner blocks(h_i, t)                  residual MLP blocks shared by all coordinates
    z_i = h_i + Q_i φ_i                                the coordinate's own value enters here only
    s_i = wᵀ blocks(z_i, t) + c_i                      residual blocks, then a linear read-out

The leave-one-out sum is S − M_i φ_i with S = Σ_j M_j φ_j, so its gradient with respect to x_i is
exactly zero (the two paths cancel), and h_i depends on the other coordinates only through a
``width``-dimensional sum of per-coordinate features — the restriction that buys the cheap trace
(how much it costs in accuracy: benchmarks/results/objectives.md).  The read-out starts at zero,
so an untrained network returns s = 0, like :class:`~scorematch.models.MLPScore`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .embedding import TimeEmbedding, make_activation, time_as_batch


class _CoordinateBlock(nn.Module):
    """h ← h + W₂ act(W₁ act(h) + A e(t)) on (B, D, width), the same weights for every coordinate."""

    def __init__(self, width: int, emb_dim: int, activation: str) -> None:
        super().__init__()
        self.act = make_activation(activation)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width) if emb_dim else None
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: Tensor, emb: Tensor | None) -> Tensor:
        z = self.fc1(self.act(h))
        if emb is not None and self.emb is not None:
            z = z + self.emb(emb)[:, None, :]
        return h + self.fc2(self.act(z))


class HollowMLP(nn.Module):
    """Hollow score network s_θ(x, t) with the shape of x and an exact divergence in one pass.

    Args:
        dim: number of features per sample (any event shape with ``dim`` elements is flattened).
        width: hidden size per coordinate (the conditioner's summary of the other coordinates).
        features: per-coordinate features φ_i of x_i (m above).
        conditioner_depth, depth: residual blocks before and after x_i enters.
        time_embed_dim: size of the noise embedding; 0 builds an unconditional network.
        fourier_scale: standard deviation of the noise embedding's Fourier frequencies.
        activation: a smooth activation (``"silu"``, ``"gelu"``, ``"softplus"``, ``"tanh"``).
        seed: seed of the private generator of the noise embedding's frequencies.

    Call ``model(x, t)`` (t a scalar or ``(B,)``) or ``model(x)`` as a plain score function;
    ``model.value_and_divergence(x, t=None)`` returns ``(s, tr ∇ₓs)`` with the trace ``(B,)``.
    """

    def __init__(
        self,
        dim: int,
        width: int = 64,
        features: int = 16,
        conditioner_depth: int = 2,
        depth: int = 2,
        time_embed_dim: int = 64,
        fourier_scale: float = 16.0,
        activation: str = "silu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("dim", dim, 1), ("width", width, 1), ("features", features, 1),
            ("conditioner_depth", conditioner_depth, 0), ("depth", depth, 0),
            ("time_embed_dim", time_embed_dim, 0),
        ):  # fmt: skip
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        self.act = make_activation(activation)
        d, k, m = int(dim), int(width), int(features)
        self.dim = d
        self.config = dict(
            dim=dim, width=width, features=features, conditioner_depth=conditioner_depth,
            depth=depth, time_embed_dim=time_embed_dim, fourier_scale=fourier_scale,
            activation=activation, seed=seed,
        )  # fmt: skip
        self.time_embed = None
        if time_embed_dim:
            self.time_embed = TimeEmbedding(
                time_embed_dim, fourier_scale=fourier_scale, activation=activation, seed=seed
            )
        self.emb_act = make_activation(activation)
        # Per-coordinate parameters; scales keep S = Σ_j M_j φ_j and Q_i φ_i of order one.
        self.feature_weight = nn.Parameter(torch.randn(d, m))
        self.feature_bias = nn.Parameter(torch.empty(d, m).uniform_(-2.0, 2.0))
        self.read_others = nn.Parameter(torch.randn(d, m, k) / math.sqrt(m * d))
        self.read_own = nn.Parameter(torch.randn(d, m, k) / math.sqrt(m))
        self.position = nn.Parameter(torch.randn(d, k) / math.sqrt(k))
        self.conditioner = nn.ModuleList(
            _CoordinateBlock(k, time_embed_dim, activation) for _ in range(int(conditioner_depth))
        )
        self.transformer = nn.ModuleList(
            _CoordinateBlock(k, time_embed_dim, activation) for _ in range(int(depth))
        )
        self.out = nn.Linear(k, 1)
        self.out_bias = nn.Parameter(torch.zeros(d))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        flat = self._flatten(x)
        emb = self._embed(flat, t)
        phi = self._features(flat)
        return self._transform(self._condition(phi, emb), phi, emb).reshape(x.shape)

    def value_and_divergence(
        self, x: Tensor, t: Tensor | float | None = None
    ) -> tuple[Tensor, Tensor]:
        """(s(x, t), tr ∇ₓs(x, t)) per sample: one forward pass with the conditioner fed a copy
        of x that the backward pass does not see, then one backward pass of Σ_i s_i through the
        coordinates' own paths only.  Differentiable in the parameters (and in x when x requires
        grad) under grad mode; detached otherwise, and usable under ``inference_mode``."""
        grad_enabled = torch.is_grad_enabled()
        with torch.inference_mode(False), torch.enable_grad():
            flat = self._flatten(x)
            flat = flat.clone() if flat.is_inference() else flat
            own = flat.detach().requires_grad_(True)
            # Same values as flat; x's own gradient (if any) still reaches the output through it.
            own_in = own + (flat - flat.detach()) if flat.requires_grad else own
            emb = self._embed(flat, t)
            h = self._condition(self._features(flat), emb)
            s = self._transform(h, self._features(own_in), emb)
            (diagonal,) = torch.autograd.grad(s.sum(), own, create_graph=grad_enabled)
            divergence = diagonal.sum(1)
        if not grad_enabled:
            s, divergence = s.detach(), divergence.detach()
        return s.reshape(x.shape), divergence

    def _flatten(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"HollowMLP expects x of shape (batch, *event), got {shape}")
        if math.prod(x.shape[1:]) != self.dim:
            raise ValueError(
                f"HollowMLP was built for {self.dim} features per sample, got x of shape "
                f"{tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.dim)

    def _embed(self, flat: Tensor, t: Tensor | float | None) -> Tensor | None:
        if t is None or self.time_embed is None:
            return None
        return self.emb_act(self.time_embed(time_as_batch(t, flat)))

    def _features(self, flat: Tensor) -> Tensor:
        """φ_i(x_i) for every coordinate, (B, D, m)."""
        return self.act(flat[..., None] * self.feature_weight + self.feature_bias)

    def _condition(self, phi: Tensor, emb: Tensor | None) -> Tensor:
        """h_i = Σ_{j≠i} M_j φ_j + p_i, then the conditioner blocks, (B, D, width)."""
        each = torch.einsum("bdm,dmk->bdk", phi, self.read_others)
        h = each.sum(1, keepdim=True) - each + self.position
        for block in self.conditioner:
            h = block(h, emb)
        return h

    def _transform(self, h: Tensor, phi: Tensor, emb: Tensor | None) -> Tensor:
        """s_i = wᵀ blocks(h_i + Q_i φ_i) + c_i, (B, D)."""
        z = h + torch.einsum("bdm,dmk->bdk", phi, self.read_own)
        for block in self.transformer:
            z = block(z, emb)
        return self.out(self.act(z))[..., 0] + self.out_bias
