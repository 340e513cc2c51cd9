"""The ``torch.distributed`` helpers of data-parallel training: set-up, per-rank seeds, the
all-reduce of gradients and of scalars, broadcast and gather.

Under ``torchrun`` each rank trains on its slice of every global batch and the gradients are
averaged with one all-reduce per dtype before clipping.  The objective gets the plain module,
not a ``DistributedDataParallel`` wrapper, because the objectives differentiate the model with
``torch.func`` (jvp/vjp/vmap), which DDP's wrapper does not support (pytorch/pytorch issues
#102197, #182661).  Every helper is a no-op (or the identity) with a world size of 1.
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
    "mean_over_ranks",
    "mix_seed",
    "rank_seed",
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


def init_distributed(
    model: nn.Module, device: torch.device | str | None
) -> tuple[torch.device, int, int]:
    """Join the process group when ``torch.distributed`` is initialised or ``WORLD_SIZE > 1``
    (as under ``torchrun``); returns ``(device, world_size, rank)``.

    The device defaults to the model's, and on CUDA under torchrun to ``cuda:LOCAL_RANK``; the
    backend is NCCL on CUDA and Gloo otherwise.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    active = dist.is_available() and (dist.is_initialized() or env_world > 1)
    if device is None:
        device = model_device(model)[0]
        if active and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(device)
    if active and device.type == "cuda":
        torch.cuda.set_device(device)
    if active and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    world_size = dist.get_world_size() if active else 1
    rank = dist.get_rank() if active else 0
    return device, world_size, rank


def broadcast_module(module: nn.Module, world_size: int, src: int = 0) -> None:
    """Overwrite every rank's parameters and buffers with those of rank ``src``."""
    if world_size > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def mean_over_ranks(value: Tensor, world_size: int) -> float:
    """The mean of a scalar over ranks (one all-reduce in float64)."""
    if world_size == 1:
        return float(value)
    buf = value.reshape(1).to(torch.float64)
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
