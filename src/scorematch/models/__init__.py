"""Score and energy networks, and a factory that builds them from a name and a data shape.

Every network is called as ``model(x, t)`` with x of shape ``(B, *event)`` and t a scalar or a
``(B,)`` tensor of noise conditioning (diffusion time or EDM's c_noise — the caller decides), and
``t=None`` for an unconditional score function.  Score networks return a tensor shaped like x,
energy networks one value per sample.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn

from .embedding import GaussianFourierFeatures, TimeEmbedding
from .hollow import HollowMLP
from .mlp import MLPEnergy, MLPScore
from .unet import UNet

MODEL_NAMES: tuple[str, ...] = ("mlp", "unet", "energy-mlp", "hollow")
_CLASSES: dict[str, type[nn.Module]] = {
    "mlp": MLPScore,
    "unet": UNet,
    "energy-mlp": MLPEnergy,
    "hollow": HollowMLP,
}

__all__ = [
    "MODEL_NAMES",
    "GaussianFourierFeatures",
    "HollowMLP",
    "MLPEnergy",
    "MLPScore",
    "TimeEmbedding",
    "UNet",
    "build_model",
    "count_parameters",
    "model_config",
    "model_spec",
]


def _mlp_defaults(dim: int) -> dict[str, Any]:
    if dim <= 4:
        return {"width": 128, "depth": 3}
    if dim <= 32:
        return {"width": 256, "depth": 4}
    return {"width": 512, "depth": 4}


def _hollow_defaults(dim: int) -> dict[str, Any]:
    if dim <= 4:
        return {"width": 128, "features": 32}
    if dim <= 32:
        return {"width": 64, "features": 16}
    return {"width": 32, "features": 8}


def _unet_defaults(shape: tuple[int, ...]) -> dict[str, Any]:
    c, h, w = shape
    size = min(h, w)
    levels = 3 if size <= 16 else 4
    # Use no more levels than the image size allows (e.g. 28×28 halves only twice).
    divisible = 1
    while h % (2 * divisible) == 0 and w % (2 * divisible) == 0 and divisible < 2 ** (levels - 1):
        divisible *= 2
    levels = min(levels, int(math.log2(divisible)) + 1)
    return {
        "in_channels": c,
        "channels": 32 if size <= 16 else 64,
        "channel_mult": (1,) + (2,) * (levels - 1),
        # tiny images (8×8 digits) train on a CPU: one residual block per level is enough
        "num_res_blocks": 1 if size <= 8 else 2,
    }


def model_spec(
    name: str, shape: tuple[int, ...], *, seed: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The resolved, JSON-able arguments of the network ``build_model(name, shape, seed=seed,
    **kwargs)`` builds — its defaults for ``shape`` filled in, ``kwargs`` checked — without
    building it (a run's config records these).

    Names: ``"mlp"`` → :class:`MLPScore` on ``prod(shape)`` features (any shape, flattened);
    ``"unet"`` → :class:`UNet` for ``shape = (C, H, W)``; ``"energy-mlp"`` → :class:`MLPEnergy`;
    ``"hollow"`` → :class:`HollowMLP` (exact divergence in one backward pass; width 128 and 32
    features per coordinate up to 4 features, 64/16 up to 32, 32/8 beyond).
    Defaults depend on the shape (MLP: width 128 × depth 3 up to 4 features, 256 × 4 up to 32,
    512 × 4 beyond; U-Net: images ≤ 16 px get 32 base channels and 3 levels (one residual block
    per level at ≤ 8 px), larger ones 64 channels and 4 levels, fewer levels when H or W do not
    halve often enough); ``kwargs`` override them.
    """
    key = str(name).lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty event shape of positive sizes, got {shape}")
    if key == "unet":
        if len(shape) != 3:
            raise ValueError(f"model 'unet' needs an image shape (C, H, W), got {shape}")
        defaults = _unet_defaults(shape)
        if "in_channels" in kwargs and kwargs["in_channels"] != shape[0]:
            raise ValueError(
                f"in_channels={kwargs['in_channels']} does not match the data's {shape[0]} channels"
            )
    else:
        sized = _hollow_defaults if key == "hollow" else _mlp_defaults
        defaults = {"dim": math.prod(shape), **sized(math.prod(shape))}
        if "dim" in kwargs and kwargs["dim"] != math.prod(shape):
            raise ValueError(f"dim={kwargs['dim']} does not match shape {shape}")
    allowed = set(inspect.signature(_CLASSES[key]).parameters)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {key!r}; "
            f"valid: {', '.join(sorted(allowed))}"
        )
    resolved = {**defaults, **kwargs}
    return {
        "name": key,
        "shape": list(shape),
        "seed": seed,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()},
    }


def build_model(
    name: str, shape: tuple[int, ...], *, seed: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build a network for samples of event shape ``shape`` (without the batch dimension), with
    the arguments :func:`model_spec` resolves (names and defaults are listed there).

    With ``seed`` the weights are initialised from ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng``, so the global random state is left untouched and the same call
    returns the same weights.  The Fourier frequencies always come from their own seeded
    generator.  The resolved arguments are stored on the module (see :func:`model_config`), so
    ``build_model(**model_config(m))`` rebuilds the same architecture.
    """
    spec = model_spec(name, shape, seed=seed, **kwargs)
    cls = _CLASSES[spec["name"]]
    resolved = {k: v for k, v in spec.items() if k not in ("name", "shape", "seed")}
    resolved = {k: tuple(v) if isinstance(v, list) else v for k, v in resolved.items()}
    if seed is None:
        model = cls(**resolved)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = cls(**resolved)
    model.build_spec = spec  # type: ignore[assignment]
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """Return the JSON-serialisable arguments that rebuild ``model`` with :func:`build_model`.

    ``build_model(**model_config(m))`` gives the same architecture (and, when a seed was used, the
    same initial weights).  Only models made by :func:`build_model` carry this record.
    """
    spec = getattr(model, "build_spec", None)
    if spec is None:
        raise ValueError(f"{type(model).__name__} was not created by build_model; no config stored")
    return dict(spec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
