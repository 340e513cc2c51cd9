"""Training a run: :func:`train` resolves the config (or reads it back to resume), builds the
process, score model and loss from it, and hands them to the ``Trainer`` with the run directory.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..plots import image_grid, samples_picture
from ..processes import Process
from ..training import (
    Trainer,
    TrainResult,
    check_unlocked,
    choose_resume_checkpoint,
    is_leftover,
    latest_checkpoint,
)
from .build import build_loss, build_process, build_score_model
from .checks import count, positive_int
from .config import TIME_CONDITIONAL, build_config
from .config_files import is_run_dir, read_run_config
from .data import DataBundle, load_run_data
from .execution import EXECUTION_CHANGES, record_execution, start, trainer_options
from .loading import load_run
from .run import Run
from .selection import choose_t_min, read_selection, validation_loss, write_selection

__all__ = ["RESUMABLE", "train"]

logger = logging.getLogger("scorematch")

# Config keys that ``train(resume=True)`` may change (the trainer also reports them as settings).
RESUMABLE = ("training.steps", "training.checkpoint_every", "training.sample_every")


def train(
    options: Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    steps: int | None = None,
    checkpoint_every: int | None = None,
    sample_every: int | None = None,
    progress: bool = True,
    announce: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_minutes: float | None = 10.0,
    device: str | None = "auto",
    precision: str | None = None,
    compile: bool | None = None,
    grad_accum: int | None = None,
) -> TrainResult:
    """Train a run into ``out_dir``.

    Fresh run: ``options`` as for :func:`build_config`; ``out_dir`` must not hold a run.  Resume
    (``resume=True``): the run's ``config.yaml`` is used, ``options`` must be None or empty, and
    ``steps`` (the new total) may extend the run; ``checkpoint_every`` / ``sample_every`` may
    change.  ``announce(config)`` is called with the resolved config before training starts.
    ``checkpoint_minutes``: also save a checkpoint every so many minutes of wall time (None: only
    on the step grid); not part of the config.  ``device`` (``"auto"``: CUDA when available),
    ``precision``, ``compile`` and ``grad_accum``: where and how to train (``execution``; None
    on resume: as the run recorded).  Under torchrun every rank calls this; rank 0 writes.
    Returns the trainer's ``TrainResult``.  The run folder is created with its config.yaml in one
    step and locked while training (see ``training.run_lock``).
    """
    out = Path(out_dir).expanduser()
    execution = start(device)  # under torchrun: joins the process group
    if execution.is_main:
        check_unlocked(out)  # a second writer: one line, before anything is read or printed
    if resume:
        config, bundle = _resumed_config(out, options, steps, checkpoint_every, sample_every)
    else:
        _check_new_run_dir(out)
        options = dict(options or {})
        for name, value in (
            ("steps", steps),
            ("checkpoint_every", checkpoint_every),
            ("sample_every", sample_every),
        ):
            if value is not None:
                options[name] = value
        config, bundle = build_config(options)
    execution.barrier()  # every rank has checked the run directory before rank 0 writes to it
    record_execution(config, execution, precision=precision, compile=compile,
                     grad_accum=grad_accum, resume=resume)  # fmt: skip
    if announce is not None:
        announce(config)
    tr = config["training"]
    process = build_process(config)
    loss = build_loss(config, process)
    validated = bundle.val_index is not None and bool(tr.get("validate_every"))
    selection = read_selection(out) if resume else None
    refit = validated and bool(tr.get("refit"))
    if refit and selection is None:
        # In memory: the run folder appears only when the Trainer creates and locks it.  A run
        # killed before its selection.json is written makes the same choice again (seeded).
        selection = _select_in_memory(config, bundle, process, loss, progress)
    rows = bundle.train if refit or not validated else bundle.fit
    z_rows = bundle.standardised(rows)
    target = selection["best_step"] if refit else tr["steps"]
    # The refit keeps the selection pass's schedule (cosine over training.steps) up to the chosen
    # step: decaying over the chosen steps instead made iris 0.05 and wine 0.36 nats worse.
    trainer = _trainer(config, bundle, process, loss, z_rows, out, progress,
                       validate=validated and not refit,
                       checkpoint_minutes=checkpoint_minutes)  # fmt: skip
    if resume:
        # The newest good checkpoint (damaged ones are moved aside, and that is said); none:
        # killed before its first one, and fit says so and trains from step 0.
        ckpt = choose_resume_checkpoint(out / "checkpoints", quarantine=execution.is_main)
        if ckpt is not None:
            trainer.resume(ckpt, expected_changes=RESUMABLE + EXECUTION_CHANGES)
        if trainer.step >= target:
            raise ValueError(
                f"{out} is already at step {trainer.step}; pass --steps above {trainer.step} to "
                "train longer"
            )
    result = trainer.fit(target, resume=resume)
    if refit:
        if execution.is_main:
            write_selection(out, selection)
        return dataclasses.replace(result, best_step=selection["best_step"])
    if validated:
        run = load_run(out, device=execution.device)  # the best step, or a fixed --steps' last
        selected = {
            "best_step": result.best_step,
            "refit": False,
            "stopped_early": result.stopped_early,
            "validation": trainer.validation.state(),
            "t_min": _t_min(run, bundle),
        }  # fmt: skip
        if execution.is_main:
            write_selection(out, selected)
    return result


def _trainer(config, bundle, process, loss, z_rows, out, progress, *, validate,
             checkpoint_minutes=None) -> Trainer:  # fmt: skip
    """The ``Trainer`` of a run's config, writing into ``out`` (None: in memory, no files)."""
    tr = config["training"]
    sample_every = tr["sample_every"] if out is not None else 0
    options: dict[str, Any] = {}
    if validate:
        z_val = bundle.standardised(bundle.val)
        options = dict(
            validate_fn=validation_loss(
                loss, z_val, seed=tr["seed"] + 1, batch_size=max(tr["batch_size"], 256),
                time_conditional=config["objective"]["name"] in TIME_CONDITIONAL,
            ),
            validate_every=tr["validate_every"],
            patience=tr.get("patience"),
        )  # fmt: skip
    return Trainer(
        build_score_model(config, process),
        loss,
        z_rows,
        out_dir=out,
        batch_size=min(tr["batch_size"], z_rows.shape[0]),
        lr=tr["lr"],
        warmup_steps=tr["warmup_steps"],
        schedule=tr["schedule"],
        total_steps=tr["steps"] if tr["schedule"] == "cosine" else None,
        grad_clip=tr["grad_clip"],
        ema_half_life=tr["ema_half_life"],
        seed=tr["seed"],
        checkpoint_every=tr["checkpoint_every"] if out is not None else None,
        checkpoint_seconds=None if checkpoint_minutes is None else 60.0 * checkpoint_minutes,
        sample_every=sample_every or None,
        sample_fn=_sample_plotter(config, bundle, process) if sample_every else None,
        progress=progress,
        config=config,
        **trainer_options(config),
        **options,
    )


def _select_in_memory(config, bundle, process, loss, progress) -> dict[str, Any]:
    """The selection pass of a small table: train on the rows without the validation rows, in
    memory, with validation and early stopping; keep the best EMA model; choose t_min with it."""
    z_fit = bundle.standardised(bundle.fit)
    trainer = _trainer(config, bundle, process, loss, z_fit, None, progress, validate=True)
    watched, best = trainer.validation.fn, {"value": float("inf"), "state": None}

    def keep_best(model: nn.Module, step: int) -> float:
        value = watched(model, step)
        if value < best["value"]:  # the Validation's own rule (min_delta 0): same best step
            best["value"], best["state"] = value, copy.deepcopy(model.state_dict())
        return value

    trainer.validation.fn = keep_best
    logger.info("choosing the number of steps on %d validation rows", bundle.val.shape[0])
    result = trainer.fit(config["training"]["steps"])
    model = build_score_model(config, process)
    model.load_state_dict(best["state"])
    run = Run(config, model.requires_grad_(False).eval(), process, bundle.standardizer,
              step=result.best_step, data=bundle)  # fmt: skip
    return {
        "best_step": result.best_step,
        "refit": True,
        "stopped_early": result.stopped_early,
        "validation": trainer.validation.state(),
        "t_min": _t_min(run, bundle),
    }


def _t_min(run: Run, bundle: DataBundle) -> dict[str, Any] | None:
    """t_min chosen on the validation rows, for runs with a likelihood on vector data."""
    if not run.time_conditional or bundle.kind != "vector":
        return None
    return choose_t_min(run, bundle.val)


def _check_new_run_dir(out: Path) -> None:
    """A fresh run goes into a new or empty directory: never over another run or other files."""
    if out.exists() and (is_run_dir(out) or latest_checkpoint(out / "checkpoints")):
        raise ValueError(
            f"{out} already holds a run; pass --resume to continue it or choose a new --out"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(not is_leftover(p) for p in out.iterdir()):
        raise ValueError(f"--out {out} is not empty; choose a new or empty directory")


def _resumed_config(
    out: Path,
    options: Mapping[str, Any] | None,
    steps: int | None,
    checkpoint_every: int | None,
    sample_every: int | None,
) -> tuple[dict[str, Any], DataBundle]:
    """The config of the run in ``out`` with the settings a resume may change, and its data."""
    if options:
        names = ", ".join(sorted(options))
        raise ValueError(f"cannot change {names} when resuming: the run's config.yaml fixes them")
    if not is_run_dir(out):
        why = "" if not out.is_dir() else ": nothing was trained into it yet, start it with --data"
        raise FileNotFoundError(f"no run to resume in {out} (no config.yaml){why}")
    config = read_run_config(out)
    bundle = load_run_data(config)
    tr = config["training"]
    if steps is not None:
        tr["steps"] = positive_int(steps, "steps")
    if checkpoint_every is not None:
        tr["checkpoint_every"] = positive_int(checkpoint_every, "checkpoint_every")
    if sample_every is not None:
        tr["sample_every"] = count(sample_every, "sample_every")
    return config, bundle


def _sample_plotter(
    config: Mapping[str, Any], bundle: DataBundle, process: Process | None
) -> Callable[[nn.Module, int, Path | None], None]:
    """Trainer callback: a sample plot at ``RUN/samples/step_XXXXXXXX.png``."""
    n = 64 if bundle.kind == "image" else 1000

    def plot_samples(ema_model: nn.Module, step: int, out_dir: Path | None) -> None:
        if out_dir is None:
            return
        folder = Path(out_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        run = Run(config, ema_model, process, bundle.standardizer, step=step, data=bundle)
        x = run.sample(n, seed=step).x
        path = folder / f"step_{step:08d}.png"
        if bundle.kind == "image":
            image_grid(x.clamp(0, 1), path, nrow=8)
        else:
            samples_picture(x, bundle.train, path, columns=bundle.columns, title=f"step {step}")

    return plot_samples
