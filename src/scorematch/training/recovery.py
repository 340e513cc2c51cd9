"""Which checkpoint to load: the newest good one, past damage, and said out loud when it is not
simply the newest.

A run's ``checkpoints/`` folder can hold more than complete, intact pairs: a tensor file whose
sidecar was never written (a save killed in between) or was lost, a sidecar without its tensor
file, and pairs damaged on disk or edited by hand.  ``choose_checkpoint`` walks the complete pairs
newest first, checks each fully (``read_checkpoint_files``), moves a damaged pair aside as
``*.corrupt`` (so that no later command trips over it again, and nothing is deleted) and returns
the first good one.  Whenever that is not the newest step file in the folder it logs one warning
line naming the checkpoint used and why: damage, a missing sidecar or a missing tensor file.

``read_checkpoint`` and ``load_checkpoint`` accept a file, a checkpoint folder or a run folder and
use this choice for the folders.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .checkpoint import (
    Checkpoint,
    CheckpointDamaged,
    list_checkpoints,
    load_module_state,
    move_aside,
    read_checkpoint_files,
)

__all__ = [
    "checkpoint_dir",
    "choose_checkpoint",
    "load_checkpoint",
    "no_checkpoint_note",
    "read_checkpoint",
]

logger = logging.getLogger(__name__)

_STEP_FILE = re.compile(r"^step_(\d+)\.(safetensors|json)$")


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint folder of ``path``: ``path/checkpoints`` for a run folder, else ``path``."""
    path = Path(path)
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


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
    quarantine: bool = True,
    check: Callable[[Checkpoint], None] | None = None,
    device: torch.device | str | None = None,
) -> Checkpoint | None:
    """The newest good checkpoint in ``directory`` (read, tensors loaded), or None when there is
    none.

    A pair that fails its checks (``CheckpointDamaged``; also from ``check``, which may add the
    checks of a particular reader, e.g. the fields a resume needs) is moved aside as
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
            ckpt = read_checkpoint_files(tensor_path, device=device)
            if check is not None:
                check(ckpt)
        except FileNotFoundError:
            continue
        except CheckpointDamaged as err:
            moved = ""
            if quarantine:
                names = [
                    move_aside(p, ".corrupt")
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
    path_or_dir: str | os.PathLike, *, device: torch.device | str | None = None
) -> Checkpoint:
    """Read a checkpoint: a ``.safetensors`` or ``.json`` file (exactly that one, checked), a
    checkpoint folder or a run folder containing ``checkpoints/`` (the newest good one, see
    ``choose_checkpoint``: damaged ones are moved aside and said so).

    Raises ``FileNotFoundError`` naming the missing path or the folder without a good checkpoint,
    and ``ValueError`` (``CheckpointDamaged``) naming the file and field for a damaged file.
    """
    path = Path(path_or_dir)
    if not path.is_dir():
        return read_checkpoint_files(path, device=device)
    directory = checkpoint_dir(path)
    ckpt = choose_checkpoint(directory, device=device)
    if ckpt is None:
        raise FileNotFoundError(
            f"no complete checkpoint (step_*.safetensors + .json) in {str(directory)!r}"
        )
    return ckpt


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
