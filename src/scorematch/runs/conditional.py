"""The conditional side of a run: what its network is conditioned on, and how it trains.

A run's network may be

* **mask-conditional** (``--conditional``; ``model.mask_conditional`` in its config): it is told
  which cells of a row are known and their values, so that one network imputes every pattern of
  missing cells (``scorematch impute``, ``sample --given``), and it trains on a table
  with gaps as it is — the masked objective over the observed cells
  (:func:`scorematch.objectives.conditional`; CSDI, Tashiro et al. 2021).  A table with gaps
  always trains so (or drops its incomplete rows with ``--drop-missing``), other data on request;
* **class-conditional** (``--labels``; ``model.num_classes``): it takes a class label, dropped to
  "no label" with probability ``label_dropout`` (default ``LABEL_DROPOUT``) so that it also learns
  the unconditional score — the pair classifier-free guidance combines (Ho & Salimans 2022).

:func:`conditioning_section` resolves the options (for ``runs.config.build_config``);
:func:`conditional_training` gives the ``Trainer`` its loss and data: rows with NaN gaps and labels
do not fit one finite tensor, so the trainer reads row numbers and the loss gathers its rows
(:class:`scorematch.conditional.TrainingRows`), dequantised afresh at every step as a plain run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..conditional import Guided, TrainingRows
from ..data import LabelCodec
from ..objectives import conditional
from .checks import fraction
from .data import DataBundle

__all__ = [
    "LABEL_DROPOUT",
    "MASKS_DEFAULT",
    "conditional_training",
    "conditioning_section",
    "guided",
    "is_conditional",
    "masks_of",
    "run_labels",
]

# Whether data without gaps trains a mask-conditional network unless told (--conditional): not
# yet, as no measurement compares its unconditional samples with a plain network's; a table with
# gaps always does.
MASKS_DEFAULT = {"vector": False, "image": False}
# The share of rows trained without their label (classifier-free guidance's p_uncond; Ho &
# Salimans 2022 found 0.1-0.2 best).
LABEL_DROPOUT = 0.1

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]


def conditioning_section(
    options: Mapping[str, Any], objective: str, model_name: str, data: DataBundle, *,
    time_conditional: bool,
) -> dict[str, Any]:  # fmt: skip
    """``{"masks": bool, "num_classes": C, "label_dropout": p}`` for the options ``conditional``,
    ``labels``, ``label_dropout``: checked against the objective, the model and the data (a
    one-line ValueError for a combination that cannot train)."""
    gaps = data.has_gaps
    asked = options.get("conditional")
    can = time_conditional and model_name != "energy-mlp"
    if gaps and asked is False:
        raise ValueError(
            f"{data.section['gaps']['rows']} training rows have missing cells: training on them "
            "needs a mask-conditional network (leave out --no-conditional), or pass "
            "--drop-missing to train on the complete rows only"
        )
    if (gaps or asked) and not can:
        why = "a table with gaps trains" if gaps and not asked else "--conditional trains"
        raise ValueError(
            f"{why} a mask-conditional network with a time-conditional objective (edm, diffusion "
            f"or ncsn), not {objective!r} with model {model_name!r}"
            + ("; or pass --drop-missing to train on the complete rows" if gaps else "")
        )
    masks = bool(asked) if asked is not None else (gaps or (can and MASKS_DEFAULT[data.kind]))
    labels = data.labels
    dropout = options.get("label_dropout")
    if labels is None:
        if dropout is not None:
            raise ValueError("--label-dropout applies to runs trained with --labels")
        return {"masks": masks, "num_classes": 0, "label_dropout": None}
    if not can:
        raise ValueError(
            f"--labels trains a class-conditional network with a time-conditional objective (edm, "
            f"diffusion or ncsn), not {objective!r} with model {model_name!r}"
        )
    p = LABEL_DROPOUT if dropout is None else float(dropout)
    if p != 0:
        p = fraction(p, "label_dropout")
    return {"masks": masks, "num_classes": labels.num_classes, "label_dropout": p}


def masks_of(config: Mapping[str, Any]) -> bool:
    """True when a run's network is mask-conditional (it can impute by its conditional score)."""
    return bool(config["model"].get("mask_conditional"))


def is_conditional(config: Mapping[str, Any]) -> bool:
    """True when a run trains with the conditional objective (masks and/or labels)."""
    return masks_of(config) or bool(config["model"].get("num_classes"))


def run_labels(config: Mapping[str, Any]) -> LabelCodec | None:
    """The label codec of a run trained with ``--labels`` (its ``data.labels``), else None."""
    return LabelCodec.from_config(config["data"].get("labels"))


def guided(run, label: int | Tensor, guidance: float = 0.0) -> Guided:
    """``run``'s network conditioned on class code(s) ``label`` with classifier-free guidance of
    weight ``guidance`` (s = (1 + w)·s(x, t | y) − w·s(x, t); Ho & Salimans 2022): a one-line
    ValueError for a run trained without labels, a code out of range or a negative weight."""
    codec = run_labels(run.config)
    if codec is None:
        raise ValueError(
            "this run was trained without labels: train it with --labels to sample a class"
        )
    codes = torch.as_tensor(label)
    if codes.is_floating_point() or bool(((codes < 0) | (codes >= codec.num_classes)).any()):
        raise ValueError(f"label must be a class code 0 … {codec.num_classes - 1}, got {label!r}")
    w = float(guidance)
    if not (w >= 0 and w < float("inf")):
        raise ValueError(f"guidance must be a finite weight >= 0, got {guidance!r}")
    return Guided(run.model, codes, w)


def conditional_training(
    config: Mapping[str, Any],
    process,
    z: Tensor,
    labels: Tensor | None,
    spread: Callable[[Tensor, torch.Generator], Tensor] | None,
) -> tuple[LossFn, Tensor]:
    """``(loss_fn, data)`` of a conditional run for a ``Trainer`` (or its validation):
    standardised rows ``z`` (NaN = a missing cell) and their labels are held by a
    ``TrainingRows``; ``data`` is the column of row numbers the trainer batches, and ``loss_fn``
    gathers a batch's rows, dequantises them with ``spread`` (``runs.build.dequantiser``; the
    first draws, as for a plain run), and runs ``objectives.conditional`` on them — the masked
    objective over observed cells for a mask-conditional network, labels dropped with the run's
    ``label_dropout``."""
    rows = TrainingRows(z, labels)
    options = dict(config["objective"])
    name = options.pop("name")
    dropout = options.pop("label_dropout", None) or 0.0

    def loss_fn(model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        x, label = rows.rows(batch)
        if spread is not None:
            x = spread(x, generator)
        return conditional(model, process, x, objective=name, label=label,
                           label_dropout=dropout, generator=generator, **options)  # fmt: skip

    return loss_fn, rows.index
