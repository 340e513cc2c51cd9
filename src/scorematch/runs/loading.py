"""Loading a run from its directory: :func:`load_run` rebuilds the :class:`~.run.Run` from
``config.yaml``, the checkpoint it names (the run's model, the best or the last step, or a step
number) and ``selection.json`` — or, for an ensemble run, from its members' directories.

Weights that match their config.  A run folder holds its config twice: in ``config.yaml`` (what
``sample``/``evaluate`` rebuild the model, the data and the standardisation from) and inside every
checkpoint (the config the weights were trained with).  If the two disagree — two trainings once
wrote into one folder, or a file was copied from another run — the weights would be read against
the wrong data or standardisation and every number computed from them would be silently wrong.
So the sections that give the weights their meaning (``WEIGHT_SECTIONS``) are compared, by hash
and then key by key; the training schedule and the sampling settings are not among them (``train
--resume --steps`` changes the first, and neither changes what the weights mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data import Standardizer
from ..devices import resolve_device
from ..ensemble import ScoreEnsemble
from ..run_dir import RunDir
from ..training import Checkpoint, checkpoint_paths, config_hash, latest_checkpoint, load_checkpoint
from ..training.checkpoint import config_changes
from ..training.distributed import ranks
from .build import build_process, build_score_model
from .ensemble import langevin_level
from .run import Run
from .selection import read_selection

__all__ = ["WEIGHT_SECTIONS", "check_checkpoint_config", "load_run", "weights_config_hash"]

# The config sections that decide what a checkpoint's weights mean.
WEIGHT_SECTIONS = ("data", "standardizer", "model", "parametrization", "process", "objective")


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
    folder = RunDir(run_dir)
    path = folder.path
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    config = folder.read_config()
    if config.get("ensemble"):  # a weighted average of other runs (runs/ensemble.py)
        return _ensemble_run(path, config, device)
    latest = latest_checkpoint(folder.checkpoints)
    if latest is None:
        raise FileNotFoundError(f"{path} holds no checkpoint yet (train it first)")
    selection = read_selection(path)
    if checkpoint is None:
        checkpoint = config["training"].get("model", "last")
    step = _checkpoint_step(checkpoint, selection)
    where = latest if step is None else checkpoint_paths(folder.checkpoints, step)[0]
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
    return Run(
        config,
        model,
        process,
        standardizer,
        step=ckpt.step,
        run_dir=path,
        selection=selection,
        ranks=ranks(),
    )


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


def _ensemble_run(path: Path, config: dict[str, Any], device) -> Run:
    """The :class:`Run` of an ensemble run directory: its members' models, averaged with the
    weights of its ``ensemble`` section (``runs.ensemble.build_ensemble``)."""
    section = config["ensemble"]
    members = []
    for member, step in zip(section["members"], section["steps"]):
        if not Path(member).is_dir():
            raise FileNotFoundError(f"{path}: member run {member} is missing")
        members.append(load_run(member, device=device, checkpoint=step))
    model = ScoreEnsemble([run.model for run in members], section["weights"])
    model.requires_grad_(False).eval()
    base = members[0] if members[0].time_conditional else min(members, key=langevin_level)
    return Run(
        config,
        model,
        base.process,
        base.standardizer,
        step=0,
        run_dir=path,
        selection=base.selection,
        ranks=(base.world_size, base.rank),
    )


def _sections(config: Mapping[str, Any] | None) -> dict[str, Any]:
    config = config if isinstance(config, Mapping) else {}
    return {k: config.get(k) for k in WEIGHT_SECTIONS}


def weights_config_hash(config: Mapping[str, Any] | None) -> str | None:
    """SHA-256 of the ``WEIGHT_SECTIONS`` of a run config (as ``config_hash`` computes it)."""
    return config_hash(_sections(config))


def check_checkpoint_config(config: Mapping[str, Any], ckpt: Checkpoint, run_dir: Path) -> None:
    """Refuse, with one line naming both files and the first keys that differ, a checkpoint whose
    stored config disagrees with ``run_dir/config.yaml`` on the ``WEIGHT_SECTIONS``.  Checkpoints
    saved without a config (by a bare ``Trainer``) are not checked."""
    saved = ckpt.config
    if saved is None or weights_config_hash(saved) == weights_config_hash(config):
        return
    keys = config_changes(_sections(saved), _sections(config))
    shown = ", ".join(keys[:5]) + (", …" if len(keys) > 5 else "")
    raise ValueError(
        f"checkpoint {ckpt.path} was trained with another config than "
        f"{RunDir(run_dir).config_path} (they differ at {shown}); refusing to use weights that "
        "do not match their config"
    )
