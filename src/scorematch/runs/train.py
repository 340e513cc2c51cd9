"""Training a run: :func:`train` resolves the config (or reads it back to resume), builds the
process, score model, loss and the ``Trainer``'s settings from it, and hands them to the
``Trainer`` with the run directory.

Resume is decided here, from one list: ``RESUMABLE`` names the options a resume may change
(checked as they are given), and with the settings of where and how a run computes
(``execution.EXECUTION_KEYS``) they are the config keys that may differ from the checkpoint's
(``RESUME_CHANGES``).  The ``Trainer`` executes it: ``Trainer.resume`` loads the newest good
checkpoint (or says there is none), and ``fit`` continues from there.

With validation rows (tables by default) the run selects its model on them (``selection``): the
``Trainer`` validates every ``validate_every`` steps, keeps the best step and stops after
``patience`` validations without improvement, and t_min is chosen on the validation
log-likelihood.  A small table (``refit``) makes that choice in memory first, then trains again
on all its training rows for the chosen number of steps, so that no row is wasted.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checks import check_count, check_positive_int
from ..data.missing import without_gaps
from ..devices import resolve_device
from ..plots import image_grid, samples_picture
from ..processes import Process
from ..run_dir import RunDir
from ..training import Trainer, TrainResult
from .build import build_loss, build_process, build_score_model, dequantiser, training_settings
from .conditional import conditional_training, is_conditional
from .config import TIME_CONDITIONAL, configure
from .data import DataBundle, load_run_data
from .execution import EXECUTION_KEYS, record_execution, start
from .loading import load_run
from .run import Run
from .selection import choose_t_min, read_selection, validation_loss, write_selection

__all__ = ["RESUMABLE", "RESUME_CHANGES", "Estimate", "measure_training", "train"]

logger = logging.getLogger("scorematch")

# The options a resume may change, with their check; everything else is fixed by config.yaml.
RESUMABLE: dict[str, Callable[[Any, str], int]] = {
    "steps": check_positive_int,
    "checkpoint_every": check_positive_int,
    "sample_every": check_count,
}
# Fewest complete validation rows to choose the likelihood's t_min on (fewer: the process's own).
MIN_T_MIN_ROWS = 8
# The config keys that may differ between a checkpoint and the run that resumes it.
RESUME_CHANGES = tuple(f"training.{k}" for k in (*RESUMABLE, *EXECUTION_KEYS))


def train(
    options: Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    announce: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_minutes: float | None = 10.0,
    device: str | None = "auto",
    precision: str | None = None,
    compile: bool | None = None,
    grad_accum: int | None = None,
    estimate: Callable[[Estimate], None] | None = None,
) -> TrainResult:
    """Train a run into ``out_dir``.

    Fresh run: ``options`` as for :func:`~.config.build_config`; ``out_dir`` must not hold a run.
    Resume (``resume=True``): the run's ``config.yaml`` is used, and ``options`` may only change
    what ``RESUMABLE`` names (``steps``, the new total, may extend the run).  ``announce(config)``
    is called with the resolved config before training starts.  ``checkpoint_minutes``: also save
    a checkpoint every so many minutes of wall time (None: only on the step grid); not part of
    the config.  ``device`` (``"auto"``: CUDA when available), ``precision``, ``compile`` and
    ``grad_accum``: where and how to train (``execution``; None on resume: as the run recorded).
    ``estimate(Estimate)``: told, before a fresh run trains (one process, no in-memory selection
    pass first), how long its steps and validations take, measured (:func:`measure_training`).
    Under torchrun every rank calls this; rank 0 writes.  Returns the trainer's ``TrainResult``.
    The run folder is created with its config.yaml in one step and locked while training (see
    ``scorematch.run_dir``).
    """
    folder = RunDir(out_dir)
    execution = start(device)  # under torchrun: joins the process group
    if execution.is_main:  # a second writer: one line, before anything is read or printed
        folder.check_unlocked()
    if resume:
        config, data = _resumed_config(folder, options)
    else:
        folder.check_new()
        config, data = configure(dict(options or {}))
    execution.barrier()  # every rank has checked the run directory before rank 0 writes to it
    record_execution(
        config,
        execution,
        precision=precision,
        compile=compile,
        grad_accum=grad_accum,
        resume=resume,
    )
    if announce is not None:
        announce(config)
    tr = config["training"]
    process = build_process(config)
    loss = build_loss(config, process)
    held = data.val_index is not None  # validation rows: kept out of training (but by a refit)
    validated = held and bool(tr.get("validate_every"))
    selection = read_selection(folder.path) if resume else None
    refit = validated and bool(tr.get("refit"))
    if refit and selection is None:
        # In memory: the run folder appears only when the Trainer creates and locks it.  A run
        # killed before its selection.json is written makes the same choice again (seeded).
        selection = _select_in_memory(config, data, process, loss, progress)
    every_row = refit or not held
    rows = data.train if every_row else data.fit
    labels = data.train_labels if every_row else data.fit_labels
    # The refit keeps the selection pass's schedule (cosine over training.steps) up to the chosen
    # step (benchmarks/results/tables.md: decaying over the chosen steps instead was worse).
    target = selection["best_step"] if refit else tr["steps"]
    trainer = _trainer(
        config,
        data,
        process,
        loss,
        rows,
        folder,
        progress,
        validate=validated and not refit,
        checkpoint_minutes=checkpoint_minutes,
        labels=labels,
    )
    if resume:
        # The newest good checkpoint (damaged ones are moved aside, and that is said); none:
        # killed before its first one, which is said, and training starts from step 0.
        trainer.resume(expected_changes=RESUME_CHANGES, missing_ok=True)
        if trainer.step >= target:
            raise ValueError(
                f"{folder.path} is already at step {trainer.step}; pass --steps above "
                f"{trainer.step} to train longer"
            )
    # Measured on a batch that is a function of the step (a tensor's), so the training is the same.
    pure = trainer.state.data.exact_resume
    if estimate is not None and pure and not resume and not refit and trainer.world_size == 1:
        estimate(measure_training(trainer, target))
    result = trainer.fit(target, resume=resume)
    if refit:
        if execution.is_main:
            write_selection(folder.path, selection)
        return dataclasses.replace(result, best_step=selection["best_step"])
    if held:
        run = load_run(folder.path, device=execution.device)  # the best step, or --steps' last
        selected = {
            # Without validation (a fixed --steps) the run's model is its last step.
            "best_step": result.best_step if validated else result.step,
            "refit": False,
            "stopped_early": result.stopped_early,
            "validation": trainer.validation.state_dict() if validated else None,
            "t_min": _t_min(run, data, progress),
        }
        if execution.is_main:
            write_selection(folder.path, selected)
    return result


@dataclasses.dataclass(frozen=True)
class Estimate:
    """How long a training will take, measured on this machine: ``steps`` steps of
    ``step_seconds`` and ``validations`` validations of ``validation_seconds``; ``seconds`` is
    their total (checkpoints and sample pictures come on top)."""

    steps: int
    step_seconds: float
    validations: int
    validation_seconds: float

    @property
    def seconds(self) -> float:
        return self.steps * self.step_seconds + self.validations * self.validation_seconds


def measure_training(trainer: Trainer, steps: int, repeats: int = 3) -> Estimate:
    """Time the trainer's own step on its first batch — one warm-up, then the median of
    ``repeats`` forward and backward passes, with a generator of their own, the gradients
    cleared after, so the training that follows is unchanged — and one validation, when the
    trainer validates; :class:`Estimate` for ``steps`` steps (from the trainer's current one)."""
    model, engine = trainer.model, trainer.engine
    batch = trainer.state.data.batch(1, trainer.rank).to(trainer.device)
    generator = torch.Generator(device=trainer.device).manual_seed(0)
    model.train()
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        engine.gradients(trainer.loss_fn, batch, generator)
        times.append(time.perf_counter() - t0)
    trainer.optimizer.zero_grad(set_to_none=True)
    validation, val_seconds, count = trainer.validation, 0.0, 0
    remaining = max(0, steps - trainer.step)
    if validation is not None:
        count = remaining // validation.every
        if count:
            t0 = time.perf_counter()
            validation.fn(trainer.ema_model, trainer.step)
            val_seconds = time.perf_counter() - t0
    return Estimate(remaining, statistics.median(times[1:]), count, val_seconds)


def _trainer(
    config: Mapping[str, Any],
    data: DataBundle,
    process: Process | None,
    loss,
    rows,
    folder: RunDir | None,
    progress: bool,
    *,
    validate: bool,
    checkpoint_minutes: float | None = None,
    labels=None,
) -> Trainer:
    """The ``Trainer`` of a run's config on ``rows`` (data units) and their ``labels``, writing
    into ``folder`` (None: in memory, no files).  A conditional run (masks, labels) trains on row
    numbers with the conditional objective (``runs.conditional``)."""
    tr = config["training"]
    settings = training_settings(
        config,
        rows.shape[0],
        files=folder is not None,
        validate=validate,
        progress=progress,
        checkpoint_minutes=checkpoint_minutes,
    )
    inputs, val_inputs = (loss, data.standardised(rows)), None
    if validate:
        val_inputs = (loss, data.standardised(data.val))
    if is_conditional(config):
        spread = dequantiser(config)
        inputs = conditional_training(config, process, inputs[1], labels, spread)
        if validate:
            val_inputs = conditional_training(
                config, process, val_inputs[1], data.val_labels, spread
            )
    validate_fn = None
    if validate:
        validate_fn = validation_loss(
            *val_inputs,
            seed=tr["seed"] + 1,
            batch_size=max(tr["batch_size"], 256),
            time_conditional=config["objective"]["name"] in TIME_CONDITIONAL,
        )
    return Trainer(
        build_score_model(config, process),
        inputs[0],
        inputs[1],
        settings,
        out_dir=None if folder is None else folder.path,
        config=dict(config),
        device=resolve_device(tr.get("device", "cpu")),
        sample_fn=_sample_plotter(config, data, process) if settings.sample_every else None,
        validate_fn=validate_fn,
    )


def _select_in_memory(config, data, process, loss, progress) -> dict[str, Any]:
    """The selection pass of a small table: train on the rows without the validation rows, in
    memory, with validation and early stopping; keep the best EMA model; choose t_min with it."""
    trainer = _trainer(config, data, process, loss, data.fit, None, progress, validate=True,
                       labels=data.fit_labels)  # fmt: skip
    watched, best = trainer.validation.fn, {"value": float("inf"), "state": None}

    def keep_best(model: nn.Module, step: int) -> float:
        value = watched(model, step)
        if value < best["value"]:  # the Validation's own rule (min_delta 0): same best step
            best["value"], best["state"] = value, copy.deepcopy(model.state_dict())
        return value

    trainer.validation.fn = keep_best
    logger.info("choosing the number of steps on %d validation rows", data.val.shape[0])
    result = trainer.fit(config["training"]["steps"])
    model = build_score_model(config, process)
    model.load_state_dict(best["state"])
    run = Run(
        config,
        model.requires_grad_(False).eval(),
        process,
        data.standardizer,
        step=result.best_step,
        data=data,
    )
    return {
        "best_step": result.best_step,
        "refit": True,
        "stopped_early": result.stopped_early,
        "validation": trainer.validation.state_dict(),
        "t_min": _t_min(run, data, progress),
    }


def _t_min(run: Run, data: DataBundle, progress: bool) -> dict[str, Any] | None:
    """t_min chosen on the validation rows, for runs with a likelihood on vector data."""
    if not run.time_conditional or data.kind != "vector":
        return None
    val = without_gaps(data.val)  # the likelihood scores complete rows
    if val.shape[0] < MIN_T_MIN_ROWS:
        return None
    return choose_t_min(run, val, progress=progress)


def _resumed_config(
    folder: RunDir, options: Mapping[str, Any] | None
) -> tuple[dict[str, Any], DataBundle]:
    """The config of the run in ``folder`` with the changes a resume may make (``RESUMABLE``),
    and its data."""
    changes = {k: v for k, v in (options or {}).items() if v is not None}
    fixed = sorted(set(changes) - set(RESUMABLE))
    if fixed:
        names = ", ".join(fixed)
        raise ValueError(f"cannot change {names} when resuming: the run's config.yaml fixes them")
    if not folder.is_run():
        why = (
            ""
            if not folder.path.is_dir()
            else (": nothing was trained into it yet, start it with --data")
        )
        raise FileNotFoundError(f"no run to resume in {folder.path} (no config.yaml){why}")
    config = folder.read_config()
    data = load_run_data(config)
    for name, value in changes.items():
        config["training"][name] = RESUMABLE[name](value, name)
    return config, data


def _sample_plotter(
    config: Mapping[str, Any], data: DataBundle, process: Process | None
) -> Callable[[nn.Module, int, Path | None], None]:
    """Trainer callback: a sample plot at ``RUN/samples/step_XXXXXXXX.png``."""
    n = 64 if data.kind == "image" else 1000

    def plot_samples(ema_model: nn.Module, step: int, out_dir: Path | None) -> None:
        if out_dir is None:
            return
        folder = RunDir(out_dir).samples
        folder.mkdir(parents=True, exist_ok=True)
        run = Run(config, ema_model, process, data.standardizer, step=step, data=data)
        x = run.sample(n, seed=step).x
        path = folder / f"step_{step:08d}.png"
        if data.kind == "image":
            image_grid(x.clamp(0, 1), path, nrow=8)
        else:
            samples_picture(x, data.train_complete, path, columns=data.columns,
                            title=f"step {step}")  # fmt: skip

    return plot_samples
