"""The ``torch.distributed`` helpers of data-parallel training: set-up, per-rank seeds, the
all-reduce of gradients and of scalars, broadcast and gather.

Under ``torchrun`` each rank trains on its slice of every global batch and the gradients are
averaged over ranks before clipping, in one of two ways chosen by ``training.step``: a
first-order loss (one ordinary backward pass: DSM, NCSN, continuous DSM, EDM) trains through a
``DistributedDataParallel`` wrapper, whose bucketed all-reduce overlaps the backward pass; a loss
that differentiates the model itself (``torch.func`` or create-graph autograd: ISM, SSM, energy
models), where DDP's hooks do not fire (pytorch/pytorch issues #102197, #182661), gets the plain
module and ``average_gradients`` after backward: one all-reduce per dtype.  Every helper is a
no-op (or the identity) with a world size of 1.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._checks import model_device

__all__ = [
    "average_gradients",
    "barrier",
    "broadcast_module",
    "gather",
    "init_distributed",
    "join_process_group",
    "mean_over_ranks",
    "mix_seed",
    "rank_seed",
    "ranks",
]


def mix_seed(*parts: object) -> int:
    """A well-mixed 63-bit seed from several parts (seed, stream name, epoch, rank, ...):
    the first 8 bytes of blake2b("part0/part1/...")."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def rank_seed(seed: int, stream: str, rank: int) -> int:
    """Seed of the random ``stream`` on ``rank``: rank 0 uses ``seed`` itself, so a
    single-process run is seeded exactly by ``seed``; other ranks get independent streams."""
    return seed if rank == 0 else mix_seed(seed, stream, rank)


def _active() -> bool:
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    return dist.is_available() and (dist.is_initialized() or env_world > 1)


def join_process_group(device: torch.device | str) -> tuple[torch.device, int, int]:
    """Join the process group when ``torch.distributed`` is initialised or ``WORLD_SIZE > 1``
    (as under ``torchrun``, whose environment gives the rendezvous); returns ``(device,
    world_size, rank)``.  The backend is NCCL on CUDA and Gloo otherwise; on CUDA the device
    becomes the current one.  Without torchrun: ``(device, 1, 0)``."""
    device = torch.device(device)
    active = _active()
    if active and device.type == "cuda":
        torch.cuda.set_device(device)
    if active and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return (device, *ranks())


def init_distributed(
    model: nn.Module, device: torch.device | str | None
) -> tuple[torch.device, int, int]:
    """``join_process_group`` for a model: the device defaults to the model's, and on CUDA under
    torchrun to ``cuda:LOCAL_RANK``."""
    if device is None:
        device = model_device(model)[0]
        if _active() and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return join_process_group(device)


def ranks() -> tuple[int, int]:
    """``(world_size, rank)`` of the initialised process group; ``(1, 0)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def broadcast_module(module: nn.Module, world_size: int, src: int = 0) -> None:
    """Overwrite every rank's parameters and buffers with those of rank ``src``."""
    if world_size > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def mean_over_ranks(value: Tensor, world_size: int) -> float:
    """The mean of a scalar over ranks (one all-reduce in float64)."""
    if world_size == 1:
        return float(value)
    buf = value.detach().reshape(1).to(torch.float64)
    dist.all_reduce(buf)
    return float(buf) / world_size


def average_gradients(params: Sequence[nn.Parameter], world_size: int) -> None:
    """Replace each gradient by its mean over ranks: one all-reduce of the concatenated
    gradients per dtype.  A parameter unused on this rank contributes zero, which keeps every
    rank's all-reduce the same size."""
    if world_size == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for dtype in sorted({p.grad.dtype for p in params}, key=str):
        grads = [p.grad for p in params if p.grad.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def gather(obj: Any, world_size: int) -> list[Any]:
    """Every rank's ``obj`` (any picklable value), in rank order, on every rank."""
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(world_size: int) -> None:
    """Wait until every rank got here."""
    if world_size > 1:
        dist.barrier()
