"""Training score models: the ``Trainer``, its state and its checkpoints.

- ``trainer``: ``Trainer`` (fit, one optimizer step, the EMA update, save and resume) and
  ``TrainResult``.
- ``settings``: ``TrainingSettings`` (every hyperparameter, one frozen group) and the schedules
  of the learning rate and the EMA decay, as functions of the step.
- ``train_state``: ``TrainState``, everything a checkpoint holds as one object whose parts each
  have ``state_dict``/``load_state_dict`` (model, EMA, optimizer, RNG streams, data order,
  validation, step engine, metrics window).
- ``checkpoint``: the safetensors + JSON checkpoint format, its integrity checks, and the choice
  of the newest good checkpoint past damage (said out loud).
- ``step``: one step's arithmetic (micro-batches, precision, compile, DDP or all-reduce);
  ``precision``: fp32/bf16/fp16 autocast and the gradient scaler.
- ``data_order``: which rows form batch ``step`` on ``rank`` — a pure function of (seed, step, rank).
- ``distributed``: ``torch.distributed`` helpers (all-reduce, broadcast, gather, per-rank seeds).
- ``validation``: model selection — a validation figure, the best step, early stopping.
- ``metrics_log``: the run's ``metrics.csv``, its averaging window and the progress bar.
- ``stops``: how a fit ends early (divergence, SIGTERM/Ctrl-C) and when it saves (steps, wall time).

The run folder a ``Trainer`` writes into, and its lock, are ``scorematch.run_dir.RunDir``.
"""

from ..run_dir import RunLocked, hold_run_lock, is_leftover
from .checkpoint import (
    Checkpoint,
    CheckpointDamaged,
    checkpoint_paths,
    choose_checkpoint,
    config_hash,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_checkpoint,
    rotate_checkpoints,
    write_checkpoint,
)
from .data_order import batch_indices
from .metrics_log import METRIC_COLUMNS
from .settings import TrainingSettings, ema_decay_at, learning_rate
from .stops import TrainingDiverged, TrainingInterrupted
from .train_state import TrainState
from .trainer import Trainer, TrainResult
from .validation import Validation

__all__ = [
    "METRIC_COLUMNS",
    "Checkpoint",
    "CheckpointDamaged",
    "RunLocked",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingSettings",
    "Validation",
    "batch_indices",
    "checkpoint_paths",
    "choose_checkpoint",
    "config_hash",
    "ema_decay_at",
    "hold_run_lock",
    "is_leftover",
    "latest_checkpoint",
    "learning_rate",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "rotate_checkpoints",
    "write_checkpoint",
]
