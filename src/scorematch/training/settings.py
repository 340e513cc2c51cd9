"""What a training run is asked to do: ``TrainingSettings``, one frozen group of every
hyperparameter a ``Trainer`` takes, and the schedules they define — the learning rate and the EMA
decay as pure functions of the (1-based) update number.

A ``Trainer`` receives the settings whole (``Trainer(model, loss, data, settings)``) or builds
them from its keywords (``Trainer(model, loss, data, lr=1e-3)``); ``dataclasses.replace`` gives a
changed copy.  Each field is checked once, here, with a one-line ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .._checks import check_count, check_positive_int
from .precision import PRECISIONS

__all__ = [
    "DEFAULT_EMA_DECAY",
    "SCHEDULES",
    "TrainingSettings",
    "ema_decay_at",
    "ema_decay_from",
    "learning_rate",
]

SCHEDULES = ("constant", "cosine")
DEFAULT_EMA_DECAY = 0.999


@dataclass(frozen=True)
class TrainingSettings:
    """The hyperparameters of a ``Trainer``.

    Args:
        batch_size: global batch size (split evenly across ranks under torchrun).
        lr, weight_decay, betas: AdamW hyperparameters.
        warmup_steps, schedule, min_lr, total_steps: see ``learning_rate``; cosine decays to
            ``total_steps`` (default: the ``steps`` given to ``fit``).
        grad_clip: maximal global gradient norm (None: no clipping; the norm is still logged).
        ema_decay / ema_half_life: EMA decay per step, or its half-life in steps
            (decay = 0.5**(1/half_life)); default decay 0.999 (``resolved_ema_decay``).
            ``ema_warmup`` see ``ema_decay_at``.
        seed: seeds the data order, the loss generator and, at the start of a fresh run, the
            global torch RNG (for layers such as dropout); all three are checkpointed.
        checkpoint_every: save every this many steps (and always at the end of ``fit``);
            None: only at the end.  ``keep_checkpoints``: how many to keep (None: all).
        checkpoint_seconds: also save once this much wall time passed since the last save
            (default 10 minutes; None: never; single process only).  SIGTERM/Ctrl-C save too.
        log_every: write a ``metrics.csv`` row (means over the window) every this many steps.
        sample_every: call the trainer's ``sample_fn`` every this many steps.
        validate_every, patience: validate every this many steps; stop after ``patience``
            validations without improvement (``training.validation.Validation``).
        progress: tqdm bar (loss, steps/s) on rank 0.
        precision, compile, grad_accum, first_order: see ``step.StepEngine`` — ``"fp32"``,
            ``"bf16"`` or ``"fp16"`` autocast; ``torch.compile`` of the network (True or a backend
            name; first-order losses only); micro-batches per step (the update of one batch that
            many times larger); ``first_order=True`` for a loss that back-propagates once through
            the model (DSM, NCSN, EDM): DDP under torchrun.  Default False suits any loss.
    """

    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: str = "constant"
    min_lr: float = 0.0
    total_steps: int | None = None
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    ema_half_life: float | None = None
    ema_warmup: bool = True
    seed: int = 0
    checkpoint_every: int | None = 1000
    keep_checkpoints: int | None = 3
    checkpoint_seconds: float | None = 600.0
    log_every: int = 25
    sample_every: int | None = None
    validate_every: int | None = None
    patience: int | None = None
    progress: bool = True
    precision: str = "fp32"
    compile: bool | str = False
    grad_accum: int = 1
    first_order: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("batch_size", check_positive_int(self.batch_size, "batch_size"))
        check_lr_schedule(self.lr, self.schedule, self.min_lr)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        put("warmup_steps", check_count(self.warmup_steps, "warmup_steps"))
        put("total_steps", _optional(self.total_steps, "total_steps"))
        grad_clip = self.grad_clip
        if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
        ema_decay_from(self.ema_decay, self.ema_half_life)  # checks both
        put("seed", check_count(self.seed, "seed"))
        put("checkpoint_every", _optional(self.checkpoint_every, "checkpoint_every"))
        put("keep_checkpoints", _optional(self.keep_checkpoints, "keep_checkpoints"))
        seconds = self.checkpoint_seconds
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"checkpoint_seconds must be > 0 or None, got {seconds!r}")
        put("checkpoint_seconds", None if seconds is None else float(seconds))
        put("log_every", check_positive_int(self.log_every, "log_every"))
        put("sample_every", _optional(self.sample_every, "sample_every"))
        put("validate_every", _optional(self.validate_every, "validate_every"))
        put("patience", _optional(self.patience, "patience"))
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not isinstance(self.compile, (bool, str)):
            raise ValueError(f"compile must be a bool or a backend name, got {self.compile!r}")
        if self.compile and not self.first_order:
            raise ValueError(
                "compile needs a first-order loss (first_order=True: dsm, esm, ncsn, diffusion, edm); "
                "torch.compile cannot differentiate a model twice (ism, ssm, energy models)"
            )
        put("grad_accum", check_positive_int(self.grad_accum, "grad_accum"))
        put("lr", float(self.lr))
        put("weight_decay", float(self.weight_decay))
        put("betas", tuple(self.betas))
        put("min_lr", float(self.min_lr))
        put("grad_clip", None if grad_clip is None else float(grad_clip))
        put("ema_warmup", bool(self.ema_warmup))
        put("progress", bool(self.progress))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names (the keywords a ``Trainer`` accepts for them)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def lr_at(self, step: int, fit_target: int | None = None) -> float:
        """Learning rate of update number ``step`` (``learning_rate``); a cosine schedule
        without ``total_steps`` decays to ``fit_target``, the step ``fit`` trains to."""
        return learning_rate(
            step,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            schedule=self.schedule,
            total_steps=self.total_steps or fit_target,
            min_lr=self.min_lr,
        )

    @property
    def resolved_ema_decay(self) -> float:
        """The EMA decay per step: ``ema_decay``, or that of ``ema_half_life``, or the default."""
        return ema_decay_from(self.ema_decay, self.ema_half_life)

    def ema_decay_at(self, step: int) -> float:
        """EMA decay used at update number ``step`` (``ema_decay_at``)."""
        return ema_decay_at(step, self.resolved_ema_decay, self.ema_warmup)

    def record(self, world_size: int) -> dict[str, Any]:
        """What a checkpoint stores of the settings (its ``"trainer"`` field), compared with the
        resuming trainer's on resume."""
        return {
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "betas": list(self.betas),
            "warmup_steps": self.warmup_steps,
            "schedule": self.schedule,
            "min_lr": self.min_lr,
            "total_steps": self.total_steps,
            "grad_clip": self.grad_clip,
            "ema_decay": self.resolved_ema_decay,
            "ema_warmup": self.ema_warmup,
            "seed": self.seed,
            "world_size": world_size,
            "precision": self.precision,
            "grad_accum": self.grad_accum,
        }


def _optional(value: object, name: str) -> int | None:
    """None, or ``check_positive_int(value, name)``."""
    return None if value is None else check_positive_int(value, name)


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
