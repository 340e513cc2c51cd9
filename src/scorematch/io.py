"""Atomic file writes — a reader sees either the old file or the complete new one, never a torn
write — and reading YAML with a one-line error naming the file.

Each writer puts the data in a temporary file in the destination's directory (same file system),
flushes it to disk, then renames it over the destination with ``os.replace``, which POSIX and
Windows perform atomically.  A process killed mid-write leaves at most a hidden ``.NAME.*.tmp*``
file behind, never a truncated ``NAME`` (``is_temp_file`` recognises them, so that the one writer of
a folder can remove them).  The new file gets the permissions an ``open()`` would give it (0666
less the umask), not ``mkstemp``'s private 0600, and a failed write (a full disk) is an ``OSError``
that names the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_mode",
    "is_temp_file",
    "read_yaml",
]

# ``.{stem}.{mkstemp's 8 random characters}.tmp{suffix}``, as ``_temp_path`` names them.
_TEMP_NAME = re.compile(r"^\..*\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")


def is_temp_file(path: str | os.PathLike) -> bool:
    """True for the name of a temporary file that an atomic write left behind (killed mid-write)."""
    return bool(_TEMP_NAME.match(Path(path).name))


def _umask() -> int:
    # Linux tells the umask without changing it; elsewhere set-and-restore (a brief race between
    # threads, the documented way to read it).
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(directory: bool = False) -> int:
    """The permissions a new file (0666) or folder (0777) gets under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _temp_path(path: Path) -> Path:
    # Keep the destination's suffix last: savers such as matplotlib or numpy pick the format
    # (or append an extension) from it.
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    with contextlib.suppress(OSError):  # mkstemp makes it 0600; give it an ordinary file's mode
        os.chmod(name, file_mode())
    return Path(name)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (e.g. Windows), so best effort.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(path: str | os.PathLike, save_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically with a function that writes to a file name it is given.

    ``save_fn(tmp_path)`` must write the whole file at ``tmp_path`` (a fresh file in the same
    directory with the same suffix, e.g. ``lambda p: fig.savefig(p)``); it is then flushed to disk
    and renamed over ``path``.  If ``save_fn`` raises, the temporary file is removed, ``path`` is
    left untouched and the exception propagates; an ``OSError`` (disk full, no permission) is
    raised again as one of the same type whose message names ``path``.  Returns ``path``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"directory {str(path.parent)!r} does not exist (writing {str(path)!r})"
        )
    tmp = _temp_path(path)
    try:
        save_fn(tmp)
        if not tmp.exists():
            raise ValueError(
                f"save_fn did not write the temporary file {str(tmp)!r} for {str(path)!r}"
            )
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.errno is not None and str(path) not in str(err):
            raise OSError(err.errno, f"could not write {path}: {err.strerror or err}") from err
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    return atomic_save(path, lambda tmp: Path(tmp).write_bytes(bytes(data)))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    return atomic_write_bytes(path, text.encode(encoding))


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's content (``yaml.safe_load`` only); a one-line ``ValueError`` naming the file
    when it does not parse or is not UTF-8 text."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
