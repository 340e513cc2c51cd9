"""What a run config builds: the process, the score model (network + parametrization), the
training loss and the ``Trainer``'s settings.  ``train`` and ``load_run`` both build through here,
so a run rebuilds exactly; each object is built once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import noise_like
from ..data import Standardizer
from ..energy import EnergyScore
from ..models import build_model
from ..objectives import diffusion, dsm, edm, esm, ism, ncsn, ssm
from ..parametrization import wrap
from ..processes import NoiseLevels, Process, make_process
from ..training import TrainingSettings
from .config import UNCONDITIONAL
from .data import run_columns
from .execution import first_order
from .oracle import esm_target

__all__ = [
    "Unconditional",
    "build_loss",
    "build_process",
    "build_score_model",
    "dequantised",
    "dequantiser",
    "training_settings",
]

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]


class Unconditional(nn.Module):
    """An unconditional score network used as a score model: ``model(x, t)`` ignores t."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        return self.net(x)


def build_process(config: Mapping[str, Any]) -> Process | None:
    """The run's process.  An unconditional objective has none in its config; it gets the one
    noise level it learned, for Langevin sampling at that level."""
    if config.get("process") is not None:
        return make_process(**config["process"])
    if config["objective"]["name"] in UNCONDITIONAL:
        return NoiseLevels([config["sampling"]["level"]])
    return None


def build_score_model(config: Mapping[str, Any], process: Process | None) -> nn.Module:
    """The score model ``model(z, t)`` on standardised data, freshly initialised from the config."""
    spec = dict(config["model"])
    name = spec.pop("name")
    net = build_model(name, tuple(spec.pop("shape")), **spec)
    if config["objective"]["name"] in UNCONDITIONAL:
        return EnergyScore(net) if name == "energy-mlp" else Unconditional(net)
    options = dict(config["parametrization"])
    return wrap(net, process, options.pop("prediction"), **options)


def build_loss(config: Mapping[str, Any], process: Process | None) -> LossFn:
    """The training loss ``loss(model, batch, generator)`` the ``Trainer`` calls.  A table with
    discrete columns is dequantised first (:func:`dequantised`)."""
    loss = objective_loss(config, process)
    spread = dequantiser(config)
    return loss if spread is None else dequantised(loss, spread)


def dequantiser(config: Mapping[str, Any]) -> Callable[[Tensor, torch.Generator], Tensor] | None:
    """``spread(z, generator)``: standardised rows of a table with each discrete value moved to a
    uniform point of its bin in the model's coordinates (``ColumnCodec.spread``: w·(u − ½) for a
    discrete column, a uniform point of the argmax region for a one-hot one), through the run's
    standardisation; None when no column is quantised (nothing changes then)."""
    columns = run_columns(config["data"])
    if columns is None or not columns.quantised:
        return None
    std = Standardizer.from_dict(config["standardizer"])

    def spread(z: Tensor, generator: torch.Generator) -> Tensor:
        y = std.inverse(z)  # the noise drawn in the batch's dtype; continuous columns: moved by 0
        return z + ((columns.spread(y, generator) - y) / std.std.to(y)).to(z)

    return spread


def dequantised(loss: LossFn, spread: Callable[[Tensor, torch.Generator], Tensor]) -> LossFn:
    """``loss`` on batches dequantised afresh at every call, z̃ = spread(z, generator), with the
    trainer's generator (before the objective's own noise)."""

    def dequantised_loss(model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        return loss(model, spread(batch, generator), generator)

    return dequantised_loss


def objective_loss(config: Mapping[str, Any], process: Process | None) -> LossFn:
    """The objective a config names, as ``loss(model, batch, generator)``."""
    options = dict(config["objective"])
    name = options.pop("name")
    if name == "diffusion":
        weighting = options["weighting"]
        return lambda m, b, g: diffusion(m, process, b, weighting=weighting, generator=g)
    if name == "edm":
        return lambda m, b, g: edm(m, process, b, generator=g, **options)
    if name == "ncsn":
        return lambda m, b, g: ncsn(m, process, b, generator=g)
    sigma = float(options.pop("sigma"))
    if name == "dsm":
        return lambda m, b, g: dsm(m, b, sigma, generator=g)

    def perturbed(b: Tensor, g: torch.Generator) -> Tensor:
        """ISM/SSM/ESM on the data perturbed at level σ (σ = 0: the clean data)."""
        if sigma == 0:
            return b
        return b + sigma * noise_like(b, g)

    if name == "ism":
        return lambda m, b, g: ism(m, perturbed(b, g))
    if name == "esm":  # regression onto the exact score of the (blurred) standardised mixture
        target = esm_target(config)
        return lambda m, b, g: esm(m, perturbed(b, g), target)
    variance_reduced = name == "ssm-vr"
    return lambda m, b, g: ssm(
        m, perturbed(b, g), variance_reduced=variance_reduced, generator=g, **options
    )


def training_settings(
    config: Mapping[str, Any],
    rows: int,
    *,
    files: bool,
    validate: bool,
    progress: bool = True,
    checkpoint_minutes: float | None = None,
) -> TrainingSettings:
    """The ``Trainer``'s settings of a run config's ``training`` section, for ``rows`` training
    rows (the batch is at most that many).  ``files``: the trainer writes a run folder
    (checkpoints and sample plots on the config's grid, and every ``checkpoint_minutes``);
    ``validate``: it validates and may stop early."""
    tr = config["training"]
    return TrainingSettings(
        batch_size=min(tr["batch_size"], rows),
        lr=tr["lr"],
        warmup_steps=tr["warmup_steps"],
        schedule=tr["schedule"],
        total_steps=tr["steps"] if tr["schedule"] == "cosine" else None,
        grad_clip=tr["grad_clip"],
        ema_half_life=tr["ema_half_life"],
        seed=tr["seed"],
        checkpoint_every=tr["checkpoint_every"] if files else None,
        checkpoint_seconds=None if checkpoint_minutes is None else 60.0 * checkpoint_minutes,
        sample_every=(tr["sample_every"] or None) if files else None,
        validate_every=tr["validate_every"] if validate else None,
        patience=tr.get("patience") if validate else None,
        progress=progress,
        precision=tr.get("precision", "fp32"),
        compile=bool(tr.get("compile", False)),
        grad_accum=int(tr.get("grad_accum", 1)),
        first_order=first_order(config),
    )
