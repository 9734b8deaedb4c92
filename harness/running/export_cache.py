"""Exports kept for the next `export` of an unchanged store. An export reads every run through
MLflow and analyses them with SciPy: about 5 s here for a 3-row table, most of it imports. `run`
and `report` render every table in every format as they finish, and `export` renders one; each is
kept in the user cache under the *state* it was read from:

- everything the experiment's rows hold in the store (runs, tags, params, metrics, experiment
  tags: harness/tracking/direct.py) and the size and time of each run's artifact files the tables
  read (`confusion_matrix.csv`, `predictions.npz`), for a local SQLite store only;
- the harness package's files and the versions of the libraries that compute the tables.

A text is kept only when the state was the same before and after it was read, so another writer
(or artifacts that follow a moved store on its first read) keeps nothing; what the reading printed
on standard error (a foreign tag, say) is kept beside it and printed again. Anything that cannot be
read or written here costs only speed: the export is computed as before."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from harness.base.files import atomic_write, cache_dir
from harness.tracking import addresses, direct

FORMAT = 1  # bump when an export's text changes for the same store and code
KEPT = 200  # the newest exports the cache keeps
LIBRARIES = ("numpy", "scipy", "pandas", "mlflow")
ARTIFACTS = ("confusion_matrix.csv", "predictions.npz")


def state(uri: str, name: str) -> str | None:
    """The state an export of experiment `name` depends on, as a digest; None when the store is not a
    local SQLite file that sqlite3 can read."""
    if not uri.startswith("sqlite:///"):
        return None
    path = addresses.sqlite_path(uri)
    try:
        read = direct.digest(path, name)
        if read is None:
            return None
        rows, artifacts = read
        files = [_stat(Path(folder) / f) for folder in artifacts for f in ARTIFACTS]
    except OSError:
        return None
    key = [FORMAT, _code(), str(path.resolve()), name, rows, files]
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=1)
def _code() -> str:
    """The name, size and modification time of every file of the installed harness package, and
    the versions of the libraries the tables are computed with."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
    for lib in LIBRARIES:
        try:
            h.update(f"{lib} {version(lib)}\n".encode())
        except PackageNotFoundError:
            h.update(f"{lib} -\n".encode())
    return h.hexdigest()


def _path(key: str, which: str, fmt: str, name_in_caption: bool) -> Path:
    part = hashlib.sha256(repr([key, which, fmt, name_in_caption]).encode()).hexdigest()[:32]
    return cache_dir() / "exports" / f"{part}.json"


def read(key: str | None, which: str, fmt: str, name_in_caption: bool) -> tuple[str, str] | None:
    """(the text, what its reading printed on standard error) kept under `key`, or None."""
    if key is None:
        return None
    try:
        kept = json.loads(_path(key, which, fmt, name_in_caption).read_text(encoding="utf-8"))
        return str(kept["text"]), str(kept["stderr"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(key: str, texts: dict[tuple[str, str, bool], str], stderr: str) -> None:
    """Keep `texts` ((table, format, name_in_caption) -> text) under `key`; the oldest beyond KEPT go."""
    try:
        for (which, fmt, flag), text in texts.items():
            atomic_write(_path(key, which, fmt, flag), json.dumps({"text": text, "stderr": stderr}))
        files = sorted((cache_dir() / "exports").glob("*.json"), key=lambda f: f.stat().st_mtime_ns, reverse=True)
        for old in files[KEPT:]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # an unwritable cache, or another process pruning at the same time: it costs only speed
