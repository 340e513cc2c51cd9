"""The whole state of a training run as one object: ``TrainState``, whose parts each have a
``state_dict()`` and a ``load_state_dict()`` — the model, its EMA, the optimizer, the RNG streams,
the data order, the validation record, the step engine (fp16's gradient scaler) and the metrics
window — plus the step and the training seconds.

``TrainState.state_dict()`` is one nested dict of the parts' state dicts (as k-diffusion's
``train.py`` saves one dict of ``state_dict()``s); ``checkpoint.write_checkpoint`` stores it and
``Checkpoint.train_state()`` gives it back for ``load_state_dict``, its mirror.  With the step
(which fixes the data order, see ``data_order``) and the metrics window, the RNG states make a
resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import base64
import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import load_weights
from .data_order import LoaderBatches, TensorBatches
from .distributed import gather, mix_seed, rank_seed
from .metrics_log import MetricsWindow
from .step import StepEngine
from .validation import Validation

__all__ = ["EMA", "RNGStreams", "TrainState", "decode_rng_state", "encode_rng_state"]

logger = logging.getLogger(__name__)


class EMA:
    """An exponential moving average of a model's weights (Polyak & Juditsky 1992): a frozen
    copy updated as ema ← d·ema + (1 − d)·θ, buffers copied; ``model`` is what samplers use."""

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """One update with decay ``decay``, written as a lerp towards θ."""
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor], source: str = "checkpoint") -> None:
        load_weights(self.model, state, source)


def encode_rng_state(state: Tensor) -> str:
    """A generator's byte state (``get_state()``) as base64 text for the JSON sidecar."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_rng_state(text: str) -> Tensor:
    """Inverse of ``encode_rng_state``: a uint8 tensor for ``set_state``."""
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


class RNGStreams:
    """Every random stream of a run: the loss's ``generator`` (seeded with ``seed`` on rank 0)
    and the global CPU/CUDA RNGs (dropout and the like), on each of ``world_size`` ranks."""

    def __init__(self, seed: int, device: torch.device, world_size: int, rank: int) -> None:
        self.seed, self.world_size, self.rank = seed, world_size, rank
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(rank_seed(seed, "noise", rank))

    def seed_global(self) -> None:
        """Seed the global RNG at the start of a fresh run."""
        torch.manual_seed(rank_seed(self.seed, "global", self.rank))

    def state_dict(self) -> dict[str, Any]:
        """Every rank's generator, CPU and CUDA RNG states (a collective call under torchrun)."""
        cuda_states = []
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_states = [encode_rng_state(s) for s in torch.cuda.get_rng_state_all()]
        return {
            "generator_device": str(self.generator.device),
            "generators": gather(encode_rng_state(self.generator.get_state()), self.world_size),
            "torch_cpu": gather(encode_rng_state(torch.get_rng_state()), self.world_size),
            "cuda": gather(cuda_states, self.world_size),
        }

    def load_state_dict(
        self, state: dict[str, Any], *, world_size: int, step: int, source: str = "checkpoint"
    ) -> None:
        """Restore this rank's streams from a state saved on ``world_size`` ranks.  States that
        do not fit (another world size, a CUDA run resumed on CPU) are replaced by fresh streams,
        still deterministic — seeded by (seed, rank, step) — with a warning."""
        try:
            if world_size != self.world_size:
                raise ValueError(f"saved with world size {world_size}")
            self.generator.set_state(decode_rng_state(state["generators"][self.rank]))
            torch.set_rng_state(decode_rng_state(state["torch_cpu"][self.rank]))
            cuda = state["cuda"][self.rank]
            if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([decode_rng_state(s) for s in cuda])
        except (RuntimeError, ValueError, IndexError, KeyError) as err:
            self.generator.manual_seed(mix_seed(self.seed, "resume", self.rank, step))
            torch.manual_seed(mix_seed(self.seed, "resume-global", self.rank, step))
            if self.rank == 0:
                logger.warning(
                    "%s: RNG state not restored (%s); noise after resume differs from an "
                    "uninterrupted run",
                    source,
                    err,
                )


class TrainState:
    """The state of a run at ``step``: every part a checkpoint saves and a resume restores.

    Parts: ``model``, ``ema`` (``EMA``), ``optimizer``, ``rng`` (``RNGStreams``), ``data``
    (``TensorBatches``/``LoaderBatches``: the data order), ``validation`` (or None), ``engine``
    (``StepEngine``) and ``window`` (``MetricsWindow``); ``step`` and ``elapsed`` (training
    seconds, summed over resumed segments) are plain numbers."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        rng: RNGStreams,
        data: TensorBatches | LoaderBatches,
        engine: StepEngine,
        validation: Validation | None = None,
    ) -> None:
        self.model, self.optimizer, self.rng, self.data = model, optimizer, rng, data
        self.engine, self.validation = engine, validation
        self.ema = EMA(model)
        self.window = MetricsWindow()
        self.step = 0
        self.elapsed = 0.0

    def state_dict(self) -> dict[str, Any]:
        """One dict of the parts' state dicts (a collective call under torchrun: the RNG
        states of every rank are gathered)."""
        return {
            "step": self.step,
            "elapsed_seconds": self.elapsed,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.state_dict(),
            "world_size": self.rng.world_size,
            "data_order": self.data.state_dict(self.step),
            "validation": None if self.validation is None else self.validation.state_dict(),
            "step_engine": self.engine.state_dict(),
            "metrics_window": self.window.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        """Restore every part from ``state`` (``Checkpoint.train_state()``); ``ValueError``
        naming ``source`` when its weights or optimizer state do not fit this model.  The
        optimizer keeps its own hyperparameters; the data order is recomputed from the step."""
        if not state.get("ema"):
            raise ValueError(f"checkpoint {source!r} holds no EMA weights")
        load_weights(self.model, state["model"], source)
        self.ema.load_state_dict(state["ema"], source)
        self._load_optimizer(state["optimizer"], source)
        self.step = int(state["step"])
        self.rng.load_state_dict(
            state["rng"], world_size=state["world_size"], step=self.step, source=source
        )
        self.data.load_state_dict(state.get("data_order"))
        self.elapsed = float(state["elapsed_seconds"])
        self.window.load_state_dict(state["metrics_window"])
        if self.validation is not None and state.get("validation"):
            self.validation.load_state_dict(state["validation"])
        self.engine.load_state_dict(state.get("step_engine"))

    def _load_optimizer(self, saved: dict[str, Any], source: str) -> None:
        """Load the per-parameter optimizer state, keeping the optimizer's own hyperparameters;
        a ``ValueError`` naming ``source`` when the groups, indices or shapes do not fit."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        current = self.optimizer.state_dict()
        sizes = [len(g["params"]) for g in saved["param_groups"]]
        if sizes != [len(g["params"]) for g in current["param_groups"]]:
            raise ValueError(
                f"checkpoint {source!r}: optimizer parameter groups {sizes} do not match the model"
            )
        for index, entries in saved["state"].items():
            if index >= len(params):
                raise ValueError(
                    f"checkpoint {source!r}: optimizer state for parameter {index} not in the model"
                )
            for key, value in entries.items():
                if (
                    isinstance(value, Tensor)
                    and value.ndim > 0
                    and value.shape != params[index].shape
                ):
                    raise ValueError(
                        f"checkpoint {source!r}: optimizer {key} of parameter {index} has shape "
                        f"{tuple(value.shape)}, the model's is {tuple(params[index].shape)}"
                    )
        current["state"] = saved["state"]
        self.optimizer.load_state_dict(current)
