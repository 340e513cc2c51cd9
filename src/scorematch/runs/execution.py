"""Where and how a run computes: the device and torchrun's process group (``start``), the training
settings a run's config records (``record_execution``; ``build.training_settings`` hands them to
the ``Trainer``), and the rule that picks DDP or the explicit all-reduce (``first_order``).

A run's ``config.yaml`` records, in its ``training`` section, where it trained (``device``: the
device, or under torchrun its type, each rank having used ``cuda:LOCAL_RANK``), on how many
processes (``world_size``) and how (``precision``, ``compile``, ``grad_accum``).  A resumed run
keeps its recorded precision, compilation and accumulation unless told otherwise, and may change
all five (``EXECUTION_KEYS``); loading a run for sampling never reads them, so a run trained
on a GPU samples on a CPU-only machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .._checks import check_positive_int
from ..devices import resolve_device
from ..training.distributed import barrier, join_process_group
from ..training.precision import PRECISIONS
from .checks import choice

__all__ = [
    "EXECUTION_KEYS",
    "FIRST_ORDER",
    "Execution",
    "finish",
    "first_order",
    "record_execution",
    "start",
]

# Objectives whose loss back-propagates once through the network (no derivative of the network
# inside the loss): DDP's hooks fire and torch.compile applies.  ISM, SSM and SSM-VR differentiate
# the network with respect to its input inside the loss, as does any energy model (s = −∇ₓE).
FIRST_ORDER = ("dsm", "esm", "ncsn", "diffusion", "edm")
DEFAULT_EXECUTION = {"precision": "fp32", "compile": False, "grad_accum": 1}
# The keys of the config's training section that record where and how a run computes.
EXECUTION_KEYS = ("device", "world_size", "precision", "compile", "grad_accum")


@dataclass(frozen=True)
class Execution:
    """This process's device, the number of processes and its rank (1 and 0 without torchrun)."""

    device: torch.device
    world_size: int = 1
    rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank got here (nothing without torchrun)."""
        barrier(self.world_size)


def start(device: str | torch.device | None = "auto") -> Execution:
    """Resolve ``device`` (see ``scorematch.devices.resolve_device``) and, under torchrun, join
    the process group from its environment (Gloo on CPU, NCCL on CUDA)."""
    return Execution(*join_process_group(resolve_device(device)))


def finish() -> None:
    """Leave torchrun's process group, if this process joined one (at the end of a command: NCCL
    warns about a group left open at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def first_order(config: Mapping[str, Any]) -> bool:
    """True when the run's loss back-propagates once through its network (DDP, compile)."""
    return config["objective"]["name"] in FIRST_ORDER and config["model"]["name"] != "energy-mlp"


def record_execution(
    config: dict[str, Any],
    execution: Execution,
    *,
    precision: str | None = None,
    compile: bool | None = None,
    grad_accum: int | None = None,
    resume: bool = False,
) -> None:
    """Write where and how the run trains into ``config["training"]``; None keeps the run's
    recorded value on resume (else the default: fp32, no compile, 1 micro-batch)."""
    tr = config["training"]
    given = {"precision": precision, "compile": compile, "grad_accum": grad_accum}
    for key, value in given.items():
        if value is None:
            value = tr.get(key, DEFAULT_EXECUTION[key]) if resume else DEFAULT_EXECUTION[key]
        tr[key] = value
    tr["precision"] = choice(tr["precision"], "precision", PRECISIONS)
    tr["grad_accum"] = check_positive_int(tr["grad_accum"], "grad_accum")
    if not isinstance(tr["compile"], bool):
        raise ValueError(f"compile must be true or false, got {tr['compile']!r}")
    if tr["compile"] and not first_order(config):
        what = "an energy model" if config["model"]["name"] == "energy-mlp" else "this objective"
        raise ValueError(
            f"--compile applies to the first-order objectives ({', '.join(FIRST_ORDER)}); "
            f"{config['objective']['name']} with {what} differentiates the network twice, which "
            "torch.compile does not support"
        )
    device = execution.device
    tr["device"] = str(device) if execution.world_size == 1 else device.type
    tr["world_size"] = execution.world_size
