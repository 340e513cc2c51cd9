"""Test fixtures shared by several test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from scorematch.distributions import GaussianMixture


def mixture() -> GaussianMixture:
    """A 2-D, three-component float64 mixture with correlated components and unequal weights."""
    return GaussianMixture(
        means=[[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        covs=[[[0.5, 0.2], [0.2, 0.3]], [[0.2, 0.0], [0.0, 0.6]], [[0.3, -0.1], [-0.1, 0.3]]],
        weights=[0.5, 0.3, 0.2],
        dtype=torch.float64,
    )


def mixture3() -> GaussianMixture:
    """A 3-D, three-component float64 mixture with correlated components (the conditional tests'
    oracle: conditioned on one or two coordinates it is again a mixture)."""
    return GaussianMixture(
        means=[[-2.0, 0.0, 1.0], [2.0, 1.0, -1.0], [0.0, -2.0, 0.0]],
        covs=[
            [[0.5, 0.2, 0.1], [0.2, 0.3, 0.0], [0.1, 0.0, 0.4]],
            [[0.2, 0.0, 0.05], [0.0, 0.6, 0.1], [0.05, 0.1, 0.3]],
            [[0.3, -0.1, 0.0], [-0.1, 0.3, 0.0], [0.0, 0.0, 0.5]],
        ],
        weights=[0.5, 0.3, 0.2],
        dtype=torch.float64,
    )


def rotated(angle: float, s1: float, s2: float) -> torch.Tensor:
    """The 2×2 float64 covariance with variances s1, s2 along axes turned by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return r @ torch.diag(torch.tensor([s1, s2], dtype=torch.float64)) @ r.T


class Reshaped(torch.nn.Module):
    """A flat-vector score model seen as one on (B, 1, 4, 4) images."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, t):
        return self.inner(x.reshape(x.shape[0], -1), t).reshape(x.shape)


def write_png(path: Path, samples: np.ndarray, bit_depth: int, color_type: int) -> None:
    """A PNG written by hand (Pillow cannot write 16-bit colour): ``samples`` (H, W[, C])."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    h, w = samples.shape[:2]
    rows = samples.reshape(h, -1)
    if bit_depth == 16:
        raw = b"".join(b"\0" + r.astype(">u2").tobytes() for r in rows)
    elif bit_depth == 8:
        raw = b"".join(b"\0" + r.astype(np.uint8).tobytes() for r in rows)
    else:  # 1, 2 or 4 bits: packed, most significant first
        per = 8 // bit_depth
        packed = []
        for r in rows:
            padded = np.concatenate([r, np.zeros((-len(r)) % per, dtype=r.dtype)]).reshape(-1, per)
            shifts = bit_depth * np.arange(per - 1, -1, -1)
            packed.append(
                b"\0" + (padded.astype(np.uint16) << shifts).sum(1).astype(np.uint8).tobytes()
            )
        raw = b"".join(packed)
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip
