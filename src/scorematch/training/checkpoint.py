"""Checkpoints as safetensors + a JSON sidecar: no pickle, loadable without the source tree.

A checkpoint at step N is two files in one directory::

    step_0000000N.safetensors   every tensor: "model.*", "ema.*", "optim.state.<i>.<key>"
    step_0000000N.json          everything else: step, config, RNG states, optimizer scalars, ...

The tensor file is written first and the JSON last, each atomically (``scorematch.io``), and the
JSON records the tensor file's SHA-256.  A checkpoint *exists* only when its JSON exists, so a
process killed mid-save never leaves a half-written "latest" checkpoint; a tensor file damaged
later is caught by the checksum and reported as a ``ValueError`` naming the file.

Besides the format (write, read, list, latest, rotate) this module converts what is not a plain
tensor or JSON value: the optimizer's state dict (tensors apart from JSON scalars), and the config
(its hash, and the keys at which two configs differ).  What a ``Trainer`` stores is in
``train_state``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor, nn

from ..io import atomic_write_bytes, atomic_write_text

__all__ = [
    "Checkpoint",
    "checkpoint_paths",
    "config_changes",
    "config_hash",
    "flatten_optimizer_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_module_state",
    "read_checkpoint",
    "rotate_checkpoints",
    "scorematch_version",
    "unflatten_optimizer_state",
    "write_checkpoint",
]

FORMAT = "scorematch-checkpoint"
FORMAT_VERSION = 1
_JSON_NAME = re.compile(r"^step_(\d{8,})\.json$")


def checkpoint_paths(directory: str | os.PathLike, step: int) -> tuple[Path, Path]:
    """The ``(tensor file, JSON sidecar)`` paths of the checkpoint at ``step`` in ``directory``."""
    stem = Path(directory) / f"step_{int(step):08d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its files, step, JSON metadata and every stored tensor (on CPU unless a
    device was asked for).  ``model_state`` / ``ema_state`` are ready for ``load_state_dict``."""

    path: Path
    metadata_path: Path
    step: int
    metadata: dict[str, Any]
    tensors: dict[str, Tensor] = field(repr=False)

    def _prefixed(self, prefix: str) -> dict[str, Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    @property
    def model_state(self) -> dict[str, Tensor]:
        return self._prefixed("model.")

    @property
    def ema_state(self) -> dict[str, Tensor] | None:
        state = self._prefixed("ema.")
        return state or None

    @property
    def config(self) -> dict[str, Any] | None:
        return self.metadata.get("config")


def write_checkpoint(
    directory: str | os.PathLike, step: int, tensors: dict[str, Tensor], metadata: dict[str, Any]
) -> Path:
    """Write the checkpoint at ``step``: tensors (safetensors) first, then the JSON sidecar.

    Both writes are atomic; the JSON gets ``format``, ``step``, the tensor file's name, size and
    SHA-256 added.  Tensors are copied to CPU and made contiguous (safetensors stores dense,
    unshared buffers).  Returns the tensor file's path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensor_path, json_path = checkpoint_paths(directory, step)
    flat = {k: v.detach().to(device="cpu", copy=True).contiguous() for k, v in tensors.items()}
    blob = _st_save(flat, metadata={"format": FORMAT, "step": str(int(step))})
    atomic_write_bytes(tensor_path, blob)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "tensors_file": tensor_path.name,
        "tensors_bytes": len(blob),
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
        **metadata,
    }
    atomic_write_text(json_path, json.dumps(meta, indent=1) + "\n")
    return tensor_path


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``directory`` (JSON sidecar and tensor file both present), oldest
    first, as tensor-file paths.  A tensor file without its JSON is an interrupted save: skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _JSON_NAME.match(entry.name)
        if match is None:
            continue
        tensor_path = entry.with_suffix(".safetensors")
        if tensor_path.is_file():
            found.append((int(match.group(1)), tensor_path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory`` (tensor-file path), or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def rotate_checkpoints(
    directory: str | os.PathLike, keep: int | None, *, protect: Collection[int | None] = ()
) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (None keeps all) and those whose
    step is in ``protect`` (the run's best step), plus what
    interrupted saves left: temporary files, and tensor files without JSON older than the newest
    complete checkpoint.  Call it from the only process that writes checkpoints.

    The JSON goes first, so a process killed mid-deletion leaves an orphan that is ignored.
    Returns the deleted tensor-file paths.
    """
    directory = Path(directory)
    complete = list_checkpoints(directory)
    removed = []
    old = complete[: max(len(complete) - keep, 0)] if keep is not None else []
    old = [p for p in old if _step_of(p) not in set(protect)]
    for tensor_path in old:
        tensor_path.with_suffix(".json").unlink(missing_ok=True)
        tensor_path.unlink(missing_ok=True)
        removed.append(tensor_path)
    # Temporary files of saves killed mid-write (only one process writes, so none is in flight).
    for entry in directory.glob(".step_*.tmp*"):
        entry.unlink(missing_ok=True)
    if complete:
        newest = _step_of(complete[-1])
        keepers = set(complete)
        for entry in directory.glob("step_*.safetensors"):
            step = _step_of(entry)
            if entry not in keepers and step is not None and step < newest:
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _step_of(path: Path) -> int | None:
    match = re.match(r"^step_(\d+)$", path.stem)
    return int(match.group(1)) if match else None


def _resolve(path_or_dir: str | os.PathLike) -> tuple[Path, Path]:
    path = Path(path_or_dir)
    if path.is_dir():
        directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = latest_checkpoint(directory)
        if latest is None:
            raise FileNotFoundError(
                f"no complete checkpoint (step_*.safetensors + .json) in {str(directory)!r}"
            )
        return latest, latest.with_suffix(".json")
    if path.suffix not in (".safetensors", ".json"):
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
        raise ValueError(
            f"checkpoint path {str(path)!r} must be a .safetensors or .json file or a directory"
        )
    tensor_path, json_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for p in (path, json_path, tensor_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"checkpoint file {str(p)!r} does not exist (a checkpoint needs both the .safetensors and the .json file)"
            )
    return tensor_path, json_path


def read_checkpoint(
    path_or_dir: str | os.PathLike, *, device: torch.device | str | None = None
) -> Checkpoint:
    """Read a checkpoint: a ``.safetensors`` or ``.json`` file, a checkpoint directory, or a run
    directory containing ``checkpoints/`` (the newest complete one is taken).

    Raises ``FileNotFoundError`` naming the missing path, and ``ValueError`` naming the file when
    the JSON is unreadable, is not a scorematch checkpoint, or the tensor file fails its checksum.
    """
    tensor_path, json_path = _resolve(path_or_dir)
    try:
        metadata = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint metadata {str(json_path)!r} is corrupted: {err}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(
            f"{str(json_path)!r} is not a scorematch checkpoint (missing format={FORMAT!r})"
        )
    blob = tensor_path.read_bytes()
    expected = metadata.get("tensors_sha256")
    if len(blob) != metadata.get("tensors_bytes") or hashlib.sha256(blob).hexdigest() != expected:
        raise ValueError(
            f"checkpoint file {str(tensor_path)!r} is corrupted or truncated "
            f"({len(blob)} bytes, expected {metadata.get('tensors_bytes')} with the SHA-256 in "
            f"{json_path.name}); delete both step files to fall back to an older checkpoint"
        )
    try:
        tensors = _st_load(blob)
    except Exception as err:  # safetensors raises its own error type
        raise ValueError(f"checkpoint file {str(tensor_path)!r} is not readable: {err}") from None
    if device is not None:
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return Checkpoint(tensor_path, json_path, int(metadata["step"]), metadata, tensors)


def load_module_state(
    module: nn.Module, state: dict[str, Tensor], source: str | os.PathLike
) -> None:
    """``module.load_state_dict(state)`` with a one-line ``ValueError`` naming ``source`` when the
    keys or shapes differ (a checkpoint of another model)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise ValueError(
            f"checkpoint {str(source)!r} does not match the model: " + ", ".join(parts)
        )
    module.load_state_dict(state, strict=True)


def load_checkpoint(
    path_or_dir: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    ema: bool = True,
    device: torch.device | str | None = None,
) -> Checkpoint:
    """Load a checkpoint written by ``Trainer`` (see ``read_checkpoint`` for accepted paths).

    With ``model``, its weights are replaced by the checkpoint's EMA weights (``ema=True``, the
    ones to sample from; falls back to the raw weights when the run kept no EMA) or by the raw
    weights (``ema=False``).  Returns the ``Checkpoint`` (step, JSON metadata incl. config, tensors).
    Errors: ``FileNotFoundError`` for a missing file, ``ValueError`` for a corrupted file or a
    checkpoint whose tensors do not fit ``model``.
    """
    ckpt = read_checkpoint(path_or_dir, device=device)
    if model is not None:
        state = (ckpt.ema_state if ema else None) or ckpt.model_state
        if not state:
            raise ValueError(f"checkpoint {str(ckpt.path)!r} holds no model weights")
        load_module_state(model, state, ckpt.path)
    return ckpt


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    raise ValueError(
        f"cannot store optimizer value {value!r} of type {type(value).__name__} ({where}) in a checkpoint"
    )


def flatten_optimizer_state(
    state_dict: dict[str, Any], prefix: str = "optim."
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors ``{prefix}state.<param index>.<key>`` and a
    JSON-able dict holding the non-tensor state values and the ``param_groups``."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}state.{int(index)}.{key}"] = value
            else:
                scalars.setdefault(str(int(index)), {})[key] = _jsonable(
                    value, f"state {index}.{key}"
                )
    groups = [_jsonable(g, "param_groups") for g in state_dict["param_groups"]]
    return tensors, {"state": scalars, "param_groups": groups}


def unflatten_optimizer_state(
    tensors: dict[str, Tensor], meta: dict[str, Any], prefix: str = "optim."
) -> dict[int, dict[str, Any]]:
    """Inverse of ``flatten_optimizer_state`` for the per-parameter ``state`` part."""
    state: dict[int, dict[str, Any]] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}state\.(\d+)\.(.+)$")
    for name, value in tensors.items():
        match = pattern.match(name)
        if match:
            state.setdefault(int(match.group(1)), {})[match.group(2)] = value
    for index, entries in meta.get("state", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return state


def config_hash(config: dict[str, Any] | None) -> str | None:
    """SHA-256 of the config's canonical JSON (sorted keys), or None without a config."""
    if config is None:
        return None
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_changes(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two JSON-like configs differ (``""`` stands for the whole config)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [
            key
            for k in sorted(set(saved) | set(now), key=str)
            for key in config_changes(saved.get(k), now.get(k), f"{prefix}{k}.")
        ]
    return [] if saved == now else [prefix.rstrip(".")]


def scorematch_version() -> str:
    """The installed package's version (stored in checkpoints), or ``"unknown"``."""
    try:
        return version("scorematch")
    except PackageNotFoundError:
        return "unknown"
