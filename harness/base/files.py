"""The one atomic writer: temporary file, flush, fsync, rename, fsync of the folder. A process
killed at any moment leaves either the previous file or the new one, never a torn or empty one; a
failed write (no space left, say) leaves the previous file intact and names the path. Checkpoints,
reports and their figures, tuning files, caches and benchmark results all go through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from harness.base import faults


class WriteError(OSError):
    """A file could not be written; the message names it."""


def atomic_write(path: Path, payload: bytes | str, fault_point: str = "") -> Path:
    """Write `payload` (text is UTF-8) to `path` whole or not at all; returns `path`."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            half = len(payload) // 2
            f.write(payload[:half])
            if fault_point:
                faults.point(fault_point)  # a kill here leaves a half-written temporary file
            f.write(payload[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _sweep(path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write {str(path)!r}: {e.strerror or e}") from e
    return path


def _sweep(path: Path) -> None:
    """Remove the temporary files that killed writers of `path` left (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with this id exists (a temporary file's writer, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_with_leftovers(path: Path) -> None:
    """Remove `path` and any temporary file an interrupted write of it left behind."""
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def cache_dir() -> Path:
    """The user cache: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    if os.environ.get("HARNESS_CACHE_DIR"):
        return Path(os.environ["HARNESS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock (flock) on the file `path`, created with its folder on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
