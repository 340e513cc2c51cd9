"""Where to compute: the device a user names (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``),
checked to exist on this machine, and the default number of CPU threads.

Nothing else in the package chooses a device: tensors follow their inputs, models follow their
parameters, and the command line passes ``resolve_device(--device)`` down.  Under ``torchrun``
(``WORLD_SIZE`` > 1 in the environment) each process computes on its own GPU,
``cuda:LOCAL_RANK``; a bare ``cuda`` (or ``auto`` on a CUDA machine) resolves to it.
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICE_CHOICES", "default_threads", "resolve_device"]

DEVICE_CHOICES = "auto|cpu|cuda|cuda:N|mps"


def _under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` that ``spec`` names, or a one-line ``ValueError`` when it is unknown
    or absent here.  ``"auto"`` (and None): CUDA when available, else the CPU."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {spec!r}; expected one of {DEVICE_CHOICES}")
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device {text!r}: MPS is not available here; use --device cpu or auto"
            )
        if _under_torchrun():
            raise ValueError(
                "device 'mps' under torchrun: no process-group backend; use one process"
            )
        return device
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {text!r}: CUDA is not available here (torch {torch.__version__}); "
            "use --device cpu or auto"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index is None:
        index = local if _under_torchrun() else torch.cuda.current_device()
        device = torch.device("cuda", index)
    elif _under_torchrun() and device.index != local:
        raise ValueError(
            f"device {text!r} under torchrun: each process uses cuda:LOCAL_RANK; pass --device "
            "cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )
    if device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def default_threads() -> int:
    """CPU threads for torch's operations unless told: ``OMP_NUM_THREADS`` when it is set to a
    positive integer (torchrun sets 1 per process), else 1.

    On a busy machine extra intra-op threads made training several times slower — their
    spin-waits compete with the other work — and on a quiet one they were about as fast for these
    networks (``benchmarks/results/scale.md``, ``benchmarks/results/design_choices.md``).  One
    thread never collapses; a big network on an idle machine gains from ``--threads N``.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return 1
