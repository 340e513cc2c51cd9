"""The training loop: ``Trainer`` (fit, one optimizer step, the EMA update, save and resume),
alone or under ``torchrun``.

``Trainer`` runs AdamW (Loshchilov & Hutter 2019) with a linear learning-rate warm-up (Goyal et al.
2017) and optional cosine decay (Loshchilov & Hutter 2017, see ``settings``), global-norm gradient
clipping (Pascanu et al. 2013), and an exponential moving average of the weights (Polyak & Juditsky
1992), which is what score-based samplers use (Song & Ermon 2020, "Improved techniques").  It writes
a ``metrics.csv`` (``metrics_log``), periodic checkpoints (safetensors + JSON, ``checkpoint``) and
resumes from them exactly: on CPU a run interrupted at step k and resumed ends with bit-identical
weights.  Everything a checkpoint holds is one object, ``train_state.TrainState``.

Everything random in a step — the data order and the objective's noise — comes from state the
trainer owns and checkpoints: the data order is a pure function of (seed, step, rank)
(``data_order``), and the loss function receives the trainer's ``torch.Generator``.  How a step
computes its gradients — micro-batches, mixed precision, ``torch.compile``, and under ``torchrun``
DDP or an explicit all-reduce before clipping — is ``step.StepEngine``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_positive_int
from ..run_dir import RunDir
from .checkpoint import (
    Checkpoint,
    check_resumable,
    checkpoint_paths,
    choose_checkpoint,
    config_changes,
    config_hash,
    latest_checkpoint,
    no_checkpoint_note,
    read_checkpoint,
    write_checkpoint,
)
from .data_order import batch_source
from .distributed import barrier, broadcast_module, init_distributed
from .metrics_log import MetricsLog, MetricsWindow, trim_metrics_file
from .settings import TrainingSettings
from .step import StepEngine
from .stops import SaveSchedule, StopSignals, TrainingDiverged, TrainingInterrupted
from .train_state import RNGStreams, TrainState
from .validation import ValidateFn, Validation

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted"]

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]
SampleFn = Callable[[nn.Module, int, "Path | None"], object]


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns: the global step reached, the last logged mean loss, the rows
    logged during this call (``METRIC_COLUMNS``), the newest checkpoint, the run's total training
    time in seconds (summed over resumed segments), and with validation the best step and whether
    early stopping ended the run."""

    step: int
    loss: float
    history: list[dict[str, float]] = field(repr=False)
    checkpoint: Path | None
    seconds: float
    best_step: int | None = None  # with validation: the step of the lowest validation figure
    stopped_early: bool = False  # with patience: the run stopped before ``steps``


class Trainer:
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
        settings: the hyperparameters, a ``TrainingSettings``; any of its fields may also be given
            as a keyword (``Trainer(model, loss, x, lr=1e-3, ema_half_life=200)``), which
            overrides ``settings``.  See ``TrainingSettings`` for each one.
        out_dir: run directory for ``metrics.csv``, ``config.yaml`` and ``checkpoints/``
            (``scorematch.run_dir.RunDir``); None keeps everything in memory.
        config: a JSON-able dict describing the run; stored in every checkpoint (with its hash)
            and as ``out_dir/config.yaml``.
        device: where to train.
        sample_fn: with ``sample_every``, called as ``sample_fn(ema_model, step, out_dir)`` on
            rank 0 every ``sample_every`` steps, with the global RNG forked so sampling leaves
            training unchanged.
        validate_fn: with ``validate_every`` (and optionally ``patience``): model selection —
            ``validate_fn(ema_model, step)`` (lower is better) every ``validate_every`` steps; the
            best step's checkpoint is saved and never rotated away, and with ``patience``
            training stops after that many validations without improvement
            (``training.validation.Validation``; its state is checkpointed).

    Attributes ``model``, ``ema_model`` (sample from this), ``optimizer``, ``generator``, ``step``,
    ``settings`` and ``state`` (the ``TrainState`` a checkpoint holds).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Tensor | Iterable,
        settings: TrainingSettings | None = None,
        *,
        out_dir: str | os.PathLike | None = None,
        config: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        sample_fn: SampleFn | None = None,
        validate_fn: ValidateFn | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        unknown = sorted(set(options) - set(TrainingSettings.names()))
        if unknown:
            raise TypeError(
                f"Trainer got unknown option(s) {', '.join(unknown)}; valid: "
                f"{', '.join(TrainingSettings.names())}"
            )
        settings = settings if settings is not None else TrainingSettings()
        self.settings = dataclasses.replace(settings, **options) if options else settings
        s = self.settings
        if s.sample_every is not None and not callable(sample_fn):
            raise ValueError("sample_every needs a callable sample_fn(ema_model, step, out_dir)")
        if (validate_fn is None) != (s.validate_every is None) or (s.patience and not validate_fn):
            raise ValueError("validate_fn and validate_every go together (patience needs both)")
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"config must be a dict or None, got {type(config).__name__}")

        self.loss_fn = loss_fn
        self.sample_fn = sample_fn
        # JSON round trip: tuples → lists, paths → str, so the stored config is what reloads.
        self.config = None if config is None else json.loads(json.dumps(config, default=str))
        self.run_dir = None if out_dir is None else RunDir(out_dir)

        self.device, self.world_size, self.rank = init_distributed(model, device)
        model = model.to(self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters")
        broadcast_module(model, self.world_size)  # every rank starts from rank 0's weights
        optimizer = torch.optim.AdamW(params, lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)
        engine = StepEngine(
            model,
            params,
            optimizer,
            device=self.device,
            world_size=self.world_size,
            precision=s.precision,
            compile=s.compile,
            grad_accum=s.grad_accum,
            first_order=s.first_order,
        )
        validation = (
            None if validate_fn is None else Validation(validate_fn, s.validate_every, s.patience)
        )
        self.state = TrainState(
            model,
            optimizer,
            RNGStreams(s.seed, self.device, self.world_size, self.rank),
            batch_source(data, s.seed, s.batch_size, self.world_size),
            engine,
            validation,
        )
        self._restored = False  # a checkpoint was loaded
        self._resume_done = False  # resume() ran (found a checkpoint or said there was none)
        self._fit_target: int | None = None

    # ------------------------------------------------------------------ the parts
    @property
    def model(self) -> nn.Module:
        return self.state.model

    @property
    def ema_model(self) -> nn.Module:
        """The EMA weights' model: the one to sample from."""
        return self.state.ema.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.state.optimizer

    @property
    def generator(self) -> torch.Generator:
        """The generator the loss draws its noise from."""
        return self.state.rng.generator

    @property
    def engine(self) -> StepEngine:
        return self.state.engine

    @property
    def validation(self) -> Validation | None:
        return self.state.validation

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def ema_decay(self) -> float:
        """The EMA decay per step (after its warm-up)."""
        return self.settings.resolved_ema_decay

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def out_dir(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.path

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir.checkpoints

    def lr_at(self, step: int) -> float:
        """Learning rate of update number ``step`` (see ``settings.learning_rate``)."""
        return self.settings.lr_at(step, self._fit_target)

    # ------------------------------------------------------------------ training
    def fit(self, steps: int, *, resume: bool = False) -> TrainResult:
        """Train until the global step equals ``steps`` (continuing from the current step).

        ``resume=True`` first loads the newest good checkpoint in ``out_dir`` if there is one
        (``resume``; nothing more when it already ran).  Starting a fresh run (step 0,
        ``resume=False``) in a directory that already holds checkpoints is refused.  The run
        folder is locked meanwhile (``RunDir.lock``: another writer is refused).  Raises
        ``TrainingDiverged`` on a NaN/inf loss or gradient, and ``TrainingInterrupted`` after
        SIGTERM/Ctrl-C, once the state at that step is saved.
        """
        steps = check_positive_int(steps, "steps")
        if resume and self.run_dir is None:
            raise ValueError("resume=True needs an out_dir holding checkpoints")
        writer = self.run_dir if self.is_main else None
        with writer.lock(config=self.config) if writer is not None else contextlib.nullcontext():
            if resume and not self._resume_done and self.step == 0:
                self.resume(missing_ok=True)
            self._check_fresh_run(resume)
            if steps < self.step:
                raise ValueError(f"steps={steps} is below the current step {self.step}")
            self._fit_target = steps
            if self.step == 0 and not self._restored:  # a fresh run
                self.state.rng.seed_global()
            if self.run_dir is not None and self.is_main:
                self._prepare_files()
            return self._loop(steps)

    def _check_fresh_run(self, resume: bool) -> None:
        """Refuse to start a fresh run over another run's checkpoints."""
        if self.step or self.run_dir is None or resume or self._resume_done:
            return
        latest = latest_checkpoint(self.checkpoint_dir)
        if latest is not None:
            raise ValueError(
                f"{str(self.out_dir)!r} already holds a run (newest checkpoint {latest.name}); "
                "resume it (--resume, resume=True) or choose another folder"
            )

    def _prepare_files(self) -> None:
        """Before the loop (rank 0): temporary files a killed run left removed, ``config.yaml``
        written, ``metrics.csv`` trimmed to the rows up to the current step."""
        run_dir = self.run_dir
        run_dir.path.mkdir(parents=True, exist_ok=True)
        run_dir.remove_temp_files()
        if self.config is not None:
            run_dir.write_config(self.config)
        trim_metrics_file(run_dir.metrics_path, self.step, self.settings.log_every)

    def _loop(self, steps: int) -> TrainResult:
        s, state = self.settings, self.state
        start_elapsed, t0 = state.elapsed, time.perf_counter()
        # No wall-time saves or signals under DDP: the ranks could disagree on them.
        alone = self.world_size == 1
        saves = SaveSchedule(s.checkpoint_every, alone and s.checkpoint_seconds, steps)
        metrics = None if self.run_dir is None else self.run_dir.metrics_path
        with (
            MetricsLog(
                metrics, total=steps, initial=state.step, progress=s.progress, report=self.is_main
            ) as log,
            StopSignals(self.run_dir is not None and alone) as stop,
        ):
            while state.step < steps:
                step = state.step + 1
                loss, grad_norm, lr = self._train_step(step)
                state.elapsed = start_elapsed + (time.perf_counter() - t0)
                state.window.add(loss, grad_norm)
                log.tick()
                if self._log_and_save(step, steps, lr, log, saves):
                    break
                if stop.signum is not None and step < steps:  # between two steps: consistent
                    raise stop.interrupted(step, self.checkpoint_dir, self.save_checkpoint)
        last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        loss = log.history[-1]["loss"] if log.history else float("nan")
        best = None if self.validation is None else self.validation.best_step
        stopped = state.step < steps  # only early stopping ends the loop before ``steps``
        return TrainResult(state.step, loss, log.history, last, state.elapsed, best, stopped)

    def _log_and_save(self, step: int, steps: int, lr: float, log: MetricsLog, saves) -> bool:
        """After step ``step``: the metrics row, validation, the checkpoint and the sample plot
        that are due; True when early stopping ends the fit here."""
        state = self.state
        on_grid = step % self.settings.log_every == 0
        if on_grid or step == steps:
            # An end-of-fit row off the log grid does not reset the window; the next fit (or a
            # resume) drops it, so the CSV matches an uninterrupted run's.
            log.write(state.window.row(step, lr, state.elapsed))
            if on_grid:
                state.window = MetricsWindow(state.elapsed)
        save = self.run_dir is not None and saves.due(step)
        early = False
        if self.validation is not None and self.validation.due(step):
            improved, early = self._validate(step)  # before saving: the checkpoint holds it
            save = self.run_dir is not None and (save or improved or early)
        if save:
            self.save_checkpoint()
            saves.saved()
        every = self.settings.sample_every
        if every and step % every == 0:
            self._call_sample_fn(step)
        return early

    def _validate(self, step: int) -> tuple[bool, bool]:
        """Validate the EMA model at ``step``: (new best?, stop now?)."""
        v = self.validation
        improved = v.record(step, v.fn(self.ema_model, step))
        if self.is_main:
            logger.info(
                "step %d: validation %.6g, best %.6g at step %s%s",
                step,
                v.history[-1][1],
                v.best_value,
                v.best_step,
                " (early stop)" if v.should_stop else "",
            )
        return improved, v.should_stop

    def _train_step(self, step: int) -> tuple[float, float, float]:
        state = self.state
        batch = state.data.batch(step, self.rank).to(self.device)
        lr = self.lr_at(step)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        state.model.train()
        state.optimizer.zero_grad(set_to_none=True)
        loss_value = state.engine.gradients(self.loss_fn, batch, self.generator)
        if not math.isfinite(loss_value):  # nothing applied: the step raises before the update
            raise self._diverged(step, "loss")
        grad_norm, ok = state.engine.clip_and_step(self.settings.grad_clip)
        if not ok:
            raise self._diverged(step, "gradient norm")
        state.ema.update(state.model, self.settings.ema_decay_at(step))
        state.step = step
        return loss_value, grad_norm, lr

    def _diverged(self, step: int, what: str) -> TrainingDiverged:
        # Not logged as well: the exception's message is the one line a user sees.
        last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        return TrainingDiverged(step, what, last)

    def _call_sample_fn(self, step: int) -> None:
        if not self.is_main:
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.sample_fn(self.ema_model, step, self.out_dir)

    # ------------------------------------------------------------------ save and resume
    def save_checkpoint(self) -> Path:
        """Save the train state as ``out_dir/checkpoints/step_{step:08d}.safetensors`` + ``.json``
        (rank 0 writes; a collective call under torchrun) and delete the oldest beyond
        ``keep_checkpoints`` (never the best step on validation).  Returns the tensor file."""
        if self.run_dir is None:
            raise ValueError("save_checkpoint needs an out_dir")
        state = self.state.state_dict()  # every rank: the RNG states are gathered
        path = checkpoint_paths(self.checkpoint_dir, self.step)[0]
        if self.is_main:
            best = None if self.validation is None else self.validation.best_step
            write_checkpoint(
                self.checkpoint_dir,
                state,
                record=self._record(),
                keep=self.settings.keep_checkpoints,
                protect=() if best is None else (best,),
            )
        barrier(self.world_size)
        return path

    def _record(self) -> dict[str, Any]:
        """What a checkpoint says about the run besides its state: the config and the settings
        (compared on resume) and the learning-rate schedule."""
        s = self.settings
        return {
            "config": self.config,
            "config_hash": config_hash(self.config),
            "trainer": s.record(self.world_size),
            "schedule": {
                "name": s.schedule,
                "warmup_steps": s.warmup_steps,
                "total_steps": s.total_steps or self._fit_target,
                "lr": self.lr_at(self.step) if self.step else 0.0,
            },
        }

    def resume(
        self,
        path: str | os.PathLike | Checkpoint | None = None,
        *,
        expected_changes: Collection[str] = (),
        missing_ok: bool = False,
    ) -> int:
        """Load a checkpoint into the train state (model, EMA, optimizer, RNGs, step, metrics
        window, validation); returns the step.  ``path`` None: the newest good checkpoint in
        ``out_dir`` (damaged ones are moved aside, and that is said); when there is none,
        ``FileNotFoundError`` — or, with ``missing_ok``, a warning saying where it looked, and
        the run starts from step 0.  ``ValueError`` if the checkpoint does not fit this model.

        A warning names the config keys (dotted, e.g. ``model.width``) that differ from the
        checkpoint's, except those in ``expected_changes`` (e.g. ``training.steps`` when a run
        is extended on purpose)."""
        self._resume_done = True
        if path is None:
            if self.run_dir is None:
                raise ValueError("resume() needs a checkpoint path or an out_dir")
            path = choose_checkpoint(self.checkpoint_dir, resumable=True, quarantine=self.is_main)
            if path is None:
                if not missing_ok:
                    raise FileNotFoundError(
                        f"no complete checkpoint in {str(self.checkpoint_dir)!r}"
                    )
                if self.is_main:
                    logger.warning("%s", no_checkpoint_note(self.checkpoint_dir))
                return self.step
        ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path)
        check_resumable(ckpt)
        self.state.load_state_dict(ckpt.train_state(), str(ckpt.path))
        if self.is_main:
            self._warn_on_changes(ckpt, set(expected_changes))
            if not self.state.data.exact_resume:
                logger.warning("data is an iterable: its order restarts on resume (not exact)")
            logger.info("resumed from %s (step %d)", ckpt.path, self.step)
        self._restored = True
        return self.step

    def _warn_on_changes(self, ckpt: Checkpoint, expected_changes: Collection[str]) -> None:
        """Warn about settings that differ from the checkpoint's, and name the config keys that
        differ, except those in ``expected_changes``."""
        meta, where = ckpt.metadata, str(ckpt.path)
        saved, now = meta.get("trainer", {}), self.settings.record(self.world_size)
        changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if changed:
            logger.warning(
                "resuming %s with changed settings (checkpoint, now): %s", where, changed
            )
        if meta.get("config_hash") != config_hash(self.config):
            keys = [
                k
                for k in config_changes(meta.get("config"), self.config)
                if k not in expected_changes
            ]
            if keys:
                logger.warning("resuming %s with a different config: %s", where, ", ".join(keys))
