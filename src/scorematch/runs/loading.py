"""Loading a run from its directory: :func:`load_run` rebuilds the :class:`~.run.Run` from
``config.yaml``, the checkpoint it names (the run's model, the best or the last step, or a step
number) and ``selection.json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data import Standardizer
from ..devices import resolve_device
from ..training import checkpoint_paths, latest_checkpoint, load_checkpoint
from ..training.distributed import ranks
from .build import build_process, build_score_model
from .config_files import read_run_config
from .ensemble import ensemble_run
from .integrity import check_checkpoint_config
from .run import Run
from .selection import read_selection

__all__ = ["load_run"]


def load_run(
    run_dir: str | Path,
    *,
    device: torch.device | str | None = None,
    ema: bool = True,
    checkpoint: int | str | None = None,
) -> Run:
    """Rebuild a run from its directory: config.yaml + a checkpoint (EMA weights by default).

    ``checkpoint``: None (default) — the run's model: the step chosen on the validation rows
    when the run made that choice (a refitted table's final step), else the newest; ``"best"``
    — the lowest validation loss; ``"last"`` — the newest; or a step number.  ``device``: any
    of ``scorematch.devices.resolve_device`` (``"auto"``, ``"cpu"``, ``"cuda:1"``, …; None: the
    CPU), whatever device the run trained on.  Under torchrun the run samples and scores rows
    split over the ranks (see :class:`~.run.Run`).
    ``FileNotFoundError`` when the directory, its config or the checkpoint is missing."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    config = read_run_config(path)
    if config.get("ensemble"):  # a weighted average of other runs (runs/ensemble.py)
        return ensemble_run(path, config, load_run, device=device)
    latest = latest_checkpoint(path / "checkpoints")
    if latest is None:
        raise FileNotFoundError(f"{path} holds no checkpoint yet (train it first)")
    selection = read_selection(path)
    if checkpoint is None:
        checkpoint = config["training"].get("model", "last")
    step = _checkpoint_step(checkpoint, selection)
    where = latest if step is None else checkpoint_paths(path / "checkpoints", step)[0]
    if not where.is_file():
        raise FileNotFoundError(f"{path} holds no checkpoint at step {step} ({where.name})")
    process = build_process(config)
    model = build_score_model(config, process)
    device = None if device is None else resolve_device(device)
    ckpt = load_checkpoint(where if step is not None else path, model, ema=ema, device=device)
    check_checkpoint_config(config, ckpt, path)  # weights trained with this config.yaml
    if device is not None:
        model = model.to(device)
    model.requires_grad_(False).eval()
    standardizer = Standardizer.from_dict(config["standardizer"])
    return Run(config, model, process, standardizer, step=ckpt.step, run_dir=path,
               selection=selection, ranks=ranks())  # fmt: skip


def _checkpoint_step(checkpoint: int | str, selection: Mapping[str, Any] | None) -> int | None:
    """The step a ``checkpoint`` choice names (None: the newest)."""
    if checkpoint == "last":
        return None
    if checkpoint == "best":
        if selection is None or selection.get("refit"):
            return None  # no selection (the newest is all there is) or refitted (its final step)
        return int(selection["best_step"])
    if isinstance(checkpoint, str) and checkpoint.isdigit():
        checkpoint = int(checkpoint)
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or checkpoint < 1:
        raise ValueError(f"checkpoint must be 'best', 'last' or a step >= 1, got {checkpoint!r}")
    return checkpoint
