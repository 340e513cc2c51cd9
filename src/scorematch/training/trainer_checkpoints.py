"""The ``Trainer``'s checkpoint methods: saving the whole train state at the current step and
resuming from a saved one (the format is :mod:`.checkpoint`, the state :mod:`.train_state`).

Kept apart from the training loop (:mod:`.trainer`) so that each reads on its own; ``Trainer``
inherits them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

from .checkpoint import Checkpoint, config_hash
from .recovery import read_checkpoint
from .train_state import choose_resume_checkpoint as choose_checkpoint
from .train_state import restore_train_state, save_train_state, warn_on_changes

__all__ = ["TrainerCheckpoints"]

logger = logging.getLogger("scorematch.training.trainer")


class TrainerCheckpoints:
    """``save_checkpoint`` and ``resume`` of a ``Trainer`` (they use its attributes)."""

    def save_checkpoint(self) -> Path:
        """Save the current state as ``out_dir/checkpoints/step_{step:08d}.safetensors`` + ``.json``
        (rank 0 writes; a collective call under torchrun) and delete the oldest beyond
        ``keep_checkpoints``.  Returns the tensor file's path."""
        if self.out_dir is None:
            raise ValueError("save_checkpoint needs an out_dir")
        metadata = {
            "config": self.config,
            "config_hash": config_hash(self.config),
            "trainer": self.settings,
            "schedule": {
                "name": self.schedule,
                "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps or self._fit_target,
                "lr": self.lr_at(self.step) if self.step else 0.0,
            },
            "sampler": self._batches.state(self.step),
            "metrics_window": dict(self._window),
            "elapsed_seconds": self._elapsed,
            "validation": None if self.validation is None else self.validation.state(),
            "step_engine": self.engine.state(),
        }
        best = None if self.validation is None else self.validation.best_step
        protect = () if best is None else (best,)
        return save_train_state(
            self.checkpoint_dir,
            self.step,
            metadata,
            model=self.model,
            ema_model=self.ema_model,
            optimizer=self.optimizer,
            generator=self.generator,
            world_size=self.world_size,
            rank=self.rank,
            keep=self.keep_checkpoints,
            protect=protect,
        )

    def resume(
        self,
        path: str | os.PathLike | Checkpoint | None = None,
        *,
        expected_changes: Collection[str] = (),
    ) -> int:
        """Load a checkpoint (default: the newest good one in ``out_dir``) into the model,
        EMA, optimizer, RNGs, step counter and metrics window; returns the step.  Raises
        ``FileNotFoundError`` if there is none, ``ValueError`` if it does not fit this model.

        A warning names the config keys (dotted, e.g. ``model.width``) that differ from the
        checkpoint's, except those in ``expected_changes`` (e.g. ``training.steps`` when a run
        is extended on purpose).  The data order needs nothing from the checkpoint: it is
        recomputed from the step (the ``"sampler"`` field is a record only)."""
        if path is None:
            if self.out_dir is None:
                raise ValueError("resume() needs a checkpoint path or an out_dir")
            path = choose_checkpoint(self.checkpoint_dir, quarantine=self.is_main)
            if path is None:
                raise FileNotFoundError(f"no complete checkpoint in {str(self.checkpoint_dir)!r}")
        ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path)
        restore_train_state(
            ckpt,
            model=self.model,
            ema_model=self.ema_model,
            optimizer=self.optimizer,
            params=self._params,
            generator=self.generator,
            world_size=self.world_size,
            rank=self.rank,
            seed=self.seed,
        )
        if self.is_main:
            warn_on_changes(ckpt, self.settings, self.config, set(expected_changes))
        if not self._batches.exact_resume and self.is_main:
            logger.warning("data is an iterable: its order restarts on resume (not exact)")
        self._batches.restart()
        self.step = int(ckpt.metadata["step"])
        self._restored = True
        self._elapsed = float(ckpt.metadata["elapsed_seconds"])
        self._window = dict(ckpt.metadata["metrics_window"])
        if self.validation is not None and ckpt.metadata.get("validation"):
            self.validation.load_state(ckpt.metadata["validation"])
        self.engine.load_state(ckpt.metadata.get("step_engine"))
        if self.is_main:
            logger.info("resumed from %s (step %d)", ckpt.path, self.step)
        return self.step
