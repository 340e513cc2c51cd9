"""The training loop: ``Trainer`` (fit, one optimizer step, the EMA update), alone or under ``torchrun``.

``Trainer`` runs AdamW (Loshchilov & Hutter 2019) with a linear learning-rate warm-up (Goyal et al.
2017) and optional cosine decay (Loshchilov & Hutter 2017, see ``schedules``), global-norm gradient
clipping (Pascanu et al. 2013), and an exponential moving average of the weights (Polyak & Juditsky
1992), which is what score-based samplers use (Song & Ermon 2020, "Improved techniques").  It writes
a ``metrics.csv`` (``metrics_log``), periodic checkpoints (safetensors + JSON, ``checkpoint``) and
resumes from them exactly: on CPU a run interrupted at step k and resumed ends with bit-identical
weights.

Everything random in a step — the data order and the objective's noise — comes from state the
trainer owns and checkpoints: the data order is a pure function of (seed, step, rank)
(``data_order``), and the loss function receives the trainer's ``torch.Generator``.  How a step
computes its gradients — micro-batches, mixed precision, ``torch.compile``, and under ``torchrun``
DDP or an explicit all-reduce before clipping — is ``step.StepEngine``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import latest_checkpoint
from .data_order import batch_source
from .distributed import broadcast_module, init_distributed, rank_seed
from .metrics_log import MetricsLog, add_to_window, new_window, prepare_run_dir, window_row
from .recovery import no_checkpoint_note
from .results import TrainResult
from .run_lock import hold_run_lock
from .schedules import (
    check_int,
    check_lr_schedule,
    ema_decay_at,
    ema_decay_from,
    learning_rate,
    optional_int,
)
from .step import StepEngine
from .stops import SaveSchedule, StopSignals, TrainingDiverged, TrainingInterrupted
from .train_state import choose_resume_checkpoint as choose_checkpoint
from .trainer_checkpoints import TrainerCheckpoints
from .validation import ValidateFn, Validation

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted"]

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]
SampleFn = Callable[[nn.Module, int, "Path | None"], object]


class Trainer(TrainerCheckpoints):
    """Train ``model`` by minimising ``loss_fn(model, batch, generator)`` over ``data``.

    Args:
        model: the network; moved to ``device`` (default: where its parameters are).
        loss_fn: returns the scalar mean loss of a batch; it must draw all its noise from the
            ``torch.Generator`` it is given (the trainer's, checkpointed → exact resume).
        data: a tensor ``(N, *event)`` — global batches of ``batch_size`` rows are read from a
            random permutation per epoch, a pure function of (seed, step, rank), see
            ``data_order`` — or any iterable of batches (a DataLoader; exact resume of its order
            is not possible: it restarts; under torchrun it must shard itself, e.g. with a
            DistributedSampler).
        out_dir: run directory for ``metrics.csv``, ``config.yaml`` and ``checkpoints/``; None
            keeps everything in memory.
        batch_size: global batch size (split evenly across ranks under torchrun).
        lr, weight_decay, betas: AdamW hyperparameters.
        warmup_steps, schedule, min_lr, total_steps: see ``learning_rate``; cosine decays to
            ``total_steps`` (default: the ``steps`` given to ``fit``).
        grad_clip: maximal global gradient norm (None: no clipping; the norm is still logged).
        ema_decay / ema_half_life: EMA decay per step, or its half-life in steps
            (decay = 0.5**(1/half_life)); default decay 0.999.  ``ema_warmup`` see ``ema_decay_at``.
        seed: seeds the data order, the loss generator and, at the start of a fresh run, the
            global torch RNG (for layers such as dropout); all three are checkpointed.
        checkpoint_every: save every this many steps (and always at the end of ``fit``);
            None: only at the end.  ``keep_checkpoints``: how many to keep (None: all).
        checkpoint_seconds: also save once this much wall time passed since the last save
            (default 10 minutes; None: never; single process only).  SIGTERM/Ctrl-C save too.
        log_every: write a ``metrics.csv`` row (means over the window) every this many steps.
        sample_every, sample_fn: call ``sample_fn(ema_model, step, out_dir)`` on rank 0 every
            ``sample_every`` steps, with the global RNG forked so sampling leaves training unchanged.
        validate_fn, validate_every, patience: model selection — call
            ``validate_fn(ema_model, step)`` (lower is better) every ``validate_every`` steps; the
            best step's checkpoint is saved and never rotated away, and with
            ``patience`` training stops after that many validations without improvement
            (``training.validation.Validation``; its state is checkpointed).
        progress: tqdm bar (loss, steps/s) on rank 0.
        config: a JSON-able dict describing the run; stored in every checkpoint (with its hash)
            and as ``out_dir/config.yaml``.
        device: where to train.
        precision, compile, grad_accum, first_order: see ``step.StepEngine`` — ``"fp32"``,
            ``"bf16"`` or ``"fp16"`` autocast; ``torch.compile`` of the network (True or a backend
            name; first-order losses only); micro-batches per step (the update of one batch that
            many times larger); ``first_order=True`` for a loss that back-propagates once through
            the model (DSM, NCSN, EDM): DDP under torchrun.  Default False suits any loss.

    Attributes ``model``, ``ema_model`` (sample from this), ``optimizer``, ``generator``, ``step``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Tensor | Iterable,
        *,
        out_dir: str | os.PathLike | None = None,
        batch_size: int = 256,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 100,
        schedule: str = "constant",
        min_lr: float = 0.0,
        total_steps: int | None = None,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = None,
        ema_half_life: float | None = None,
        ema_warmup: bool = True,
        seed: int = 0,
        checkpoint_every: int | None = 1000,
        keep_checkpoints: int | None = 3,
        checkpoint_seconds: float | None = 600.0,
        log_every: int = 25,
        sample_every: int | None = None,
        sample_fn: SampleFn | None = None,
        validate_fn: ValidateFn | None = None,
        validate_every: int | None = None,
        patience: int | None = None,
        progress: bool = True,
        config: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        precision: str = "fp32",
        compile: bool | str = False,
        grad_accum: int = 1,
        first_order: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.batch_size = check_int(batch_size, "batch_size", 1)
        check_lr_schedule(lr, schedule, min_lr)
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", 0)
        self.total_steps = optional_int(total_steps, "total_steps", 1)
        if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
        self.ema_decay = ema_decay_from(ema_decay, ema_half_life)
        self.seed = check_int(seed, "seed", 0)
        self.checkpoint_every = optional_int(checkpoint_every, "checkpoint_every", 1)
        self.keep_checkpoints = optional_int(keep_checkpoints, "keep_checkpoints", 1)
        self.checkpoint_seconds = SaveSchedule.check_seconds(checkpoint_seconds)
        self.log_every = check_int(log_every, "log_every", 1)
        self.sample_every = optional_int(sample_every, "sample_every", 1)
        if self.sample_every is not None and not callable(sample_fn):
            raise ValueError("sample_every needs a callable sample_fn(ema_model, step, out_dir)")
        if (validate_fn is None) != (validate_every is None) or (patience and not validate_fn):
            raise ValueError("validate_fn and validate_every go together (patience needs both)")
        self.validation = (
            None if validate_fn is None else Validation(validate_fn, validate_every, patience)
        )
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"config must be a dict or None, got {type(config).__name__}")

        self.loss_fn = loss_fn
        self.lr, self.weight_decay, self.betas = float(lr), float(weight_decay), tuple(betas)
        self.schedule, self.min_lr = schedule, float(min_lr)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.ema_warmup = bool(ema_warmup)
        self.sample_fn = sample_fn
        self.progress = bool(progress)
        # JSON round trip: tuples → lists, paths → str, so the stored config is what reloads.
        self.config = None if config is None else json.loads(json.dumps(config, default=str))
        self.out_dir = None if out_dir is None else Path(out_dir)

        self.device, self.world_size, self.rank = init_distributed(model, device)
        self.model = model.to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("model has no trainable parameters")
        broadcast_module(self.model, self.world_size)  # every rank starts from rank 0's weights
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.AdamW(
            self._params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(rank_seed(self.seed, "noise", self.rank))
        self.engine = StepEngine(self.model, self._params, self.optimizer, device=self.device,
                                 world_size=self.world_size, precision=precision, compile=compile,
                                 grad_accum=grad_accum, first_order=first_order)  # fmt: skip

        self._batches = batch_source(data, self.seed, self.batch_size, self.world_size)

        self.step = 0
        self._restored = False
        self._elapsed = 0.0
        self._fit_target: int | None = None
        self._window = new_window(self._elapsed)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints"

    @property
    def metrics_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "metrics.csv"

    @property
    def settings(self) -> dict[str, Any]:
        """The trainer's hyperparameters (stored in checkpoints, compared on resume)."""
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
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
            "seed": self.seed,
            "world_size": self.world_size,
            "precision": self.engine.precision.name,
            "grad_accum": self.engine.grad_accum,
        }

    def lr_at(self, step: int) -> float:
        """Learning rate of update number ``step`` (see ``learning_rate``)."""
        return learning_rate(
            step,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            schedule=self.schedule,
            total_steps=self.total_steps or self._fit_target,
            min_lr=self.min_lr,
        )

    # ------------------------------------------------------------------ training
    def fit(self, steps: int, *, resume: bool = False) -> TrainResult:
        """Train until the global step equals ``steps`` (continuing from the current step).

        ``resume=True`` first loads the newest complete checkpoint in ``out_dir`` if there is one.
        Starting a fresh run (step 0, ``resume=False``) in a directory that already holds
        checkpoints is refused.  The run folder is locked meanwhile (``run_lock``: another
        writer is refused).  Raises ``TrainingDiverged`` on a NaN/inf loss or gradient, and
        ``TrainingInterrupted`` after SIGTERM/Ctrl-C, once the state at that step is saved.
        """
        steps = check_int(steps, "steps", 1)
        with hold_run_lock(self.out_dir if self.is_main else None, config=self.config):
            return self._fit(steps, resume)

    def _fit(self, steps: int, resume: bool) -> TrainResult:
        if self.step == 0 and self.out_dir is not None:
            latest = latest_checkpoint(self.checkpoint_dir)
            if latest is not None and not resume:
                raise ValueError(
                    f"{str(self.out_dir)!r} already holds checkpoints (newest {latest.name}); "
                    "pass resume=True to continue that run or choose another out_dir"
                )
            # The newest good one (damaged ones are moved aside, and that is said).
            ckpt = latest and choose_checkpoint(self.checkpoint_dir, quarantine=self.is_main)
            if ckpt is not None:
                self.resume(ckpt)
            elif resume and self.is_main:
                logger.warning("%s", no_checkpoint_note(self.checkpoint_dir))
        elif resume and self.out_dir is None:
            raise ValueError("resume=True needs an out_dir holding checkpoints")
        if steps < self.step:
            raise ValueError(f"steps={steps} is below the current step {self.step}")
        self._fit_target = steps
        if self.step == 0 and not self._restored:  # a fresh run
            torch.manual_seed(rank_seed(self.seed, "global", self.rank))
        if self.out_dir is not None and self.is_main:
            prepare_run_dir(self.out_dir, self.config, self.step, self.log_every)

        start_elapsed, t0 = self._elapsed, time.perf_counter()
        alone = (
            self.world_size == 1
        )  # no wall-time saves or signals under DDP: ranks could disagree
        saves = SaveSchedule(self.checkpoint_every, alone and self.checkpoint_seconds, steps)
        with (
            MetricsLog(
                self.metrics_path,
                total=steps,
                initial=self.step,
                progress=self.progress,
                report=self.is_main,
            ) as log,
            StopSignals(self.out_dir is not None and alone) as stop,
        ):
            while self.step < steps:
                s = self.step + 1
                loss, grad_norm, lr = self._train_step(s)
                self._elapsed = start_elapsed + (time.perf_counter() - t0)
                add_to_window(self._window, loss, grad_norm)
                log.tick()
                on_grid = s % self.log_every == 0
                if on_grid or s == steps:
                    # An end-of-fit row off the log grid does not reset the window; the next fit
                    # (or a resume) drops it, so the CSV matches an uninterrupted run's.
                    log.write(window_row(self._window, s, lr, self._elapsed))
                    if on_grid:
                        self._window = new_window(self._elapsed)
                save = self.out_dir is not None and saves.due(s)
                early = False
                if self.validation and self.validation.due(s):
                    improved, early = self._validate(s)  # before saving: the checkpoint holds it
                    save = self.out_dir is not None and (save or improved or early)
                if save:
                    self.save_checkpoint()
                    saves.saved()
                if self.sample_every and s % self.sample_every == 0:
                    self._call_sample_fn(s)
                if early:
                    break
                if stop.signum is not None and s < steps:  # between two steps: a consistent state
                    raise stop.interrupted(s, self.checkpoint_dir, self.save_checkpoint)
        last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        loss = log.history[-1]["loss"] if log.history else float("nan")
        best = None if self.validation is None else self.validation.best_step
        stopped = self.step < steps  # only early stopping ends the loop before ``steps``
        return TrainResult(self.step, loss, log.history, last, self._elapsed, best, stopped)

    def _validate(self, s: int) -> tuple[bool, bool]:
        """Validate the EMA model at step s: (new best?, stop now?)."""
        v = self.validation
        improved = v.record(s, v.fn(self.ema_model, s))
        if self.is_main:
            logger.info("step %d: validation %.6g, best %.6g at step %s%s", s, v.history[-1][1],
                        v.best_value, v.best_step, " (early stop)" if v.should_stop else "")  # fmt: skip
        return improved, v.should_stop

    def _train_step(self, s: int) -> tuple[float, float, float]:
        batch = self._batches.batch(s, self.rank).to(self.device)
        lr = self.lr_at(s)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_value = self.engine.gradients(self.loss_fn, batch, self.generator)
        if not math.isfinite(loss_value):  # nothing applied: the step raises before the update
            raise self._diverged(s, "loss")
        grad_norm, ok = self.engine.clip_and_step(self.grad_clip)
        if not ok:
            raise self._diverged(s, "gradient norm")
        self._update_ema(s)
        self.step = s
        return loss_value, grad_norm, lr

    def _diverged(self, s: int, what: str) -> TrainingDiverged:
        # Not logged as well: the exception's message is the one line a user sees.
        last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        return TrainingDiverged(s, what, last)

    @torch.no_grad()
    def _update_ema(self, s: int) -> None:
        # ema ← decay·ema + (1 − decay)·θ, written as a lerp towards θ.
        weight = 1.0 - ema_decay_at(s, self.ema_decay, self.ema_warmup)
        for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), weight)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------------ files
    def _call_sample_fn(self, s: int) -> None:
        if not self.is_main:
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.sample_fn(self.ema_model, s, self.out_dir)
