"""Weights that match their config: the check :func:`load_run` makes before it uses a checkpoint.

A run folder holds its config twice: in ``config.yaml`` (what ``sample``/``evaluate`` rebuild the
model, the data and the standardisation from) and inside every checkpoint (the config the weights
were trained with).  If the two disagree — two trainings once wrote into one folder, or a file was
copied from another run — the weights would be read against the wrong data or standardisation and
every number computed from them would be silently wrong.  So the sections that give the weights
their meaning are compared, by hash and then key by key; the training schedule and the sampling
settings are not among them (``train --resume --steps`` changes the first, and neither changes
what the weights mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..training import Checkpoint, config_hash
from ..training.checkpoint import config_changes

__all__ = ["WEIGHT_SECTIONS", "check_checkpoint_config", "weights_config_hash"]

# The config sections that decide what a checkpoint's weights mean.
WEIGHT_SECTIONS = ("data", "standardizer", "model", "parametrization", "process", "objective")


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
        f"checkpoint {ckpt.path} was trained with another config than {run_dir / 'config.yaml'} "
        f"(they differ at {shown}); refusing to use weights that do not match their config"
    )
