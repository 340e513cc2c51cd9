"""One writer per run folder: a lock file holding the writer's PID and host.

Two trainings into one folder would mix their files (one's config, the other's weights; one's
cleanup deleting the other's temporary files).  A writer therefore holds ``RUN/.lock`` for as long
as it writes: an exclusive ``flock`` on that file, which the kernel releases when the process ends
however it ends (SIGKILL included), so a lock is never left held by a dead process.  The file's
content says who holds it — PID, host, start time, command — for the one-line refusal a second
writer gets; a file left behind by a killed holder is taken over with a warning naming it.  Where
``fcntl`` is missing (Windows) the file is created exclusively instead, and a stale one is
recognised by its PID no longer running on this host.

Within one process the lock is re-entrant (``runs.train`` holds it around ``Trainer.fit``, which
takes it too).  A new folder is created with the lock inside it, and with its first files
(``config.yaml``), by one rename (``hold_run_lock(..., config=...)``), so no other process ever
sees the folder without them.
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

from ..io import file_mode, is_temp_file
from .metrics_log import run_dir_files

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "RunLocked",
    "check_unlocked",
    "hold_run_lock",
    "is_leftover",
]

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
_HELD: dict[str, list] = {}  # folder (resolved) → [file descriptor, depth]


class RunLocked(ValueError):
    """Another live process writes this run folder."""


def _describe(info: dict) -> str:
    since = f", since {info['started']}" if info.get("started") else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{since}"


def _read_info(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return info if isinstance(info, dict) else {}
    return {}


def is_leftover(path: str | os.PathLike) -> bool:
    """True for what a writer leaves in a folder it did not finish: the lock file, a temporary
    file of an atomic write.  A folder holding only these counts as empty for a new run."""
    return Path(path).name == LOCK_NAME or is_temp_file(path)


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


def check_unlocked(folder: str | os.PathLike) -> None:
    """Raise ``RunLocked`` now if another live process holds the lock of ``folder`` (so that a
    second writer is refused before it reads or prints anything; holding the lock is what
    actually keeps writers apart)."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    if os.path.realpath(folder) in _HELD or not path.exists():
        return
    if fcntl is None:
        info = _read_info(path)
        if info.get("host") != socket.gethostname() or _pid_alive(info.get("pid")):
            raise _refusal(folder, info)
    elif not _lock_is_free(path):
        raise _refusal(folder, _read_info(path))


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

    A missing folder is created, atomically, holding the lock and the run's first files
    (``config.yaml`` of ``config``, see ``metrics_log.run_dir_files``).  Raises ``RunLocked`` (a
    one-line ``ValueError``) when another live process holds the lock.  Re-entrant within one
    process."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        fd = _create(folder, run_dir_files(config)) if not folder.exists() else None
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
