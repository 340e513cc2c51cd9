"""Training loop for score models, alone or under ``torchrun``.

``Trainer`` runs AdamW (Loshchilov & Hutter 2019) with a linear learning-rate warm-up (Goyal et al.
2017) and optional cosine decay (Loshchilov & Hutter 2017), global-norm gradient clipping
(Pascanu et al. 2013), and an exponential moving average of the weights (Polyak & Juditsky 1992),
which is what score-based samplers use (Song & Ermon 2020, "Improved techniques").  It writes a
``metrics.csv``, periodic checkpoints (safetensors + JSON, see ``scorematch.checkpoint``) and resumes
from them exactly: on CPU a run interrupted at step k and resumed ends with bit-identical weights.

Everything random in a step — the data order and the objective's noise — comes from state the
trainer owns and checkpoints: the data order is a fixed function of (seed, step), and the loss
function receives the trainer's ``torch.Generator``.

Data parallelism: when ``torch.distributed`` is initialised (or ``WORLD_SIZE > 1`` in the
environment, e.g. under ``torchrun``) each rank trains on its slice of every global batch and the
gradients are averaged with one all-reduce per dtype before clipping.  The loss function gets the
plain module, not a ``DistributedDataParallel`` wrapper, because the objectives differentiate
the model with ``torch.func`` (jvp/vjp/vmap), which DDP's wrapper does not support
(pytorch/pytorch issues #102197, #182661).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_batch
from .checkpoint import (
    Checkpoint,
    checkpoint_paths,
    flatten_optimizer_state,
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    read_checkpoint,
    rotate_checkpoints,
    unflatten_optimizer_state,
    write_checkpoint,
)
from .io import atomic_write_text

__all__ = [
    "METRIC_COLUMNS",
    "Checkpoint",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "config_hash",
    "ema_decay_at",
    "learning_rate",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor, torch.Generator], Tensor]
SampleFn = Callable[[nn.Module, int, "Path | None"], object]
METRIC_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds", "steps_per_s")
SCHEDULES = ("constant", "cosine")
DEFAULT_EMA_DECAY = 0.999


class TrainingDiverged(ValueError):
    """The loss or the gradient norm became NaN/inf.  The bad update is not applied and nothing is
    saved after it: ``step`` is the failing step, ``checkpoint`` the newest good one on disk."""

    def __init__(self, step: int, what: str, checkpoint: Path | None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = str(checkpoint) if checkpoint is not None else "none (no checkpoint written)"
        super().__init__(f"{what} became NaN/inf at step {step}; last good checkpoint: {where}")


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns: the global step reached, the last logged mean loss, the rows
    logged during this call (``METRIC_COLUMNS``), the newest checkpoint and the run's total
    training time in seconds (summed over resumed segments)."""

    step: int
    loss: float
    history: list[dict[str, float]] = field(repr=False)
    checkpoint: Path | None
    seconds: float


def learning_rate(
    step: int,
    *,
    lr: float,
    warmup_steps: int = 0,
    schedule: str = "constant",
    total_steps: int | None = None,
    min_lr: float = 0.0,
) -> float:
    """Learning rate of optimizer update number ``step`` (1-based).

    Warm-up (Goyal et al. 2017): lr·step/W for step < W = ``warmup_steps``.  Then ``"constant"``
    keeps lr; ``"cosine"`` (Loshchilov & Hutter 2017) decays to ``min_lr`` at T = ``total_steps``:
    min_lr + (lr − min_lr)·½(1 + cos(π·(step − W)/(T − W))), and stays at min_lr after T.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return lr * step / warmup_steps
    if schedule == "constant":
        return lr
    if total_steps is None:
        raise ValueError("schedule='cosine' needs total_steps")
    progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """EMA decay used at update number ``step`` (1-based): ``decay``, or with warm-up
    min(decay, (1 + step)/(10 + step)) so early averages do not remember the random init
    (the schedule of TensorFlow's ExponentialMovingAverage, used by Song et al. 2021)."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


def _config_changes(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two JSON-like configs differ (``""`` stands for the whole config)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [
            key
            for k in sorted(set(saved) | set(now), key=str)
            for key in _config_changes(saved.get(k), now.get(k), f"{prefix}{k}.")
        ]
    return [] if saved == now else [prefix.rstrip(".")]


def config_hash(config: dict[str, Any] | None) -> str | None:
    """SHA-256 of the config's canonical JSON (sorted keys), or None without a config."""
    if config is None:
        return None
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _mix_seed(*parts: object) -> int:
    """A well-mixed 63-bit seed from several parts (seed, epoch, rank, ...)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _encode_state(state: Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _decode_state(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _optional_int(value: object, name: str, low: int) -> int | None:
    return None if value is None else _check_int(value, name, low)


def _module_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch, generator)`` over ``data``.

    Args:
        model: the network; moved to ``device`` (default: where its parameters are).
        loss_fn: returns the scalar mean loss of a batch; it must draw all its noise from the
            ``torch.Generator`` it is given (the trainer's, checkpointed → exact resume).
        data: a tensor ``(N, *event)`` — global batches of ``batch_size`` rows are read from a
            random permutation per epoch, a fixed function of (seed, step) — or any iterable of
            batches (a DataLoader; exact resume of its order is not possible: it restarts;
            under torchrun it must shard itself, e.g. with a DistributedSampler).
        out_dir: run directory for ``metrics.csv``, ``config.yaml`` and ``checkpoints/``; None
            keeps everything in memory.
        batch_size: global batch size (split evenly across ranks under torchrun).
        lr, weight_decay, betas: AdamW hyperparameters.
        warmup_steps, schedule, min_lr, total_steps: see ``learning_rate``; cosine decays to
            ``total_steps`` (default: the ``steps`` given to ``fit``).
        grad_clip: maximal global gradient norm (None: no clipping; the norm is still logged).
        ema_decay / ema_half_life: EMA decay per step, or its half-life in steps
            (decay = 0.5**(1/half_life)); default decay 0.999.  ``ema_warmup`` see ``ema_decay_at``.
        seed: seeds the data order, the loss generator and, at the start of a fresh run, the
            global torch RNG (for layers such as dropout); all three are checkpointed.
        checkpoint_every: save every this many steps (and always at the end of ``fit``);
            None: only at the end.  ``keep_checkpoints``: how many to keep (None: all).
        log_every: write a ``metrics.csv`` row (means over the window) every this many steps.
        sample_every, sample_fn: call ``sample_fn(ema_model, step, out_dir)`` on rank 0 every
            ``sample_every`` steps, with the global RNG forked so sampling leaves training unchanged.
        progress: tqdm bar (loss, steps/s) on rank 0.
        config: a JSON-able dict describing the run; stored in every checkpoint (with its hash)
            and as ``out_dir/config.yaml``.
        device: where to train.

    Attributes ``model``, ``ema_model`` (sample from this), ``optimizer``, ``generator``, ``step``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Tensor | Iterable,
        *,
        out_dir: str | os.PathLike | None = None,
        batch_size: int = 256,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 100,
        schedule: str = "constant",
        min_lr: float = 0.0,
        total_steps: int | None = None,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = None,
        ema_half_life: float | None = None,
        ema_warmup: bool = True,
        seed: int = 0,
        checkpoint_every: int | None = 1000,
        keep_checkpoints: int | None = 3,
        log_every: int = 25,
        sample_every: int | None = None,
        sample_fn: SampleFn | None = None,
        progress: bool = True,
        config: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.warmup_steps = _check_int(warmup_steps, "warmup_steps", 0)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if not (0.0 <= min_lr <= lr):
            raise ValueError(f"min_lr must be in [0, lr={lr}], got {min_lr!r}")
        self.total_steps = _optional_int(total_steps, "total_steps", 1)
        if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
        if ema_decay is not None and ema_half_life is not None:
            raise ValueError("give ema_decay or ema_half_life, not both")
        if ema_half_life is not None:
            if not (math.isfinite(ema_half_life) and ema_half_life > 0):
                raise ValueError(
                    f"ema_half_life must be a positive number of steps, got {ema_half_life!r}"
                )
            ema_decay = 0.5 ** (1.0 / ema_half_life)
        elif ema_decay is None:
            ema_decay = DEFAULT_EMA_DECAY
        if not (0.0 <= ema_decay < 1.0):
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        self.seed = _check_int(seed, "seed", 0)
        self.checkpoint_every = _optional_int(checkpoint_every, "checkpoint_every", 1)
        self.keep_checkpoints = _optional_int(keep_checkpoints, "keep_checkpoints", 1)
        self.log_every = _check_int(log_every, "log_every", 1)
        self.sample_every = _optional_int(sample_every, "sample_every", 1)
        if self.sample_every is not None and not callable(sample_fn):
            raise ValueError("sample_every needs a callable sample_fn(ema_model, step, out_dir)")
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"config must be a dict or None, got {type(config).__name__}")

        self.loss_fn = loss_fn
        self.lr, self.weight_decay, self.betas = float(lr), float(weight_decay), tuple(betas)
        self.schedule, self.min_lr = schedule, float(min_lr)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.ema_decay, self.ema_warmup = float(ema_decay), bool(ema_warmup)
        self.sample_fn = sample_fn
        self.progress = bool(progress)
        # JSON round trip: tuples → lists, paths → str, so the stored config is what reloads.
        self.config = None if config is None else json.loads(json.dumps(config, default=str))
        self.out_dir = None if out_dir is None else Path(out_dir)

        self._init_distributed(model, device)
        self.model = model.to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("model has no trainable parameters")
        if self.world_size > 1:  # every rank starts from rank 0's weights
            for tensor in self.model.state_dict().values():
                dist.broadcast(tensor, src=0)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.AdamW(
            self._params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self._rank_seed("noise"))

        if isinstance(data, Tensor):
            self._data: Tensor | None = check_batch(data, "data")
            self._loader = None
            if self.batch_size % self.world_size:
                raise ValueError(
                    f"batch_size={self.batch_size} must be divisible by the world size {self.world_size}"
                )
        elif isinstance(data, Iterable):
            self._data, self._loader = None, data
        else:
            raise ValueError(
                f"data must be a tensor (N, *event) or an iterable of batches, got {type(data).__name__}"
            )
        self._iterator = None
        self._perms: dict[int, Tensor] = {}

        self.step = 0
        self._restored = False
        self._elapsed = 0.0
        self._fit_target: int | None = None
        self._window = self._new_window()

    # ------------------------------------------------------------------ set-up helpers
    def _init_distributed(self, model: nn.Module, device: torch.device | str | None) -> None:
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        active = dist.is_available() and (dist.is_initialized() or env_world > 1)
        if device is None:
            device = _module_device(model)
            if active and device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.device = torch.device(device)
        if active and self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if active and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        self.world_size = dist.get_world_size() if active else 1
        self.rank = dist.get_rank() if active else 0

    def _rank_seed(self, stream: str) -> int:
        # Rank 0 uses the seed itself, so a single-process run is seeded exactly by `seed`.
        return self.seed if self.rank == 0 else _mix_seed(self.seed, stream, self.rank)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoints"

    @property
    def metrics_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "metrics.csv"

    @property
    def settings(self) -> dict[str, Any]:
        """The trainer's hyperparameters (stored in checkpoints, compared on resume)."""
        return {
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "betas": list(self.betas),
            "warmup_steps": self.warmup_steps,
            "schedule": self.schedule,
            "min_lr": self.min_lr,
            "total_steps": self.total_steps,
            "grad_clip": self.grad_clip,
            "ema_decay": self.ema_decay,
            "ema_warmup": self.ema_warmup,
            "seed": self.seed,
            "world_size": self.world_size,
        }

    def lr_at(self, step: int) -> float:
        """Learning rate of update number ``step`` (see ``learning_rate``)."""
        return learning_rate(
            step,
            lr=self.lr,
            warmup_steps=self.warmup_steps,
            schedule=self.schedule,
            total_steps=self.total_steps or self._fit_target,
            min_lr=self.min_lr,
        )

    # ------------------------------------------------------------------ training
    def fit(self, steps: int, *, resume: bool = False) -> TrainResult:
        """Train until the global step equals ``steps`` (continuing from the current step).

        ``resume=True`` first loads the newest complete checkpoint in ``out_dir`` if there is one.
        Starting a fresh run (step 0, ``resume=False``) in a directory that already holds
        checkpoints is refused.  Raises ``TrainingDiverged`` on a NaN/inf loss or gradient.
        """
        steps = _check_int(steps, "steps", 1)
        if self.step == 0 and self.out_dir is not None:
            latest = latest_checkpoint(self.checkpoint_dir)
            if latest is not None and not resume:
                raise ValueError(
                    f"{str(self.out_dir)!r} already holds checkpoints (newest {latest.name}); "
                    "pass resume=True to continue that run or choose another out_dir"
                )
            if latest is not None:
                self.resume(latest)
            elif resume and self.is_main:
                logger.info("no checkpoint in %s; starting from step 0", self.checkpoint_dir)
        elif resume and self.out_dir is None:
            raise ValueError("resume=True needs an out_dir holding checkpoints")
        if steps < self.step:
            raise ValueError(f"steps={steps} is below the current step {self.step}")
        self._fit_target = steps
        if self.step == 0 and not self._restored:  # a fresh run
            torch.manual_seed(self._rank_seed("global"))
        if self.out_dir is not None and self.is_main:
            self._prepare_run_dir()

        history: list[dict[str, float]] = []
        start_elapsed, t0 = self._elapsed, time.perf_counter()
        bar = tqdm(
            total=steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=not (self.progress and self.is_main),
        )
        csv_file = None
        if self.out_dir is not None and self.is_main:
            csv_file = open(self.metrics_path, "a", encoding="utf-8", newline="")
        try:
            while self.step < steps:
                s = self.step + 1
                loss, grad_norm, lr = self._train_step(s)
                self._elapsed = start_elapsed + (time.perf_counter() - t0)
                window = self._window
                window["loss_sum"] += loss
                window["grad_norm_sum"] += grad_norm
                window["count"] += 1
                bar.update(1)
                on_grid = s % self.log_every == 0
                if on_grid or s == steps:
                    # An end-of-fit row off the log grid does not reset the window; the next fit
                    # (or a resume) drops it, so the CSV matches an uninterrupted run's.
                    row = self._metrics_row(s, lr)
                    history.append(row)
                    if on_grid:
                        self._window = self._new_window()
                    if csv_file is not None:
                        csv_file.write(_format_row(row) + "\n")
                        csv_file.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{lr:.3g}", refresh=False)
                    if self.is_main:
                        logger.debug(
                            "step %d loss %.6g lr %.3g grad_norm %.4g",
                            s,
                            row["loss"],
                            lr,
                            row["grad_norm"],
                        )
                if self.out_dir is not None and (
                    s == steps or (self.checkpoint_every and s % self.checkpoint_every == 0)
                ):
                    self.save_checkpoint()
                if self.sample_every and s % self.sample_every == 0:
                    self._call_sample_fn(s)
        finally:
            bar.close()
            if csv_file is not None:
                csv_file.close()
        last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        loss = history[-1]["loss"] if history else float("nan")
        return TrainResult(self.step, loss, history, last, self._elapsed)

    def _train_step(self, s: int) -> tuple[float, float, float]:
        batch = self._next_batch(s)
        lr = self.lr_at(s)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model, batch, self.generator)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn must return a scalar tensor (use reduction='mean'), got {shape}"
            )
        loss = loss.reshape(())
        loss_value = self._mean_over_ranks(loss.detach())
        if not math.isfinite(loss_value):
            raise self._diverged(s, "loss")
        if not loss.requires_grad:
            raise ValueError(
                "the loss returned by loss_fn does not depend on the model's trainable parameters"
            )
        loss.backward()
        if self.world_size > 1:
            self._average_gradients()
        if self.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self._params if p.grad is not None]
            )
        grad_norm = float(norm)
        if not math.isfinite(grad_norm):  # identical on every rank: gradients are synchronised
            raise self._diverged(s, "gradient norm")
        self.optimizer.step()
        self._update_ema(s)
        self.step = s
        return loss_value, grad_norm, lr

    def _diverged(self, s: int, what: str) -> TrainingDiverged:
        last = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if self.is_main:
            logger.error(
                "%s became NaN/inf at step %d; stopping (last good checkpoint: %s)", what, s, last
            )
        return TrainingDiverged(s, what, last)

    def _mean_over_ranks(self, value: Tensor) -> float:
        if self.world_size == 1:
            return float(value)
        buf = value.reshape(1).to(torch.float64)
        dist.all_reduce(buf)
        return float(buf) / self.world_size

    def _average_gradients(self) -> None:
        for p in self._params:
            if (
                p.grad is None
            ):  # unused on this rank: contributes zero, keeps the all-reduce aligned
                p.grad = torch.zeros_like(p)
        for dtype in sorted({p.grad.dtype for p in self._params}, key=str):
            grads = [p.grad for p in self._params if p.grad.dtype == dtype]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat.div_(self.world_size)
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    @torch.no_grad()
    def _update_ema(self, s: int) -> None:
        # ema ← decay·ema + (1 − decay)·θ, written as a lerp towards θ.
        weight = 1.0 - ema_decay_at(s, self.ema_decay, self.ema_warmup)
        for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), weight)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------------ data
    def _next_batch(self, s: int) -> Tensor:
        if self._data is None:
            return self._next_from_loader()
        # Global batch s covers positions [(s−1)B, sB) of the stream perm_0 ‖ perm_1 ‖ …, so the
        # data order depends only on (seed, step): nothing to save, exact on resume.
        n, size = self._data.shape[0], self.batch_size
        start, end = (s - 1) * size, s * size
        first, last = start // n, (end - 1) // n
        for epoch in [e for e in self._perms if e < first]:
            del self._perms[epoch]
        pieces = []
        for epoch in range(first, last + 1):
            perm = self._perms.get(epoch)
            if perm is None:
                g = torch.Generator().manual_seed(_mix_seed(self.seed, "epoch", epoch))
                perm = self._perms[epoch] = torch.randperm(n, generator=g)
            pieces.append(perm[max(start - epoch * n, 0) : min(end - epoch * n, n)])
        index = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        local = size // self.world_size
        index = index[self.rank * local : (self.rank + 1) * local]
        return self._data[index.to(self._data.device)].to(self.device)

    def _next_from_loader(self) -> Tensor:
        for _ in range(2):
            if self._iterator is None:
                self._iterator = iter(self._loader)
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
        return item.to(self.device)

    def _sampler_state(self) -> dict[str, Any]:
        if self._data is None:
            return {"kind": "iterable", "exact_resume": False}
        n, consumed = self._data.shape[0], self.step * self.batch_size
        return {
            "kind": "tensor",
            "num_examples": n,
            "examples_consumed": consumed,
            "epoch": consumed // n,
            "position": consumed % n,
            "permutation": "randperm(N, Generator().manual_seed(blake2b(f'{seed}/epoch/{epoch}')))",
        }

    # ------------------------------------------------------------------ files
    def _prepare_run_dir(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            atomic_write_text(
                self.out_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False)
            )
        # Keep rows up to the current step only: rows a killed run logged after its last
        # checkpoint, and a partial end-of-fit row, are replayed by this run.
        kept = []
        if self.metrics_path.exists():
            for line in self.metrics_path.read_text(encoding="utf-8").splitlines()[1:]:
                fields = line.split(",")
                try:
                    step = int(fields[0])
                    if len(fields) != len(METRIC_COLUMNS):
                        continue
                    [float(f) for f in fields[1:]]
                except ValueError:
                    continue
                if step < self.step or (step == self.step and step % self.log_every == 0):
                    kept.append(line + "\n")
        atomic_write_text(self.metrics_path, ",".join(METRIC_COLUMNS) + "\n" + "".join(kept))

    def _new_window(self) -> dict[str, float]:
        return {"loss_sum": 0.0, "grad_norm_sum": 0.0, "count": 0, "start_seconds": self._elapsed}

    def _metrics_row(self, s: int, lr: float) -> dict[str, float]:
        w = self._window
        dt = self._elapsed - w["start_seconds"]
        return {
            "step": s,
            "loss": w["loss_sum"] / w["count"],
            "lr": lr,
            "grad_norm": w["grad_norm_sum"] / w["count"],
            "seconds": self._elapsed,
            "steps_per_s": w["count"] / dt if dt > 0 else float("nan"),
        }

    def _call_sample_fn(self, s: int) -> None:
        if not self.is_main:
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.sample_fn(self.ema_model, s, self.out_dir)

    # ------------------------------------------------------------------ checkpoints
    def _gather(self, obj: Any) -> list[Any]:
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def save_checkpoint(self) -> Path:
        """Save the current state as ``out_dir/checkpoints/step_{step:08d}.safetensors`` + ``.json``
        (rank 0 writes; a collective call under torchrun) and delete the oldest beyond
        ``keep_checkpoints``.  Returns the tensor file's path."""
        if self.out_dir is None:
            raise ValueError("save_checkpoint needs an out_dir")
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema_model.state_dict().items()})
        optim_tensors, optim_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(optim_tensors)
        cuda_states = []
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_states = [_encode_state(s) for s in torch.cuda.get_rng_state_all()]
        rng = {
            "generator_device": str(self.generator.device),
            "generators": self._gather(_encode_state(self.generator.get_state())),
            "torch_cpu": self._gather(_encode_state(torch.get_rng_state())),
            "cuda": self._gather(cuda_states),
        }
        path = checkpoint_paths(self.checkpoint_dir, self.step)[0]
        if self.is_main:
            metadata = {
                "config": self.config,
                "config_hash": config_hash(self.config),
                "trainer": self.settings,
                "rng": rng,
                "schedule": {
                    "name": self.schedule,
                    "warmup_steps": self.warmup_steps,
                    "total_steps": self.total_steps or self._fit_target,
                    "lr": self.lr_at(self.step) if self.step else 0.0,
                },
                "sampler": self._sampler_state(),
                "optimizer": optim_meta,
                "metrics_window": dict(self._window),
                "elapsed_seconds": self._elapsed,
                "world_size": self.world_size,
                "scorematch_version": _version(),
                "torch_version": torch.__version__,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            write_checkpoint(self.checkpoint_dir, self.step, tensors, metadata)
            rotate_checkpoints(self.checkpoint_dir, self.keep_checkpoints)
            logger.info("saved checkpoint %s", path)
        if self.world_size > 1:
            dist.barrier()
        return path

    def resume(
        self, path: str | os.PathLike | None = None, *, expected_changes: Collection[str] = ()
    ) -> int:
        """Load a checkpoint (default: the newest complete one in ``out_dir``) into the model,
        EMA, optimizer, RNGs, step counter and metrics window; returns the step.  Raises
        ``FileNotFoundError`` if there is none, ``ValueError`` if it does not fit this model.

        A warning names the config keys (dotted, e.g. ``model.width``) that differ from the
        checkpoint's, except those in ``expected_changes`` (e.g. ``training.steps`` when a run
        is extended on purpose)."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("resume() needs a checkpoint path or an out_dir")
            path = latest_checkpoint(self.checkpoint_dir)
            if path is None:
                raise FileNotFoundError(f"no complete checkpoint in {str(self.checkpoint_dir)!r}")
        ckpt = read_checkpoint(path)
        self._load(ckpt, set(expected_changes))
        if self.is_main:
            logger.info("resumed from %s (step %d)", ckpt.path, self.step)
        return self.step

    def _load(self, ckpt: Checkpoint, expected_changes: Collection[str] = ()) -> None:
        meta, where = ckpt.metadata, str(ckpt.path)
        for key in ("rng", "optimizer", "metrics_window", "elapsed_seconds"):
            if key not in meta:
                raise ValueError(
                    f"checkpoint {where!r} lacks {key!r}: it was not written by Trainer"
                )
        if ckpt.ema_state is None:
            raise ValueError(f"checkpoint {where!r} holds no EMA weights")
        load_module_state(self.model, ckpt.model_state, where)
        load_module_state(self.ema_model, ckpt.ema_state, where)

        state = unflatten_optimizer_state(ckpt.tensors, meta["optimizer"])
        current = self.optimizer.state_dict()
        sizes = [len(g["params"]) for g in meta["optimizer"]["param_groups"]]
        if sizes != [len(g["params"]) for g in current["param_groups"]]:
            raise ValueError(
                f"checkpoint {where!r}: optimizer parameter groups {sizes} do not match the model"
            )
        for index, entries in state.items():
            if index >= len(self._params):
                raise ValueError(
                    f"checkpoint {where!r}: optimizer state for parameter {index} not in the model"
                )
            for key, value in entries.items():
                if (
                    isinstance(value, Tensor)
                    and value.ndim > 0
                    and value.shape != self._params[index].shape
                ):
                    raise ValueError(
                        f"checkpoint {where!r}: optimizer {key} of parameter {index} has shape "
                        f"{tuple(value.shape)}, the model's is {tuple(self._params[index].shape)}"
                    )
        current["state"] = state
        self.optimizer.load_state_dict(current)  # keeps this trainer's hyperparameters

        self._load_rng(meta, where)
        saved = meta.get("trainer", {})
        changed = {k: (saved.get(k), v) for k, v in self.settings.items() if saved.get(k) != v}
        if changed and self.is_main:
            logger.warning(
                "resuming %s with changed settings (checkpoint, now): %s", where, changed
            )
        if meta.get("config_hash") != config_hash(self.config) and self.is_main:
            keys = [
                k
                for k in _config_changes(meta.get("config"), self.config)
                if k not in expected_changes
            ]
            if keys:
                logger.warning("resuming %s with a different config: %s", where, ", ".join(keys))
        if self._loader is not None and self.is_main:
            logger.warning("data is an iterable: its order restarts on resume (not exact)")
        self.step = int(meta["step"])
        self._restored = True
        self._elapsed = float(meta["elapsed_seconds"])
        self._window = dict(meta["metrics_window"])
        self._perms.clear()
        self._iterator = None

    def _load_rng(self, meta: dict[str, Any], where: str) -> None:
        rng = meta["rng"]
        exact = meta.get("world_size", 1) == self.world_size
        try:
            if not exact:
                raise ValueError(f"saved with world size {meta.get('world_size')}")
            self.generator.set_state(_decode_state(rng["generators"][self.rank]))
            torch.set_rng_state(_decode_state(rng["torch_cpu"][self.rank]))
            cuda = rng["cuda"][self.rank]
            if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([_decode_state(s) for s in cuda])
        except (RuntimeError, ValueError, IndexError, KeyError) as err:
            # e.g. a CUDA run resumed on CPU: continue with fresh, still deterministic streams.
            step = int(meta["step"])
            self.generator.manual_seed(_mix_seed(self.seed, "resume", self.rank, step))
            torch.manual_seed(_mix_seed(self.seed, "resume-global", self.rank, step))
            if self.is_main:
                logger.warning(
                    "%s: RNG state not restored (%s); noise after resume differs from an uninterrupted run",
                    where,
                    err,
                )


def _format_row(row: dict[str, float]) -> str:
    # repr keeps every bit of the floats, so rows of a resumed run equal the uninterrupted ones.
    return (
        f"{row['step']},{row['loss']!r},{row['lr']!r},{row['grad_norm']!r},"
        f"{row['seconds']:.3f},{row['steps_per_s']:.4g}"
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scorematch")
    except PackageNotFoundError:
        return "unknown"
