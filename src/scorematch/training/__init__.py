"""Training score models: the ``Trainer`` and its checkpoints.

- ``trainer``: ``Trainer`` (fit, one optimizer step, the EMA update); ``results``: ``TrainResult``,
  ``TrainingDiverged``.
- ``validation``: model selection — a validation figure, the best step, early stopping.
- ``schedules``: learning-rate warm-up/cosine decay and the EMA decay, as functions of the step.
- ``data_order``: which rows form batch ``step`` on ``rank`` — a pure function of (seed, step, rank).
- ``distributed``: ``torch.distributed`` helpers (all-reduce, broadcast, gather, per-rank seeds).
- ``checkpoint``: the safetensors + JSON checkpoint format (write, read, check, list, rotate).
- ``recovery``: which checkpoint to load — the newest good one, past damage, said out loud.
- ``optimizer_state``: the optimizer's state dict split into tensors and JSON scalars.
- ``train_state``: the whole train state saved into and restored from a checkpoint.
- ``metrics_log``: the run's ``metrics.csv`` and progress bar.
- ``run_lock``: one writer per run folder (PID + host in ``RUN/.lock``); atomic folder creation.
- ``stops``: how a fit ends early (divergence, SIGTERM/Ctrl-C) and when it saves (steps, wall time).
"""

from .checkpoint import (
    Checkpoint,
    CheckpointDamaged,
    checkpoint_paths,
    config_hash,
    latest_checkpoint,
    list_checkpoints,
    load_module_state,
    rotate_checkpoints,
    write_checkpoint,
)
from .data_order import batch_indices
from .metrics_log import METRIC_COLUMNS
from .optimizer_state import flatten_optimizer_state, unflatten_optimizer_state
from .recovery import choose_checkpoint, load_checkpoint, read_checkpoint
from .results import TrainResult
from .run_lock import RunLocked, check_unlocked, hold_run_lock, is_leftover
from .schedules import ema_decay_at, learning_rate
from .stops import TrainingDiverged, TrainingInterrupted
from .train_state import choose_resume_checkpoint
from .trainer import Trainer
from .validation import Validation

__all__ = [
    "METRIC_COLUMNS",
    "Checkpoint",
    "CheckpointDamaged",
    "RunLocked",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "Validation",
    "batch_indices",
    "check_unlocked",
    "checkpoint_paths",
    "choose_checkpoint",
    "choose_resume_checkpoint",
    "config_hash",
    "ema_decay_at",
    "flatten_optimizer_state",
    "hold_run_lock",
    "is_leftover",
    "latest_checkpoint",
    "learning_rate",
    "list_checkpoints",
    "load_checkpoint",
    "load_module_state",
    "read_checkpoint",
    "rotate_checkpoints",
    "unflatten_optimizer_state",
    "write_checkpoint",
]
