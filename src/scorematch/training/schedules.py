"""Learning-rate and EMA-decay schedules: pure functions of the (1-based) update number; and the
checks of the trainer's integer arguments."""

from __future__ import annotations

import math

__all__ = [
    "DEFAULT_EMA_DECAY",
    "SCHEDULES",
    "check_int",
    "check_lr_schedule",
    "ema_decay_at",
    "ema_decay_from",
    "learning_rate",
    "optional_int",
]

SCHEDULES = ("constant", "cosine")
DEFAULT_EMA_DECAY = 0.999


def check_int(value: object, name: str, low: int) -> int:
    """``value`` if it is an integer ``>= low`` (not a bool), else a one-line ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def optional_int(value: object, name: str, low: int) -> int | None:
    """None, or ``check_int(value, name, low)``."""
    return None if value is None else check_int(value, name, low)


def learning_rate(
    step: int,
    *,
    lr: float,
    warmup_steps: int = 0,
    schedule: str = "constant",
    total_steps: int | None = None,
    min_lr: float = 0.0,
) -> float:
    """Learning rate of optimizer update number ``step`` (1-based).

    Warm-up (Goyal et al. 2017): lr·step/W for step < W = ``warmup_steps``.  Then ``"constant"``
    keeps lr; ``"cosine"`` (Loshchilov & Hutter 2017) decays to ``min_lr`` at T = ``total_steps``:
    min_lr + (lr − min_lr)·½(1 + cos(π·(step − W)/(T − W))), and stays at min_lr after T.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return lr * step / warmup_steps
    if schedule == "constant":
        return lr
    if total_steps is None:
        raise ValueError("schedule='cosine' needs total_steps")
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_lr_schedule(lr: float, schedule: str, min_lr: float) -> None:
    """A ``ValueError`` unless lr > 0 is finite, ``schedule`` is known and 0 ≤ min_lr ≤ lr."""
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not (0.0 <= min_lr <= lr):
        raise ValueError(f"min_lr must be in [0, lr={lr}], got {min_lr!r}")


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """EMA decay used at update number ``step`` (1-based): ``decay``, or with warm-up
    min(decay, (1 + step)/(10 + step)) so early averages do not remember the random init
    (the schedule of TensorFlow's ExponentialMovingAverage, used by Song et al. 2021)."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


def ema_decay_from(ema_decay: float | None = None, ema_half_life: float | None = None) -> float:
    """The EMA decay per step given as itself or as a half-life h in steps: decay = 0.5^(1/h), so
    a weight's share halves every h updates.  Neither: ``DEFAULT_EMA_DECAY``."""
    if ema_decay is not None and ema_half_life is not None:
        raise ValueError("give ema_decay or ema_half_life, not both")
    if ema_half_life is not None:
        if not (math.isfinite(ema_half_life) and ema_half_life > 0):
            raise ValueError(
                f"ema_half_life must be a positive number of steps, got {ema_half_life!r}"
            )
        ema_decay = 0.5 ** (1.0 / ema_half_life)
    elif ema_decay is None:
        ema_decay = DEFAULT_EMA_DECAY
    if not (0.0 <= ema_decay < 1.0):
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
    return float(ema_decay)
