"""Training score models: the ``Trainer`` and its checkpoints.

- ``trainer``: ``Trainer`` (fit, one optimizer step, the EMA update); ``results``: ``TrainResult``,
  ``TrainingDiverged``.
- ``validation``: model selection — a validation figure, the best step, early stopping.
- ``schedules``: learning-rate warm-up/cosine decay and the EMA decay, as functions of the step.
- ``data_order``: which rows form batch ``step`` on ``rank`` — a pure function of (seed, step, rank).
- ``distributed``: ``torch.distributed`` helpers (all-reduce, broadcast, gather, per-rank seeds).
- ``checkpoint``: the safetensors + JSON checkpoint format (write, read, list, latest, rotate).
- ``train_state``: the whole train state saved into and restored from a checkpoint.
- ``metrics_log``: the run's ``metrics.csv`` and progress bar.
"""

from .checkpoint import (
    Checkpoint,
    checkpoint_paths,
    config_hash,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_module_state,
    read_checkpoint,
    rotate_checkpoints,
    unflatten_optimizer_state,
    write_checkpoint,
)
from .data_order import batch_indices
from .metrics_log import METRIC_COLUMNS
from .results import TrainingDiverged, TrainResult
from .schedules import ema_decay_at, learning_rate
from .trainer import Trainer
from .validation import Validation

__all__ = [
    "METRIC_COLUMNS",
    "Checkpoint",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "Validation",
    "batch_indices",
    "checkpoint_paths",
    "config_hash",
    "ema_decay_at",
    "flatten_optimizer_state",
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
