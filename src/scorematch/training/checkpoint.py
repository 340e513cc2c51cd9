"""Checkpoints as safetensors + a JSON sidecar: no pickle, loadable without the source tree.

A checkpoint at step N is two files in one directory::

    step_0000000N.safetensors   every tensor: "model.*", "ema.*", "optim.state.<i>.<key>"
    step_0000000N.json          everything else: step, config, RNG states, optimizer scalars, ...

The tensor file is written first and the JSON last, each atomically (``scorematch.io``).  The JSON
records the tensor file's size and SHA-256 and, last, the hash of its own content.  A checkpoint
*exists* only when its JSON exists, so a process killed mid-save never leaves a half-written
"latest" checkpoint; a file damaged or edited later is caught by ``read_checkpoint_files`` and
reported as a ``CheckpointDamaged`` (a ``ValueError``) naming the file and the field.  An existing
tensor file is never overwritten.  Which checkpoint of a folder to use — the newest good one — is
``recovery``'s business; what a ``Trainer`` stores is in ``train_state``.

Besides the format (write, read and check, list, latest, rotate) this module holds the config's
hash and the keys at which two configs differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    "CheckpointDamaged",
    "checkpoint_pair",
    "checkpoint_paths",
    "config_changes",
    "config_hash",
    "latest_checkpoint",
    "list_checkpoints",
    "load_module_state",
    "move_aside",
    "read_checkpoint_files",
    "rotate_checkpoints",
    "scorematch_version",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

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


class CheckpointDamaged(ValueError):
    """A checkpoint whose files are unreadable, fail their checksums, lack a field or disagree
    with each other.  ``path`` is the tensor file; an older checkpoint can stand in for it
    (``recovery.choose_checkpoint``)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def _canonical(meta: dict[str, Any]) -> bytes:
    # The text a sidecar's hash covers: its JSON as reloaded (int keys become strings), keys sorted.
    body = {k: v for k, v in json.loads(json.dumps(meta)).items() if k != "metadata_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _existing_blob(tensor_path: Path, flat: dict[str, Tensor], step: str) -> bytes | None:
    """Never overwrite a tensor file: the bytes already at ``tensor_path`` when they hold exactly
    ``flat`` at ``step`` (a resumed run re-saving an interrupted save; safetensors orders its
    header freely, so the bytes themselves may differ), else None — and a file holding other
    tensors is first moved aside, with its sidecar, as ``*.superseded``."""
    if not tensor_path.exists():
        return None
    blob = tensor_path.read_bytes()
    try:
        old = _st_load(blob)
        same = _header_step(blob) == step and old.keys() == flat.keys()
        same = same and all(
            old[k].dtype == v.dtype and torch.equal(old[k], v) for k, v in flat.items()
        )
    except Exception:  # not a readable safetensors file: certainly not these tensors
        same = False
    if same:
        return blob
    moved = [move_aside(p, ".superseded") for p in (tensor_path, tensor_path.with_suffix(".json"))]
    names = " and ".join(m.name for m in moved if m is not None)
    logger.warning("%s already held other tensors: kept as %s", tensor_path, names)
    return None


def move_aside(path: Path, suffix: str) -> Path | None:
    """Rename ``path`` to ``path + suffix`` (``-2``, ``-3``, … when taken); None when ``path``
    is gone (another process removed it)."""
    target, n = path.with_name(path.name + suffix), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{suffix}-{n}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    return target


def write_checkpoint(
    directory: str | os.PathLike, step: int, tensors: dict[str, Tensor], metadata: dict[str, Any]
) -> Path:
    """Write the checkpoint at ``step``: tensors (safetensors) first, then the JSON sidecar.

    Both writes are atomic; the JSON gets ``format``, ``step``, the tensor file's name, size and
    SHA-256 added, and last ``metadata_sha256``, the hash of everything else in it (so an edited
    or damaged sidecar is detected).  An existing tensor file is never overwritten (see
    ``_existing_blob``).  Tensors are copied to CPU and made contiguous (safetensors stores dense,
    unshared buffers).  Returns the tensor file's path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensor_path, json_path = checkpoint_paths(directory, step)
    flat = {k: v.detach().to(device="cpu", copy=True).contiguous() for k, v in tensors.items()}
    blob = _existing_blob(tensor_path, flat, str(int(step)))
    if blob is None:
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
    meta["metadata_sha256"] = hashlib.sha256(_canonical(meta)).hexdigest()
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
    directory: str | os.PathLike, keep: int | None, *, protect: Collection[int] = ()
) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints (None keeps all) and those at the
    steps in ``protect`` (e.g. the best one on validation), plus what interrupted saves left:
    temporary files, and tensor files without JSON older than the newest complete checkpoint.
    Call it from the only process that writes checkpoints, after the newest one was verified.

    The JSON goes first, so a process killed mid-deletion leaves an orphan that is ignored.
    Returns the deleted tensor-file paths.
    """
    directory = Path(directory)
    complete = list_checkpoints(directory)
    removed = []
    old = complete[: max(len(complete) - keep, 0)] if keep is not None else []
    for tensor_path in old:
        if _step_of(tensor_path) in protect:
            continue
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


def checkpoint_pair(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(tensor file, JSON sidecar)`` of the checkpoint that ``path`` (either file) names;
    ``FileNotFoundError`` naming the one that is missing."""
    path = Path(path)
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


def _field(meta: dict[str, Any], json_path: Path, name: str, kind: type, check=None) -> Any:
    value = meta.get(name)
    ok = isinstance(value, kind) and not isinstance(value, bool) and (check is None or check(value))
    if not ok:
        got = "it is missing" if name not in meta else f"got {value!r:.60}"
        raise CheckpointDamaged(
            json_path.with_suffix(".safetensors"),
            f"checkpoint metadata {str(json_path)!r}: field {name!r} is damaged ({got})",
        )
    return value


def _header_step(blob: bytes) -> str | None:
    """The step a safetensors file records in its own header (``__metadata__``), if readable."""
    try:
        size = int.from_bytes(blob[:8], "little")
        return json.loads(blob[8 : 8 + size])["__metadata__"]["step"]
    except (ValueError, KeyError, TypeError):
        return None


def read_checkpoint_files(
    path: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    load_tensors: bool = True,
) -> Checkpoint:
    """Read and check the checkpoint that ``path`` (its ``.safetensors`` or ``.json`` file) names.

    Checks, each failing with a ``CheckpointDamaged`` (a ``ValueError``) naming the file and the
    field: the JSON parses and is a scorematch checkpoint; ``step``, ``tensors_bytes`` and
    ``tensors_sha256`` are well formed; the sidecar's own hash (``metadata_sha256``, when written
    by this version); the tensor file's size and SHA-256; and the step, as the file name, the
    sidecar and the tensor file's header each state it, agrees.  ``load_tensors=False`` verifies
    without building the tensors (``tensors`` is then empty).
    """
    tensor_path, json_path = checkpoint_pair(path)
    try:
        metadata = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointDamaged(
            tensor_path, f"checkpoint metadata {str(json_path)!r} is corrupted: {err}"
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointDamaged(
            tensor_path,
            f"{str(json_path)!r} is not a scorematch checkpoint (missing format={FORMAT!r})",
        )
    step = _field(metadata, json_path, "step", int, lambda v: v >= 0)
    size = _field(metadata, json_path, "tensors_bytes", int, lambda v: v >= 0)
    digest = _field(metadata, json_path, "tensors_sha256", str, lambda v: len(v) == 64)
    sealed = metadata.get("metadata_sha256")
    if sealed is not None and sealed != hashlib.sha256(_canonical(metadata)).hexdigest():
        raise CheckpointDamaged(
            tensor_path,
            f"checkpoint metadata {str(json_path)!r} was changed after it was written "
            "(its metadata_sha256 does not match its content)",
        )
    blob = tensor_path.read_bytes()
    if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
        what = f"{len(blob)} bytes, expected {size}" if len(blob) != size else "same size"
        raise CheckpointDamaged(
            tensor_path,
            f"checkpoint file {str(tensor_path)!r} is corrupted or truncated ({what}; its "
            f"SHA-256 differs from the one in {json_path.name})",
        )
    named, inside = _step_of(tensor_path), _header_step(blob)
    if (named is not None and named != step) or (inside is not None and inside != str(step)):
        raise CheckpointDamaged(
            tensor_path,
            f"checkpoint {str(tensor_path)!r}: the steps disagree (file name {named}, "
            f"{json_path.name} field 'step' {step}, tensor file {inside})",
        )
    tensors: dict[str, Tensor] = {}
    if load_tensors:
        try:
            tensors = _st_load(blob)
        except Exception as err:  # safetensors raises its own error type
            raise CheckpointDamaged(
                tensor_path, f"checkpoint file {str(tensor_path)!r} is not readable: {err}"
            ) from None
    if device is not None:
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return Checkpoint(tensor_path, json_path, step, metadata, tensors)


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
