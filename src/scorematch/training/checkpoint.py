"""Checkpoints: the file format, its integrity checks, and the choice of a checkpoint past damage.

A checkpoint at step N is two files in one directory, safetensors and JSON — no pickle, loadable
without the source tree::

    step_0000000N.safetensors   every tensor: "model.*", "ema.*", "optim.state.<i>.<key>"
    step_0000000N.json          everything else: step, config, RNG states, optimizer scalars, ...

``write_checkpoint`` stores a train state (``TrainState.state_dict()``: a nested dict of its
parts' state dicts, see ``train_state``) in that layout, and ``Checkpoint.train_state()`` gives it
back.  The tensor file is written first and the JSON last, each atomically (``scorematch.io``).
The JSON records the tensor file's size and SHA-256 and, last, the hash of its own content.  A
checkpoint *exists* only when its JSON exists, so a process killed mid-save never leaves a
half-written "latest" checkpoint; a file damaged or edited later is caught when it is read and
reported as a ``CheckpointDamaged`` (a ``ValueError``) naming the file and the field.  An existing
tensor file is never overwritten, and a save is read back before rotation deletes anything.

Reading a folder (``read_checkpoint``, ``choose_checkpoint``) gives its newest *good* checkpoint:
a run's ``checkpoints/`` can hold more than complete, intact pairs — a tensor file whose sidecar
was never written (a save killed in between) or was lost, a sidecar without its tensor file, and
pairs damaged on disk or edited by hand.  The complete pairs are checked newest first; a damaged
pair is moved aside as ``*.corrupt`` (so that no later command trips over it again, and nothing is
deleted), and whenever the one used is not simply the newest step file, one warning line names it
and says why.  A file named explicitly is read exactly, without fallback.

Verbs: *write* (a train state to disk), *read* (files to a checked ``Checkpoint``), *choose* (the
newest good one of a folder), *load* (weights into a module, ``load_weights``/``load_checkpoint``).
Besides, the config's hash and the keys at which two configs differ.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor, nn

from ..io import atomic_write_bytes, atomic_write_text
from ..run_dir import RunDir
from .metrics_log import MetricsWindow

__all__ = [
    "RESUME_FIELDS",
    "Checkpoint",
    "CheckpointDamaged",
    "check_resumable",
    "checkpoint_paths",
    "choose_checkpoint",
    "config_changes",
    "config_hash",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "no_checkpoint_note",
    "read_checkpoint",
    "rotate_checkpoints",
    "scorematch_version",
    "verify_checkpoint",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT = "scorematch-checkpoint"
FORMAT_VERSION = 1
_JSON_NAME = re.compile(r"^step_(\d{8,})\.json$")
_STEP_FILE = re.compile(r"^step_(\d+)\.(safetensors|json)$")
# Where the train state's parts go: module weights into the tensor file under a prefix, the
# optimizer's tensors under "optim." (its scalars in the JSON), every other part into the JSON,
# under its own name unless listed here.
_TENSOR_PARTS = {"model": "model.", "ema": "ema."}
_OPTIMIZER = "optim."
_JSON_NAMES = {"data_order": "sampler"}
_JSON_PARTS = (
    "rng",
    "world_size",
    "data_order",
    "validation",
    "step_engine",
    "metrics_window",
    "elapsed_seconds",
)
# JSON fields without which a checkpoint cannot resume a Trainer (``check_resumable``).
RESUME_FIELDS = ("rng", "optimizer", "metrics_window", "elapsed_seconds")


def checkpoint_paths(directory: str | os.PathLike, step: int) -> tuple[Path, Path]:
    """The ``(tensor file, JSON sidecar)`` paths of the checkpoint at ``step`` in ``directory``."""
    stem = Path(directory) / f"step_{int(step):08d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


@dataclass
class Checkpoint:
    """A read checkpoint: its files, step, JSON metadata and every stored tensor (on CPU unless a
    device was asked for).  ``model_state`` / ``ema_state`` are ready for ``load_state_dict``;
    ``train_state()`` is the nested state ``TrainState.load_state_dict`` takes."""

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
        return self._prefixed(_TENSOR_PARTS["model"])

    @property
    def ema_state(self) -> dict[str, Tensor] | None:
        state = self._prefixed(_TENSOR_PARTS["ema"])
        return state or None

    @property
    def config(self) -> dict[str, Any] | None:
        return self.metadata.get("config")

    def train_state(self) -> dict[str, Any]:
        """The train state this checkpoint holds, as ``TrainState.state_dict()`` gave it (parts
        absent from older checkpoints are None; ``world_size`` defaults to 1)."""
        meta = self.metadata
        state: dict[str, Any] = {"step": self.step}
        state.update(
            {part: self._prefixed(prefix) or None for part, prefix in _TENSOR_PARTS.items()}
        )
        optim = meta.get("optimizer") or {}
        state["optimizer"] = {
            "state": _unflatten_optimizer(self.tensors, optim),
            "param_groups": optim.get("param_groups", []),
        }
        for part in _JSON_PARTS:
            state[part] = meta.get(_JSON_NAMES.get(part, part))
        if state["world_size"] is None:
            state["world_size"] = 1
        return state


class CheckpointDamaged(ValueError):
    """A checkpoint whose files are unreadable, fail their checksums, lack a field or disagree
    with each other.  ``path`` is the tensor file; an older checkpoint can stand in for it
    (``choose_checkpoint``)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def _canonical(meta: dict[str, Any]) -> bytes:
    # The text a sidecar's hash covers: its JSON as reloaded (int keys become strings), keys sorted.
    body = {k: v for k, v in json.loads(json.dumps(meta)).items() if k != "metadata_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


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


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors ``optim.state.<param index>.<key>`` and a
    JSON-able dict of the non-tensor state values and the ``param_groups``: ``torch.optim``
    state dicts mix tensors (AdamW's moments) with plain values (step counts on some versions)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{_OPTIMIZER}state.{int(index)}.{key}"] = value
            else:
                scalars.setdefault(str(int(index)), {})[key] = _jsonable(
                    value, f"state {index}.{key}"
                )
    groups = [_jsonable(g, "param_groups") for g in state_dict["param_groups"]]
    return tensors, {"state": scalars, "param_groups": groups}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[int, dict]:
    """Inverse of ``_flatten_optimizer`` for the per-parameter ``state`` part."""
    state: dict[int, dict[str, Any]] = {}
    pattern = re.compile(rf"^{re.escape(_OPTIMIZER)}state\.(\d+)\.(.+)$")
    for name, value in tensors.items():
        match = pattern.match(name)
        if match:
            state.setdefault(int(match.group(1)), {})[match.group(2)] = value
    for index, entries in meta.get("state", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return state


def _split_state(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A train state's tensors (for safetensors) and its other fields (for the JSON sidecar)."""
    tensors: dict[str, Tensor] = {}
    for part, prefix in _TENSOR_PARTS.items():
        tensors.update({f"{prefix}{k}": v for k, v in state[part].items()})
    optim_tensors, optim_json = _flatten_optimizer(state["optimizer"])
    tensors.update(optim_tensors)
    fields = {_JSON_NAMES.get(part, part): state[part] for part in _JSON_PARTS if part in state}
    fields["optimizer"] = optim_json
    return tensors, fields


def write_checkpoint(
    directory: str | os.PathLike,
    state: dict[str, Any],
    *,
    record: dict[str, Any] | None = None,
    keep: int | None = None,
    protect: Collection[int] = (),
) -> Path:
    """Write the train state ``state`` (``TrainState.state_dict()``) as the checkpoint at its
    step, read it back, and only then keep the newest ``keep`` checkpoints (None: all) and those
    at the steps in ``protect``.  ``record`` adds descriptive JSON fields (config, settings).

    Tensors (safetensors) first, then the JSON sidecar, both atomic; the JSON gets ``format``,
    ``step``, the tensor file's name, size and SHA-256, the versions and the time, and last
    ``metadata_sha256``, the hash of everything else in it.  An existing tensor file is never
    overwritten (see ``_existing_blob``).  Tensors are copied to CPU and made contiguous.  A
    failed write (disk full) or read-back is an ``OSError`` naming the file and the checkpoint
    kept.  Call it from the one process that writes checkpoints.  Returns the tensor file's path.
    """
    directory = Path(directory)
    step = int(state["step"])
    tensors, fields = _split_state(state)
    metadata = {
        **(record or {}),
        **fields,
        "scorematch_version": scorematch_version(),
        "torch_version": torch.__version__,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = checkpoint_paths(directory, step)[0]
    try:
        _write_files(directory, step, tensors, metadata)
        # Read back what the disk now holds before rotation may delete an older checkpoint.
        verify_checkpoint(path)
    except (OSError, CheckpointDamaged) as err:
        raise _save_failed(directory, path, err) from err
    rotate_checkpoints(directory, keep, protect=protect)
    logger.info("saved checkpoint %s", path)
    return path


def _save_failed(directory: Path, path: Path, err: Exception) -> OSError:
    """An ``OSError`` naming the checkpoint that could not be written (or did not read back
    intact: then moved aside as ``*.corrupt``) and the newest complete one that is kept."""
    if isinstance(err, CheckpointDamaged):
        for p in (path, path.with_suffix(".json")):
            _move_aside(p, ".corrupt")
    kept = latest_checkpoint(directory)
    what = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return OSError(
        getattr(err, "errno", None) or errno.EIO,
        f"could not save checkpoint {path}: {what}; the newest checkpoint kept is "
        f"{kept if kept is not None else 'none'}",
    )


def _write_files(
    directory: Path, step: int, tensors: dict[str, Tensor], metadata: dict[str, Any]
) -> Path:
    """The two files of the checkpoint at ``step``: tensors first, then the sealed sidecar."""
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
    moved = [_move_aside(p, ".superseded") for p in (tensor_path, tensor_path.with_suffix(".json"))]
    names = " and ".join(m.name for m in moved if m is not None)
    logger.warning("%s already held other tensors: kept as %s", tensor_path, names)
    return None


def _move_aside(path: Path, suffix: str) -> Path | None:
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


def _checkpoint_pair(path: str | os.PathLike) -> tuple[Path, Path]:
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


def verify_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Check the checkpoint that ``path`` names without building its tensors (``tensors`` is
    empty): how a save reads back what the disk holds."""
    return _read_files(path, load_tensors=False)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_resumable(ckpt: Checkpoint) -> None:
    """Check the sidecar fields a resume reads (``RESUME_FIELDS``) before any is used: a
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
        "metrics_window": MetricsWindow.is_valid,
        "elapsed_seconds": lambda v: _is_number(v) and v >= 0,
    }
    for key in RESUME_FIELDS:
        if key not in meta:
            problem = "is missing: it was not written by Trainer"
        elif not checks[key](meta[key]):
            problem = f"is damaged (got {meta[key]!r:.60})"
        else:
            continue
        raise CheckpointDamaged(
            ckpt.path, f"checkpoint metadata {str(ckpt.metadata_path)!r}: field {key!r} {problem}"
        )


def _read_files(
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
    tensor_path, json_path = _checkpoint_pair(path)
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


# ------------------------------------------------------------------------------------------------
# Choosing and loading
# ------------------------------------------------------------------------------------------------
def _step_files(directory: Path) -> dict[int, set[str]]:
    """Step → the suffixes (``safetensors``, ``json``) present for it in ``directory``."""
    found: dict[int, set[str]] = {}
    if directory.is_dir():
        for entry in directory.iterdir():
            match = _STEP_FILE.match(entry.name)
            if match:
                found.setdefault(int(match.group(1)), set()).add(match.group(2))
    return found


def _incomplete(files: dict[int, set[str]], above: int) -> list[str]:
    """Why the step files newer than ``above`` are no checkpoint: one phrase each."""
    notes = []
    for step in sorted((s for s in files if s > above), reverse=True):
        name = f"step_{step:08d}"
        if files[step] == {"safetensors"}:
            notes.append(
                f"{name}.safetensors has no .json sidecar (an interrupted save or a lost file)"
            )
        elif files[step] == {"json"}:
            notes.append(f"{name}.json has no .safetensors tensor file")
    return notes


def choose_checkpoint(
    directory: str | os.PathLike,
    *,
    resumable: bool = False,
    quarantine: bool = True,
    device: torch.device | str | None = None,
) -> Checkpoint | None:
    """The newest good checkpoint in ``directory`` (read, tensors loaded), or None when there is
    none; with ``resumable``, one that a ``Trainer`` can resume from (``check_resumable``).

    A pair that fails its checks (``CheckpointDamaged``) is moved aside as
    ``step_N.safetensors.corrupt`` + ``step_N.json.corrupt`` when ``quarantine`` (only the one
    process that writes the folder, or a reader, should; never two ranks at once) and the next
    older one is tried.  A pair that vanishes while being read (rotated away by a running training)
    is skipped.  One warning line says which checkpoint is used and why whenever it is not the
    newest step file in the folder (or, when none is good, what was damaged).
    """
    directory = Path(directory)
    files = _step_files(directory)
    damaged: list[str] = []
    chosen: Checkpoint | None = None
    for tensor_path in reversed(list_checkpoints(directory)):
        try:
            ckpt = _read_files(tensor_path, device=device)
            if resumable:
                check_resumable(ckpt)
        except FileNotFoundError:
            continue
        except CheckpointDamaged as err:
            moved = ""
            if quarantine:
                names = [
                    _move_aside(p, ".corrupt")
                    for p in (tensor_path, tensor_path.with_suffix(".json"))
                ]
                moved = "; moved aside as " + " and ".join(p.name for p in names if p is not None)
            damaged.append(f"{tensor_path.stem} is damaged ({err}){moved}")
            continue
        chosen = ckpt
        break
    if chosen is not None:
        reasons = _incomplete(files, chosen.step) + damaged
        if reasons:
            logger.warning(
                "using checkpoint %s, not the newest: %s", chosen.path, "; ".join(reasons)
            )
    elif damaged:  # what else is there (orphans) the caller says: ``no_checkpoint_note``
        logger.warning("no good checkpoint left in %s: %s", directory, "; ".join(damaged))
    return chosen


def no_checkpoint_note(directory: str | os.PathLike) -> str:
    """The line a resume prints when it starts from step 0: where it looked and what it found."""
    directory = Path(directory)
    if not directory.is_dir():
        return f"{directory} does not exist: no checkpoint to resume from, training from step 0"
    kept = sorted(
        p.name for p in directory.iterdir() if p.name.endswith((".corrupt", ".safetensors"))
    )
    found = f" (found only {', '.join(kept[:4])}{', …' if len(kept) > 4 else ''}; kept as they are)"
    return f"no complete checkpoint in {directory}{found if kept else ''}: training from step 0"


def read_checkpoint(
    path_or_dir: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    resumable: bool = False,
    quarantine: bool = True,
) -> Checkpoint:
    """Read a checkpoint: a ``.safetensors`` or ``.json`` file (exactly that one, checked), a
    checkpoint folder or a run folder containing ``checkpoints/`` (the newest good one, see
    ``choose_checkpoint``: damaged ones are moved aside and said so).  ``resumable``: also check
    the fields a resume reads.

    Raises ``FileNotFoundError`` naming the missing path or the folder without a good checkpoint,
    and ``ValueError`` (``CheckpointDamaged``) naming the file and field for a damaged file.
    """
    path = Path(path_or_dir)
    if not path.is_dir():
        ckpt = _read_files(path, device=device)
        if resumable:
            check_resumable(ckpt)
        return ckpt
    run_dir = RunDir(path)
    directory = run_dir.checkpoints if run_dir.checkpoints.is_dir() else path
    ckpt = choose_checkpoint(directory, resumable=resumable, quarantine=quarantine, device=device)
    if ckpt is None:
        raise FileNotFoundError(
            f"no complete checkpoint (step_*.safetensors + .json) in {str(directory)!r}"
        )
    return ckpt


def load_weights(module: nn.Module, state: dict[str, Tensor], source: str | os.PathLike) -> None:
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
        load_weights(model, state, ckpt.path)
    return ckpt


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
