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
from harness.base.errors import UsageError


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


def sqlite_uri(path: Path, mode: str) -> str:
    """SQLite's `file:` URI of `path` opened with `mode` ("ro", "rw", ...). The path is quoted: in a
    URI a folder's `?`, `#` or `%` would otherwise end the path or be decoded."""
    from urllib.parse import quote

    return f"file:{quote(str(path), safe='/')}?mode={mode}"


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


SQLITE_HEADER = b"SQLite format 3\x00"


def check_target(out: str | os.PathLike, where: str, force: bool = False, store: Path | None = None) -> Path:
    """The file a command is asked to write (`export --out`, `bench --out`), refused in one line before
    any work: a name ending in a separator (a folder that is not there), a name the system cannot hold,
    a link, a folder, a FIFO or a device, a folder that does not exist, a read-only file; never the store
    the command reads (`store`, with its journal files) nor any SQLite database; and an existing file
    only with `force` (the command did not create it, so replacing it is the user's decision)."""
    text = os.fspath(out)
    path = Path(text)
    if not text or text.endswith((os.sep, "/")):
        raise UsageError(f"{where}: {text!r} names a folder; expected the path of a file to write")
    try:
        exists, link = path.exists(), path.is_symlink()
    except OSError as e:  # a name too long for the file system, say
        raise UsageError(f"{where}: {text[:60]!r}...: {e.strerror or e}") from None
    if link or (exists and not path.is_file()):
        kind = "a link" if link else "a directory" if path.is_dir() else "not a regular file (a FIFO or device)"
        raise UsageError(f"{where}: {text!r} is {kind}; expected the path of a file to write")
    if not path.parent.is_dir():
        raise UsageError(f"{where}: the folder {str(path.parent)!r} does not exist; create it or write elsewhere")
    if store is not None and _same_file(path, store):
        raise UsageError(f"{where}: {text!r} is the MLflow store this command reads; write the table elsewhere")
    if not exists:
        return path
    if _is_sqlite(path):
        raise UsageError(
            f"{where}: {text!r} is a SQLite database (an MLflow or Optuna store?); nothing is written over one"
        )
    if (
        not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222
    ):  # root may write anything; it is still read-only
        raise UsageError(f"{where}: {text!r} is read-only; write elsewhere")
    if not force:
        flag = "--force" if where.startswith("--") else "force=True"
        raise UsageError(f"{where}: {text!r} exists; pass {flag} to replace it, or write elsewhere")
    return path


def _same_file(path: Path, store: Path) -> bool:
    """Whether `path` is the store or one of SQLite's companion files beside it."""
    try:
        target = path.resolve()
        base = store.resolve()
    except OSError:
        return False
    return target in {base, *(base.with_name(base.name + end) for end in ("-wal", "-shm", "-journal"))}


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False
