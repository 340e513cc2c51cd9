"""Which rows form batch ``step`` on ``rank``: a pure function of (seed, step, rank).

The data are read as the stream perm_0 ‖ perm_1 ‖ … of one random permutation of the N rows per
epoch, perm_e = randperm(N) seeded by blake2b(f"{seed}/epoch/{e}").  Global batch s (1-based)
covers stream positions [(s − 1)B, sB), so batches straddle epochs; with W ranks, rank r takes
the r-th of its W equal slices.  Nothing here is state: a resumed run recomputes its order from
the step it reached, bit for bit.

This slice is how data is sharded under torchrun, for every run the command line trains: the
global batch is the one asked for, whatever the number of ranks, and a run resumed on another
number of ranks reads the same global batches (``step`` then cuts a rank's rows into
micro-batches for gradient accumulation).  An iterable of batches (a DataLoader) has its own
order and must shard itself (e.g. with a DistributedSampler); ``LoaderBatches`` only restarts it
when it is exhausted or the run resumes (its order after a resume is therefore not exact).  ``batch_source`` picks
``TensorBatches`` or ``LoaderBatches`` for the data a ``Trainer`` is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .._checks import check_batch
from .distributed import mix_seed

__all__ = [
    "PERMUTATION",
    "DataOrder",
    "LoaderBatches",
    "TensorBatches",
    "batch_indices",
    "batch_source",
    "epoch_permutation",
]

# How perm_e is drawn, as stored in checkpoints (their "sampler" field).
PERMUTATION = "randperm(N, Generator().manual_seed(blake2b(f'{seed}/epoch/{epoch}')))"


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> Tensor:
    """perm_e: the order of the ``num_examples`` rows in epoch ``epoch`` (0-based)."""
    g = torch.Generator().manual_seed(mix_seed(seed, "epoch", epoch))
    return torch.randperm(num_examples, generator=g)


class DataOrder:
    """The data order of a tensor of ``num_examples`` rows read in global batches of
    ``batch_size`` split over ``world_size`` ranks.  ``indices(step, rank)`` is a pure function;
    the permutations of the epochs in use are cached only to avoid redrawing them."""

    def __init__(self, seed: int, num_examples: int, batch_size: int, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by the world size {world_size}"
            )
        self.seed, self.num_examples = int(seed), int(num_examples)
        self.batch_size, self.world_size = int(batch_size), int(world_size)
        self._perms: dict[int, Tensor] = {}

    def _permutation(self, epoch: int) -> Tensor:
        perm = self._perms.get(epoch)
        if perm is None:
            perm = self._perms[epoch] = epoch_permutation(self.seed, epoch, self.num_examples)
        return perm

    def indices(self, step: int, rank: int = 0) -> Tensor:
        """Row indices of batch ``step`` (1-based) on ``rank``: ``batch_size // world_size`` rows."""
        n, size = self.num_examples, self.batch_size
        start, end = (step - 1) * size, step * size
        first, last = start // n, (end - 1) // n
        for epoch in [e for e in self._perms if e < first]:  # steps only move forward
            del self._perms[epoch]
        pieces = [
            self._permutation(epoch)[max(start - epoch * n, 0) : min(end - epoch * n, n)]
            for epoch in range(first, last + 1)
        ]
        index = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        local = size // self.world_size
        return index[rank * local : (rank + 1) * local]

    def record(self, step: int) -> dict[str, Any]:
        """Where the stream stands after ``step`` batches, for the checkpoint's ``"sampler"``
        field (a record only: the order is recomputed from the step on resume)."""
        consumed = step * self.batch_size
        return {
            "kind": "tensor",
            "num_examples": self.num_examples,
            "examples_consumed": consumed,
            "epoch": consumed // self.num_examples,
            "position": consumed % self.num_examples,
            "permutation": PERMUTATION,
        }


def batch_indices(
    seed: int, step: int, rank: int = 0, *, num_examples: int, batch_size: int, world_size: int = 1
) -> Tensor:
    """Row indices of global batch ``step`` (1-based) on ``rank`` (see the module docstring)."""
    return DataOrder(seed, num_examples, batch_size, world_size).indices(step, rank)


class TensorBatches:
    """The batches of a data tensor ``(N, *event)`` in the order of ``DataOrder``."""

    exact_resume = True

    def __init__(self, data: Tensor, seed: int, batch_size: int, world_size: int = 1) -> None:
        self.data = check_batch(data, "data")
        self.order = DataOrder(seed, data.shape[0], batch_size, world_size)

    def batch(self, step: int, rank: int = 0) -> Tensor:
        """The rows of batch ``step`` on ``rank``, on the data's device."""
        return self.data[self.order.indices(step, rank).to(self.data.device)]

    def state_dict(self, step: int) -> dict[str, Any]:
        """The order after ``step`` batches, as a record (``DataOrder.record``)."""
        return self.order.record(step)

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Nothing to restore: the order is a function of the step."""


class LoaderBatches:
    """Batches of an iterable (e.g. a DataLoader), restarted whenever it is exhausted; a batch
    that is a tuple or list (a ``TensorDataset``'s) contributes its first tensor.  Under torchrun
    the iterable must shard itself (e.g. with a DistributedSampler)."""

    exact_resume = False

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self._iterator = None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """On resume: start the iterable again at the next batch (its position is not saved)."""
        self._iterator = None

    def batch(self, step: int, rank: int = 0) -> Tensor:
        """The iterable's next batch (``step`` and ``rank`` do not choose it)."""
        for _ in range(2):
            if self._iterator is None:
                self._iterator = iter(self.loader)
            try:
                item = next(self._iterator)
                break
            except StopIteration:
                self._iterator = None
        else:
            raise ValueError("the data iterable yielded no batches")
        if isinstance(item, (list, tuple)):
            item = item[0]
        if not isinstance(item, Tensor):
            raise ValueError(
                f"data batches must be tensors (or tuples starting with one), got {type(item).__name__}"
            )
        return item

    def state_dict(self, step: int) -> dict[str, Any]:
        """The checkpoint's ``"sampler"`` field: an iterable's position is not recorded."""
        return {"kind": "iterable", "exact_resume": False}


def batch_source(
    data: Tensor | Iterable, seed: int, batch_size: int, world_size: int = 1
) -> TensorBatches | LoaderBatches:
    """``TensorBatches`` for a tensor, ``LoaderBatches`` for any other iterable of batches."""
    if isinstance(data, Tensor):
        return TensorBatches(data, seed, batch_size, world_size)
    if isinstance(data, Iterable):
        return LoaderBatches(data)
    raise ValueError(
        f"data must be a tensor (N, *event) or an iterable of batches, got {type(data).__name__}"
    )
