"""Training a conditional model with ``Trainer``: rows with missing cells and labels.

A ``Trainer`` reads batches of one finite tensor, while a table with gaps has NaN cells and a
labelled data set a label per row.  ``TrainingRows`` bridges the two without copying any training
code: the trainer's data are the row numbers ``(N, 1)`` (so its data order, resume and sharding
apply as they are), and ``loss`` gathers each batch's rows and labels and calls
``objectives.conditional`` on them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._checks import check_batch
from ..objectives.conditional import conditional

__all__ = ["TrainingRows"]

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]


class TrainingRows:
    """Rows ``(N, *event)`` (NaN = a missing cell) and optional labels ``(N,)``, for a Trainer.

    ``Trainer(model, rows.loss(process), rows.index, ...)`` trains on them: ``index`` is the
    float64 column of row numbers (exact up to 2⁵³ rows) and ``loss(process, **options)`` the
    ``loss_fn(model, batch, generator)`` that runs ``objectives.conditional`` (``options``:
    ``objective``, ``label_dropout`` and the objective's own).
    """

    def __init__(self, x: Tensor, label: Tensor | None = None) -> None:
        check_batch(x, "x", finite=False)
        if bool(torch.isinf(x).any()):
            raise ValueError("x has infinite values (NaN marks a missing cell)")
        if label is not None:
            label = torch.as_tensor(label)
            if label.shape != (x.shape[0],) or label.is_floating_point():
                raise ValueError(f"label must be {x.shape[0]} integers, got {tuple(label.shape)}")
        self.x, self.label = x, label
        self.index = torch.arange(x.shape[0], dtype=torch.float64)[:, None]

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, batch: Tensor) -> tuple[Tensor, Tensor | None]:
        """The rows and labels of a batch of row numbers, on the batch's device."""
        i = batch[:, 0].long().to(self.x.device)
        label = None if self.label is None else self.label[i.to(self.label.device)].to(batch.device)
        return self.x[i].to(batch.device), label

    def loss(self, process, **options) -> LossFn:
        """``loss_fn(model, batch, generator)`` of ``objectives.conditional`` on the batch's rows."""

        def loss_fn(model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
            x, label = self.rows(batch)
            return conditional(model, process, x, label=label, generator=generator, **options)

        return loss_fn
