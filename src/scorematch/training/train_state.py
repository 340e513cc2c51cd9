"""Save and restore the whole train state of a ``Trainer`` as a checkpoint.

Tensors: ``model.*`` (the trained weights), ``ema.*`` (the EMA weights) and
``optim.state.<i>.<key>`` (AdamW's moments and step counts).  JSON: ``optimizer`` (its scalars and
``param_groups``) and ``rng``: every rank's loss generator and global CPU/CUDA RNG states as base64
text.  With the step (which fixes the data order, see ``data_order``) and the metrics window these
make a resumed run bit-identical to an uninterrupted one.  The caller adds its own fields (settings,
config, schedule, ...) to the metadata; ``warn_on_changes`` compares them on resume.
"""

from __future__ import annotations

import base64
import errno
import logging
import math
import os
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (
    Checkpoint,
    CheckpointDamaged,
    checkpoint_paths,
    config_changes,
    config_hash,
    latest_checkpoint,
    load_module_state,
    move_aside,
    read_checkpoint_files,
    rotate_checkpoints,
    scorematch_version,
    write_checkpoint,
)
from .distributed import barrier, gather, mix_seed
from .optimizer_state import flatten_optimizer_state, unflatten_optimizer_state
from .recovery import choose_checkpoint

__all__ = [
    "REQUIRED_FIELDS",
    "check_train_fields",
    "choose_resume_checkpoint",
    "decode_rng_state",
    "encode_rng_state",
    "load_optimizer_state",
    "restore_train_state",
    "rng_states",
    "save_train_state",
    "train_state_tensors",
    "warn_on_changes",
]

logger = logging.getLogger(__name__)

# JSON fields without which a checkpoint cannot resume a Trainer.
REQUIRED_FIELDS = ("rng", "optimizer", "metrics_window", "elapsed_seconds")


def train_state_tensors(
    model: nn.Module, ema_model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The checkpoint's tensors (weights, EMA weights, optimizer state) and the optimizer's
    JSON part."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema_model.state_dict().items()})
    optim_tensors, optim_meta = flatten_optimizer_state(optimizer.state_dict())
    tensors.update(optim_tensors)
    return tensors, optim_meta


def save_train_state(
    directory: Path,
    step: int,
    metadata: dict[str, Any],
    *,
    model: nn.Module,
    ema_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    world_size: int,
    rank: int,
    keep: int | None,
    protect: Collection[int] = (),
) -> Path:
    """Write the checkpoint at ``step`` (rank 0 writes; a collective call under torchrun): the
    train state's tensors, and ``metadata`` with the ``"rng"``, ``"optimizer"`` and
    ``"world_size"`` fields and the versions and time added; read it back, and only then keep
    the newest ``keep`` (and the steps in ``protect``).  Returns the tensor file's path.  A failed
    write (disk full) or read-back is an ``OSError`` naming the file and the checkpoint kept."""
    tensors, optim_meta = train_state_tensors(model, ema_model, optimizer)
    rng = rng_states(generator, world_size)
    path = checkpoint_paths(directory, step)[0]
    if rank == 0:
        metadata = {
            **metadata,
            "rng": rng,
            "optimizer": optim_meta,
            "world_size": world_size,
            "scorematch_version": scorematch_version(),
            "torch_version": torch.__version__,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            write_checkpoint(directory, step, tensors, metadata)
            # Read back what the disk now holds before rotation may delete an older checkpoint.
            read_checkpoint_files(path, load_tensors=False)
        except (OSError, CheckpointDamaged) as err:
            raise _save_failed(directory, path, err) from err
        rotate_checkpoints(directory, keep, protect=protect)
        logger.info("saved checkpoint %s", path)
    barrier(world_size)
    return path


def _save_failed(directory: Path, path: Path, err: Exception) -> OSError:
    """An ``OSError`` naming the checkpoint that could not be written (or did not read back
    intact: then moved aside as ``*.corrupt``) and the newest complete one that is kept."""
    if isinstance(err, CheckpointDamaged):
        for p in (path, path.with_suffix(".json")):
            move_aside(p, ".corrupt")
    kept = latest_checkpoint(directory)
    what = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return OSError(
        getattr(err, "errno", None) or errno.EIO,
        f"could not save checkpoint {path}: {what}; the newest checkpoint kept is "
        f"{kept if kept is not None else 'none'}",
    )


def restore_train_state(
    ckpt: Checkpoint,
    *,
    model: nn.Module,
    ema_model: nn.Module,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    generator: torch.Generator,
    world_size: int,
    rank: int,
    seed: int,
) -> None:
    """Load weights, EMA weights, optimizer state (the optimizer keeps its hyperparameters) and
    RNG states from a checkpoint written by ``save_train_state``.

    ``ValueError`` naming the file if it lacks a field or does not fit the model.  RNG states that
    cannot be restored (another world size, a CUDA run resumed on CPU) are replaced by fresh
    streams, still deterministic: seeded by (seed, rank, step), with a warning.
    """
    meta, where = ckpt.metadata, str(ckpt.path)
    check_train_fields(ckpt)
    if ckpt.ema_state is None:
        raise ValueError(f"checkpoint {where!r} holds no EMA weights")
    load_module_state(model, ckpt.model_state, where)
    load_module_state(ema_model, ckpt.ema_state, where)
    load_optimizer_state(optimizer, params, ckpt.tensors, meta["optimizer"], where)
    try:
        if meta.get("world_size", 1) != world_size:
            raise ValueError(f"saved with world size {meta.get('world_size')}")
        _restore_rng_states(meta["rng"], generator, rank)
    except (RuntimeError, ValueError, IndexError, KeyError) as err:
        step = int(meta["step"])
        generator.manual_seed(mix_seed(seed, "resume", rank, step))
        torch.manual_seed(mix_seed(seed, "resume-global", rank, step))
        if rank == 0:
            logger.warning(
                "%s: RNG state not restored (%s); noise after resume differs from an uninterrupted run",
                where,
                err,
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_WINDOW = ("loss_sum", "grad_norm_sum", "count", "start_seconds")


def check_train_fields(ckpt: Checkpoint) -> None:
    """Check the sidecar fields a resume reads (``REQUIRED_FIELDS``) before any is used: a
    ``CheckpointDamaged`` naming the file and the field otherwise, so that a resume falls back to
    an older checkpoint instead of failing deep inside with a KeyError or TypeError."""
    meta = ckpt.metadata
    checks = {
        "rng": lambda v: (
            isinstance(v, dict)
            and all(isinstance(v.get(k), list) for k in ("generators", "torch_cpu", "cuda"))
        ),
        "optimizer": lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("state"), dict)
            and isinstance(v.get("param_groups"), list)
            and all(
                isinstance(g, dict) and isinstance(g.get("params"), list) for g in v["param_groups"]
            )
        ),
        "metrics_window": lambda v: (
            isinstance(v, dict)
            and set(_WINDOW) <= set(v)
            and all(_is_number(v[k]) for k in _WINDOW)
        ),
        "elapsed_seconds": lambda v: _is_number(v) and v >= 0,
    }
    for key in REQUIRED_FIELDS:
        if key not in meta:
            problem = "is missing: it was not written by Trainer"
        elif not checks[key](meta[key]):
            problem = f"is damaged (got {meta[key]!r:.60})"
        else:
            continue
        raise CheckpointDamaged(
            ckpt.path, f"checkpoint metadata {str(ckpt.metadata_path)!r}: field {key!r} {problem}"
        )


def choose_resume_checkpoint(directory: Path, quarantine: bool) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that a ``Trainer`` can resume from (its fields
    checked too), past damaged ones (moved aside when ``quarantine``: rank 0 only), or None."""
    return choose_checkpoint(directory, quarantine=quarantine, check=check_train_fields)


def warn_on_changes(
    ckpt: Checkpoint,
    settings: dict[str, Any],
    config: dict[str, Any] | None,
    expected_changes: Collection[str] = (),
) -> None:
    """Warn about trainer settings that differ from the checkpoint's, and name the config keys
    (dotted, e.g. ``model.width``) that differ, except those in ``expected_changes``."""
    meta, where = ckpt.metadata, str(ckpt.path)
    saved = meta.get("trainer", {})
    changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if changed:
        logger.warning("resuming %s with changed settings (checkpoint, now): %s", where, changed)
    if meta.get("config_hash") != config_hash(config):
        keys = [k for k in config_changes(meta.get("config"), config) if k not in expected_changes]
        if keys:
            logger.warning("resuming %s with a different config: %s", where, ", ".join(keys))


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    tensors: dict[str, Tensor],
    meta: dict[str, Any],
    source: str | os.PathLike,
) -> None:
    """Load the per-parameter state saved by ``flatten_optimizer_state`` into ``optimizer``
    (whose parameters are ``params``), keeping the optimizer's own hyperparameters.  A
    ``ValueError`` naming ``source`` when the groups, indices or shapes do not fit."""
    where = str(source)
    state = unflatten_optimizer_state(tensors, meta)
    current = optimizer.state_dict()
    sizes = [len(g["params"]) for g in meta["param_groups"]]
    if sizes != [len(g["params"]) for g in current["param_groups"]]:
        raise ValueError(
            f"checkpoint {where!r}: optimizer parameter groups {sizes} do not match the model"
        )
    for index, entries in state.items():
        if index >= len(params):
            raise ValueError(
                f"checkpoint {where!r}: optimizer state for parameter {index} not in the model"
            )
        for key, value in entries.items():
            if isinstance(value, Tensor) and value.ndim > 0 and value.shape != params[index].shape:
                raise ValueError(
                    f"checkpoint {where!r}: optimizer {key} of parameter {index} has shape "
                    f"{tuple(value.shape)}, the model's is {tuple(params[index].shape)}"
                )
    current["state"] = state
    optimizer.load_state_dict(current)


def encode_rng_state(state: Tensor) -> str:
    """A generator's byte state (``get_state()``) as base64 text for the JSON sidecar."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_rng_state(text: str) -> Tensor:
    """Inverse of ``encode_rng_state``: a uint8 tensor for ``set_state``."""
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_states(generator: torch.Generator, world_size: int) -> dict[str, Any]:
    """The checkpoint's ``"rng"`` field: every rank's generator, CPU and CUDA RNG states (a
    collective call under torchrun)."""
    cuda_states = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_states = [encode_rng_state(s) for s in torch.cuda.get_rng_state_all()]
    return {
        "generator_device": str(generator.device),
        "generators": gather(encode_rng_state(generator.get_state()), world_size),
        "torch_cpu": gather(encode_rng_state(torch.get_rng_state()), world_size),
        "cuda": gather(cuda_states, world_size),
    }


def _restore_rng_states(rng: dict[str, Any], generator: torch.Generator, rank: int) -> None:
    # Raises RuntimeError, IndexError or KeyError when the states do not fit (e.g. a CUDA
    # generator's state on CPU); CUDA states are skipped when the device count differs.
    generator.set_state(decode_rng_state(rng["generators"][rank]))
    torch.set_rng_state(decode_rng_state(rng["torch_cpu"][rank]))
    cuda = rng["cuda"][rank]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([decode_rng_state(s) for s in cuda])
