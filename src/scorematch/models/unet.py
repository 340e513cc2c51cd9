"""A compact U-Net for image score models, in the style of DDPM / ADM.

Architecture (Ho et al. 2020, "Denoising diffusion probabilistic models"; Dhariwal & Nichol 2021,
"Diffusion models beat GANs"): a 3×3 input convolution; at each resolution level ``num_res_blocks``
residual blocks GroupNorm → SiLU → conv, with the noise embedding applied as a scale and shift
after the second GroupNorm, h ← GN(h)(1 + a) + b; self-attention at the chosen low-resolution
levels; strided-convolution downsampling and nearest-neighbour + conv upsampling; skip connections
concatenated on the way up; a middle block res → attention → res.  The last convolution of every
residual branch, every attention output and the final output convolution start at zero, so the
untrained network returns exactly 0 (the score of nothing in particular — a neutral start).

Conditioning (optional): a class label's embedding is added to the noise embedding (with a "no
label" token for classifier-free guidance), and a mask-conditional network reads the known pixels
as extra input channels (``embedding.mask_channels``; :mod:`scorematch.conditional`).

Attention is written with plain matrix products rather than a fused kernel so that the network
works under ``torch.func`` transforms (vmap, jvp, vjp) and double backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import LabelEmbedding, TimeEmbedding, mask_channels, time_as_batch


def _groups(channels: int, groups: int) -> int:
    """Largest divisor of ``channels`` not larger than ``groups``."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None
        self.norm2 = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if emb is not None and self.emb is not None:
            scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over the H·W positions, residual, output projection zeroed."""

    def __init__(self, channels: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            self.heads = 1
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.unbind(1)
        logits = torch.einsum("bhcn,bhcm->bhnm", q, k) / math.sqrt(c // self.heads)
        out = torch.einsum("bhnm,bhcm->bhcn", logits.softmax(dim=-1), v)
        return x + self.proj(out.reshape(b, c, h, w))


class _Down(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class _Up(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """A residual block optionally followed by attention (one entry of the U-Net's path)."""

    def __init__(self, res: _ResBlock, attn: _Attention | None) -> None:
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """U-Net score network for images: ``model(x, t)`` with x of shape (B, C, H, W).

    Args:
        in_channels: image channels C (output has the same number).
        channels: base width; level i has ``channels * channel_mult[i]`` channels.
        channel_mult: one multiplier per resolution level; H and W must be divisible by
            ``2 ** (len(channel_mult) - 1)`` (e.g. 8×8 with (1, 2, 2) runs at 8, 4 and 2 pixels).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_levels: indices into ``channel_mult`` (negative allowed) whose blocks get
            self-attention; default: the lowest-resolution level only.  The middle block always
            has attention.
        dropout: dropout rate inside residual blocks.
        time_embed_dim: size of the noise embedding (default ``4 * channels``); 0 builds an
            unconditional network.
        fourier_scale: standard deviation of the Fourier frequencies of the noise embedding.
        groups: GroupNorm groups, clipped per layer to the largest divisor of the channel count.
        head_channels: channels per attention head.
        seed: seed of the private generator that draws the Fourier frequencies.
        num_classes: C > 0 takes ``label=`` (C classes and a "no label" token, −1 or None).
        mask_conditional: take ``known=``, ``mask=``, ``absent=`` (known pixels, see
            ``embedding.mask_channels``) and model the other pixels given them.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_levels: tuple[int, ...] | None = None,
        dropout: float = 0.0,
        time_embed_dim: int | None = None,
        fourier_scale: float = 16.0,
        groups: int = 32,
        head_channels: int = 32,
        seed: int = 0,
        num_classes: int = 0,
        mask_conditional: bool = False,
    ) -> None:
        super().__init__()
        channel_mult = tuple(int(m) for m in channel_mult)
        levels = len(channel_mult)
        for name, value, low in (
            ("in_channels", in_channels, 1), ("channels", channels, 1),
            ("num_res_blocks", num_res_blocks, 1), ("groups", groups, 1),
            ("head_channels", head_channels, 1),
        ):  # fmt: skip
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        if levels == 0 or min(channel_mult) < 1:
            raise ValueError(
                f"channel_mult must be a non-empty tuple of positive ints, got {channel_mult}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if attention_levels is None:
            attention_levels = (levels - 1,)
        attn = set()
        for lvl in attention_levels:
            if not -levels <= int(lvl) < levels:
                raise ValueError(
                    f"attention level {lvl} is out of range for {levels} levels (channel_mult)"
                )
            attn.add(int(lvl) % levels)
        if time_embed_dim is None:
            time_embed_dim = 4 * channels
        if int(time_embed_dim) != time_embed_dim or time_embed_dim < 0:
            raise ValueError(f"time_embed_dim must be an integer >= 0, got {time_embed_dim}")

        self.in_channels = int(in_channels)
        self.factor = 2 ** (levels - 1)
        self.config = dict(
            in_channels=in_channels, channels=channels, channel_mult=list(channel_mult),
            num_res_blocks=num_res_blocks, attention_levels=sorted(attn), dropout=dropout,
            time_embed_dim=time_embed_dim, fourier_scale=fourier_scale, groups=groups,
            head_channels=head_channels, seed=seed, num_classes=num_classes,
            mask_conditional=bool(mask_conditional),
        )  # fmt: skip
        self.mask_conditional = bool(mask_conditional)
        self.conditioning = ("label",) * bool(num_classes) + ("mask",) * self.mask_conditional
        self.time_embed = (
            TimeEmbedding(time_embed_dim, channels, fourier_scale, seed=seed)
            if time_embed_dim
            else None
        )
        emb = int(time_embed_dim)

        def attention(c: int, level: int) -> _Attention | None:
            return _Attention(c, groups, head_channels) if level in attn else None

        inputs = 4 * in_channels if self.mask_conditional else in_channels
        self.conv_in = nn.Conv2d(inputs, channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [channels]
        c = channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                c_out = channels * mult
                self.down.append(
                    _Level(_ResBlock(c, c_out, emb, groups, dropout), attention(c_out, level))
                )
                c = c_out
                skips.append(c)
            if level < levels - 1:
                self.down.append(_Down(c))
                skips.append(c)
        self.mid = nn.ModuleList(
            [
                _ResBlock(c, c, emb, groups, dropout),
                _Attention(c, groups, head_channels),
                _ResBlock(c, c, emb, groups, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            for _ in range(num_res_blocks + 1):
                c_out = channels * channel_mult[level]
                self.up.append(
                    _Level(
                        _ResBlock(c + skips.pop(), c_out, emb, groups, dropout),
                        attention(c_out, level),
                    )
                )
                c = c_out
            if level > 0:
                self.up.append(_Up(c))
        self.norm_out = nn.GroupNorm(_groups(c, groups), c)
        self.conv_out = _zero(nn.Conv2d(c, in_channels, 3, padding=1))
        # built last, so that the other layers draw the same initial weights as without labels
        self.label_embed = None
        if num_classes:
            if not emb:
                raise ValueError("num_classes needs a noise embedding (time_embed_dim > 0)")
            self.label_embed = LabelEmbedding(num_classes, emb)

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
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"UNet expects x of shape (batch, {self.in_channels}, H, W), got {shape}"
            )
        h_in, w_in = x.shape[-2:]
        if h_in % self.factor or w_in % self.factor:
            raise ValueError(
                f"UNet with {len(self.config['channel_mult'])} levels needs H and W divisible by "
                f"{self.factor}, got {h_in}×{w_in}; change channel_mult or resize the images"
            )
        if label is not None and self.label_embed is None:
            raise ValueError("this UNet has no labels (built with num_classes=0)")
        emb = None
        if t is not None and self.time_embed is not None:
            emb = self.time_embed(time_as_batch(t, x))
            if self.label_embed is not None:
                emb = emb + self.label_embed(label, x.shape[0], emb)
            emb = F.silu(emb)
        if self.mask_conditional:
            x = mask_channels(x, known, mask, absent)
        elif not (known is None and mask is None and absent is None):
            raise ValueError("this UNet is not mask-conditional (mask_conditional=False)")
        h = self.conv_in(x)
        hs = [h]
        for module in self.down:
            h = module(h, emb)
            hs.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        for module in self.up:
            if isinstance(module, _Up):
                h = module(h)
            else:
                h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))
