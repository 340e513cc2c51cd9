"""A run folder and its files: ``RunDir`` is the one place that names them, creates the folder,
locks it, and reads and writes its ``config.yaml`` and JSON records.

A run folder holds::

    RUN/config.yaml            the resolved config: everything needed to rebuild the run
    RUN/checkpoints/           step_N.safetensors + step_N.json (``training.checkpoint``)
    RUN/metrics.csv            one row per logging window (``training.metrics_log``)
    RUN/samples/, RUN/plots/   pictures
    RUN/selection.json         what the run chose on its validation rows
    RUN/evaluation*.json       evaluations (``evaluation_tmin-T.json`` at an explicit t_min)
    RUN/NAME.json              any other record: ``RunDir.write_json(NAME.json, ...)``
    RUN/.lock                  held by the one process that writes the folder

Every file is written atomically (``scorematch.io``).  A feature that stores something with a run
(tuned sampler grids, column metadata, conditioning settings) writes its own record with
``write_json`` and reads it back with ``read_json``: no other plumbing.

One writer per folder.  Two trainings into one folder would mix their files (one's config, the
other's weights; one's cleanup deleting the other's temporary files).  A writer therefore holds
``RUN/.lock`` for as long as it writes: an exclusive ``flock`` on that file, which the kernel
releases when the process ends however it ends (SIGKILL included), so a lock is never left held by
a dead process.  The file's content says who holds it — PID, host, start time, command — for the
one-line refusal a second writer gets; a file left behind by a killed holder is taken over with a
warning naming it.  Where ``fcntl`` is missing (Windows) the file is created exclusively instead,
and a stale one is recognised by its PID no longer running on this host.  Within one process the
lock is re-entrant.  A new folder is created with the lock inside it, and with its first files
(``config.yaml``), by one rename (``RunDir.lock(config=...)``), so no other process ever sees the
folder without them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from .io import atomic_write_text, file_mode, is_temp_file, read_yaml

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_FILE",
    "CONFIG_SECTIONS",
    "LOCK_NAME",
    "SELECTION_FILE",
    "RunDir",
    "RunLocked",
    "hold_run_lock",
    "is_leftover",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
METRICS_FILE = "metrics.csv"
SELECTION_FILE = "selection.json"
EVALUATION_FILE = "evaluation.json"
LOCK_NAME = ".lock"
# The sections every run config has (``RunDir.read_config`` checks them).
CONFIG_SECTIONS = ("data", "standardizer", "model", "objective", "training", "sampling")
_HELD: dict[str, list] = {}  # folder (resolved) → [file descriptor, depth]


class RunDir:
    """The folder of one run at ``path`` (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- paths
    def file(self, name: str) -> Path:
        """The path of the file ``name`` in the folder."""
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder, ``RUN/checkpoints``."""
        return self.path / CHECKPOINTS

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def samples(self) -> Path:
        """Where training writes its periodic sample plots."""
        return self.path / "samples"

    @property
    def plots(self) -> Path:
        """Where ``make_plots`` writes by default."""
        return self.path / "plots"

    def evaluation_path(self, t_min: float | None = None) -> Path:
        """``RUN/evaluation.json`` at the run's own settings, ``RUN/evaluation_tmin-T.json`` for an
        explicit ``t_min = T`` (``:g``), so that another bandwidth never replaces the default."""
        if t_min is None:
            return self.path / EVALUATION_FILE
        return self.path / f"evaluation_tmin-{float(t_min):g}.json"

    # -- what the folder holds
    def is_run(self) -> bool:
        """True when the folder holds a run (a ``config.yaml`` written by ``train``)."""
        return self.config_path.is_file()

    def is_empty(self) -> bool:
        """True when the folder does not exist or holds only what an unfinished writer leaves
        (``is_leftover``): a new run may go there."""
        if not self.path.exists():
            return True
        return self.path.is_dir() and all(is_leftover(p) for p in self.path.iterdir())

    def check_new(self) -> None:
        """A fresh run goes into a new or empty folder, never over another run or other files:
        a one-line ``ValueError`` otherwise (the words of ``train --out``)."""
        out = self.path
        if out.exists() and (self.is_run() or any(self.checkpoints.glob("step_*.json"))):
            raise ValueError(
                f"{out} already holds a run; pass --resume to continue it or choose a new --out"
            )
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")
        if not self.is_empty():
            raise ValueError(f"--out {out} is not empty; choose a new or empty directory")

    # -- config.yaml
    @staticmethod
    def config_text(config: Mapping[str, Any]) -> str:
        """The text of a ``config.yaml`` holding ``config``."""
        return yaml.safe_dump(dict(config), sort_keys=False)

    def read_config(self) -> dict[str, Any]:
        """The resolved config the folder holds, checked for its sections."""
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory (no {CONFIG_FILE})")
        config = read_yaml(self.config_path)
        if not isinstance(config, dict) or any(k not in config for k in CONFIG_SECTIONS):
            raise ValueError(
                f"{self.config_path} is not a scorematch run config "
                f"(needs keys {', '.join(CONFIG_SECTIONS)})"
            )
        return config

    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write ``config.yaml`` (atomically; the folder must exist)."""
        return atomic_write_text(self.config_path, self.config_text(config))

    # -- JSON records (selection.json, evaluation*.json, and whatever a feature keeps)
    def read_json(self, name: str) -> dict[str, Any] | None:
        """The JSON object in ``RUN/name``, or None when there is no such file."""
        path = self.file(name)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return data

    def write_json(self, name: str, data: Mapping[str, Any]) -> Path:
        """Write ``data`` as ``RUN/name`` (indented JSON, atomically)."""
        return atomic_write_text(self.file(name), json.dumps(data, indent=2) + "\n")

    # -- the one writer
    def lock(self, *, config: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager:
        """Hold the folder's lock for a ``with`` block (``hold_run_lock``); a missing folder is
        created, atomically, holding the lock and ``config.yaml`` of ``config``."""
        return hold_run_lock(self.path, config=config)

    def check_unlocked(self) -> None:
        """Raise ``RunLocked`` now if another live process holds the lock (so that a second
        writer is refused before it reads or prints anything; holding the lock is what actually
        keeps writers apart)."""
        path = self.path / LOCK_NAME
        if os.path.realpath(self.path) in _HELD or not path.exists():
            return
        if fcntl is None:
            info = _read_info(path)
            if info.get("host") != socket.gethostname() or _pid_alive(info.get("pid")):
                raise _refusal(self.path, info)
        elif not _lock_is_free(path):
            raise _refusal(self.path, _read_info(path))

    def remove_temp_files(self) -> None:
        """Delete what atomic writes killed mid-way left of the files a training owns: its
        ``config.yaml`` and ``metrics.csv`` and the plots in ``samples/`` (``checkpoints/`` is
        swept by rotation).  Only for the lock holder; the temporary files of readers
        (``evaluate``'s ``evaluation.json``, ``plot``'s ``plots/``) are left alone: they may be
        in flight."""
        owned = [p for p in self.path.glob(".*") if p.name.startswith((".config.", ".metrics."))]
        samples = list(self.samples.glob(".*")) if self.samples.is_dir() else []
        for entry in owned + samples:
            if is_temp_file(entry) and entry.is_file():
                entry.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# The lock
# ------------------------------------------------------------------------------------------------
class RunLocked(ValueError):
    """Another live process writes this run folder."""


def is_leftover(path: str | os.PathLike) -> bool:
    """True for what a writer leaves in a folder it did not finish: the lock file, a temporary
    file of an atomic write.  A folder holding only these counts as empty for a new run."""
    return Path(path).name == LOCK_NAME or is_temp_file(path)


def _describe(info: dict) -> str:
    since = f", since {info['started']}" if info.get("started") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{since}"


def _read_info(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return info if isinstance(info, dict) else {}
    return {}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _refusal(folder: Path, info: dict) -> RunLocked:
    where = (
        ""
        if info.get("host") == socket.gethostname()
        else (f"; if that process is gone, delete {folder / LOCK_NAME}")
    )
    return RunLocked(
        f"{folder} is in use by another training ({_describe(info)}); wait for it to end or "
        f"choose another folder{where}"
    )


def _open_locked(folder: Path) -> int:
    """A file descriptor of ``folder/.lock`` holding the lock; ``RunLocked`` if a live process
    holds it.  Warns when it takes over the file of a holder that was killed."""
    path = folder / LOCK_NAME
    while True:
        if fcntl is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                info = _read_info(path)
                if info.get("host") != socket.gethostname() or _pid_alive(info.get("pid")):
                    raise _refusal(folder, info) from None
                logger.warning("taking over the stale lock of %s in %s", _describe(info), folder)
                path.unlink(missing_ok=True)
                continue
            return fd
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _refusal(folder, _read_info(path)) from None
        try:  # the holder we waited for may have unlinked the file on release: take the new one
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(fd)):
            break
        os.close(fd)
    info = _read_info(path)
    if info.get("pid") is not None:  # nobody held it, yet it names a holder: one that was killed
        logger.warning(
            "taking over the lock of %s in %s (that process is no longer running)",
            _describe(info),
            folder,
        )
    return fd


def _write_info(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:200],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))


def _sweep_staging(parent: Path, name: str) -> None:
    # Folders staged by a process killed before its rename: their lock is free again.
    for entry in parent.glob(f".{glob.escape(name)}.*.new"):
        if entry.is_dir() and (fcntl is None or _lock_is_free(entry / LOCK_NAME)):
            shutil.rmtree(entry, ignore_errors=True)


def _lock_is_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _create(folder: Path, files: Mapping[str, str]) -> int | None:
    """Create ``folder`` holding ``files`` and the lock (held: its descriptor) by renaming a
    staged folder onto it; None when the folder appeared meanwhile (then lock it in place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep_staging(folder.parent, folder.name)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".new"))
    fd = None
    try:
        os.chmod(staging, file_mode(directory=True))
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        fd = _open_locked(staging)
        _write_info(fd)
        try:
            os.rename(staging, folder)  # atomic; onto an empty folder too, never a full one
        except OSError:
            if not folder.exists():
                raise
            os.close(fd)
            fd = None
            shutil.rmtree(staging, ignore_errors=True)
            return None  # another process created it first: lock it in place (or be refused)
        return fd
    except BaseException:
        if fd is not None:
            os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def hold_run_lock(
    folder: str | os.PathLike | None, *, config: Mapping | None = None
) -> Iterator[None]:
    """Hold the lock of run folder ``folder`` for the ``with`` block (None: do nothing).

    A missing folder is created, atomically, holding the lock and the run's first file
    (``config.yaml`` of ``config``).  Raises ``RunLocked`` (a one-line ``ValueError``) when
    another live process holds the lock.  Re-entrant within one process."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        files = {} if config is None else {CONFIG_FILE: RunDir.config_text(config)}
        fd = _create(folder, files) if not folder.exists() else None
        if fd is None:
            fd = _open_locked(folder)
            _write_info(fd)
        _HELD[os.path.realpath(folder)] = [fd, 1]
        key = os.path.realpath(folder)
    try:
        yield
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            fd = _HELD.pop(key)[0]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # an empty lock file: released, not a killed holder's
            if fcntl is not None:  # unlink while locked; a waiter then finds the file gone
                with contextlib.suppress(OSError):
                    (Path(key) / LOCK_NAME).unlink()
            os.close(fd)
            if fcntl is None:  # Windows cannot unlink an open file
                with contextlib.suppress(OSError):
                    (Path(key) / LOCK_NAME).unlink()
