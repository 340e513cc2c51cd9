"""Checks of option values: each returns the value in its type or raises a one-line ValueError
that names the option.  (Integers: ``scorematch._checks.check_positive_int`` / ``check_count``.)"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._checks import check_positive_int

__all__ = [
    "choice",
    "fraction",
    "pixel_levels",
    "positive_float",
    "seed_value",
]


def seed_value(value: Any, name: str = "seed") -> int:
    """``value`` as a seed: an int in [0, 2**63) (what ``torch.manual_seed`` takes), else a
    ValueError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 0 <= value < 2**63
    ):
        raise ValueError(f"{name} must be an integer >= 0 (and below 2**63), got {value!r}")
    return int(value)


def fraction(value: Any, name: str) -> float:
    """``value`` as a float strictly between 0 and 1, else a ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return v


def positive_float(value: Any, name: str) -> float:
    """``value`` as a finite float > 0, else a ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return v


def choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` lower-cased when it is one of ``choices``, else a ValueError listing them."""
    key = str(value).lower()
    if key not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return key


def pixel_levels(value: Any) -> int:
    """The number of pixel values images hold (2 … 65536), for ``--levels``."""
    levels = check_positive_int(value, "levels")
    if not 2 <= levels <= 65536:
        raise ValueError(f"levels must be the number of pixel values, 2 … 65536, got {levels}")
    return levels
