"""How a ``Trainer.fit`` ends before its last step, and the wall clock of its checkpoints.

- ``TrainingDiverged``: the loss or the gradient norm became NaN/inf (the bad update is not
  applied; the newest good checkpoint is named).
- ``TrainingInterrupted``: SIGTERM or Ctrl-C (SIGINT).  ``StopSignals`` turns either into a flag
  that the loop reads between two steps — never in the middle of an optimizer update — so that the
  state it then saves is a consistent one; a second Ctrl-C stops at once (the atomic writes keep
  every file whole even then).
- ``SaveSchedule``: the steps a fit saves at — its last, every so many steps, and also every so
  many seconds of wall time, so that a kill never loses much whatever the step grid.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .checkpoint import latest_checkpoint

__all__ = ["SaveSchedule", "StopSignals", "TrainingDiverged", "TrainingInterrupted"]


class TrainingDiverged(ValueError):
    """The loss or the gradient norm became NaN/inf.  The bad update is not applied and nothing is
    saved after it: ``step`` is the failing step, ``checkpoint`` the newest good one on disk."""

    def __init__(self, step: int, what: str, checkpoint: Path | None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = str(checkpoint) if checkpoint is not None else "none (no checkpoint written)"
        super().__init__(f"{what} became NaN/inf at step {step}; last good checkpoint: {where}")


class TrainingInterrupted(KeyboardInterrupt):
    """A fit stopped by SIGTERM or SIGINT between two steps.  ``signum`` is the signal, ``step`` the
    last completed step and ``checkpoint`` the checkpoint holding it (None without an out_dir).
    A ``KeyboardInterrupt``, so code that handles Ctrl-C handles it too."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None, saved: bool) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        if checkpoint is None:
            what = "nothing saved (no run folder)"
        else:
            what = f"{'saved' if saved else 'its checkpoint is'} {checkpoint}; resume to continue"
        super().__init__(f"training stopped by {name} at step {step}: {what}")

    def __str__(self) -> str:
        return str(self.args[0])


class StopSignals:
    """While active (``with``), SIGINT and SIGTERM set ``signum`` instead of ending the process;
    a second SIGINT raises ``KeyboardInterrupt`` at once.  Inactive when ``enabled`` is false or
    outside the main thread (only it may install handlers); the previous handlers come back on
    exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if self.enabled:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def interrupted(
        self, step: int, directory: Path | None, save: Callable[[], Path]
    ) -> TrainingInterrupted:
        """The exception that ends the fit at ``step``: ``save()`` is called unless there is no
        checkpoint ``directory`` or its newest checkpoint already holds that step."""
        assert self.signum is not None
        last = latest_checkpoint(directory) if directory is not None else None
        if directory is None or (last is not None and last.stem == f"step_{step:08d}"):
            return TrainingInterrupted(self.signum, step, last, saved=False)
        return TrainingInterrupted(self.signum, step, save(), saved=True)


class SaveSchedule:
    """When a fit saves: after step ``last``, on the grid of ``every`` steps, and once ``seconds``
    of wall time have passed since the start or the last save (``saved``)."""

    clock = staticmethod(time.monotonic)  # seconds; a test may replace it

    def __init__(self, every: int | None, seconds: float | bool | None, last: int) -> None:
        self.every, self.seconds, self.last = every, seconds or None, last
        self._since = self.clock()

    def due(self, step: int) -> bool:
        on_grid = self.every is not None and step % self.every == 0
        late = self.seconds is not None and self.clock() - self._since >= self.seconds
        return step == self.last or on_grid or late

    def saved(self) -> None:
        self._since = self.clock()
