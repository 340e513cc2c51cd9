"""Training a run: :func:`train` resolves the config (or reads it back to resume), builds the
process, score model and loss from it, and hands them to the ``Trainer`` with the run directory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..plots import image_grid, samples_vs_data
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
from .config import build_config, is_run_dir, read_run_config
from .data import DataBundle, load_run_data
from .run import Run

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
    checkpoint_minutes: float | None = 10.0,
) -> TrainResult:
    """Train a run into ``out_dir``.

    Fresh run: ``options`` as for :func:`build_config`; ``out_dir`` must not hold a run.  Resume
    (``resume=True``): the run's ``config.yaml`` is used, ``options`` must be None or empty, and
    ``steps`` (the new total) may extend the run; ``checkpoint_every`` / ``sample_every`` may
    change.  ``checkpoint_minutes``: also save a checkpoint every so many minutes of wall time
    (None: only on the step grid); not part of the config.  Returns the trainer's ``TrainResult``.
    The run folder is created with its config.yaml in one step and locked while training (see
    ``training.run_lock``).
    """
    out = Path(out_dir).expanduser()
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
    tr = config["training"]
    process = build_process(config)
    model = build_score_model(config, process)
    z_train = bundle.standardizer.transform(bundle.train)
    trainer = Trainer(
        model,
        build_loss(config, process),
        z_train,
        out_dir=out,
        batch_size=min(tr["batch_size"], z_train.shape[0]),
        lr=tr["lr"],
        warmup_steps=tr["warmup_steps"],
        schedule=tr["schedule"],
        total_steps=tr["steps"] if tr["schedule"] == "cosine" else None,
        grad_clip=tr["grad_clip"],
        ema_half_life=tr["ema_half_life"],
        seed=tr["seed"],
        checkpoint_every=tr["checkpoint_every"],
        checkpoint_seconds=None if checkpoint_minutes is None else 60.0 * checkpoint_minutes,
        sample_every=tr["sample_every"] or None,
        sample_fn=_sample_plotter(config, bundle, process) if tr["sample_every"] else None,
        progress=progress,
        config=config,
    )
    if resume:
        # The newest good checkpoint (damaged ones are moved aside, and that is said); none:
        # killed before its first one, and fit says so and trains from step 0.
        ckpt = choose_resume_checkpoint(out / "checkpoints", quarantine=True)
        if ckpt is not None:
            trainer.resume(ckpt, expected_changes=RESUMABLE)
        if trainer.step >= tr["steps"]:
            raise ValueError(
                f"{out} is already at step {trainer.step}; pass --steps above {trainer.step} to "
                "train longer"
            )
    return trainer.fit(tr["steps"], resume=resume)


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
            samples_vs_data(x, bundle.train, path, title=f"step {step}")

    return plot_samples
