"""Rows in fixed blocks, spread over torchrun's ranks and gathered: how ``Run.sample`` and
``Run.log_likelihood`` give the same rows whatever the number of processes.

The ``n`` rows are cut into blocks of ``block_rows`` (1000 unless told) — a split that depends on
n only, never on the world size.  Block k draws its noise from its own generator, seeded with
``block_seed(seed, k)`` (block 0 with ``seed`` itself, so up to 1000 rows are seeded exactly as
one batch drawn with ``seed``).  Each rank computes a contiguous share of the blocks, alone — an
adaptive ODE solver never waits on another rank's — and one gather gives every rank all blocks
in order.  A block is computed by the same code on the same rows with the same seed whichever
rank computes it, so the result equals the single-process one row for row, bit for bit on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor

from ..training.distributed import gather, mix_seed

__all__ = ["BLOCK_ROWS", "block_seed", "map_blocks"]

BLOCK_ROWS = 1000
T = TypeVar("T")


def block_seed(seed: int, block: int) -> int:
    """Seed of block ``block``'s generator: ``seed`` for block 0, else a mix of both."""
    return int(seed) if block == 0 else mix_seed(int(seed), "block", block)


def map_blocks(
    fn: Callable[[int, int, int], T],
    n: int,
    *,
    block_rows: int = BLOCK_ROWS,
    world_size: int = 1,
    rank: int = 0,
) -> list[T]:
    """``[fn(k, start, stop) for every block k of rows [start, stop)]``, in block order.  With
    ``world_size`` > 1 this rank computes blocks ``[rank·K/W, (rank+1)·K/W)`` of the K blocks and
    every rank receives all results (tensors moved to the CPU for the gather)."""
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
        raise ValueError(f"batch_size must be a positive integer, got {block_rows!r}")
    starts = range(0, n, block_rows)
    count = len(starts)
    lo, hi = rank * count // world_size, (rank + 1) * count // world_size
    mine = [fn(k, starts[k], min(starts[k] + block_rows, n)) for k in range(lo, hi)]
    if world_size == 1:
        return mine
    return [result for part in gather(_to_cpu(mine), world_size) for result in part]


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (lists, tuples, dicts) moved to the CPU."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj
