"""Making a SQLite store whole or not at all. MLflow creates its tables and then migrates them in
place, over seconds: a first `run` killed then used to leave a half-migrated `mlflow.db` that
every later command refused. Here the store is built under a temporary name beside the database
and renamed into place, under a lock beside it, so a kill at any moment leaves no store or a
whole one. A half-made store that holds no runs (left by an older version, or by MLflow itself)
is made again the same way; one that holds runs is never touched.

MLflow's migrations take about 3 s; they run once per MLflow version into an empty store kept in the
user cache (harness/base/files.py), and each new store is a copy of it (a few milliseconds)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

from harness.base import files
from harness.base.files import cache_dir, file_lock, pid_alive

SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside a database, which follow its name


def ensure(uri: str) -> str:
    """Create the SQLite store at `uri` unless a whole one is there; returns a note when a
    half-made one was replaced ('' otherwise, and for stores that are not SQLite files)."""
    if not uri.startswith("sqlite:///"):
        return ""
    path = Path(uri[len("sqlite:///") :]).resolve()
    with file_lock(path.with_name(f".{path.name}.create.lock")):
        _sweep(path)
        state = _state(path)
        if state == "whole":
            return ""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
        try:
            _build(tmp)
            for suffix in SIDE_FILES:  # a stale log of the half-made file must never be replayed into the new one
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            os.replace(tmp, path)
            _fsync_folder(path.parent)
        finally:
            _remove(tmp)
    if state == "half-made":
        return f"the store {str(path)!r} was left half-made (an interrupted first run) and held no runs: made it again"
    return ""


def half_made(uri: str) -> bool:
    """Whether the SQLite store at `uri` is a half-made one (no runs in it; `run` makes it again)."""
    return uri.startswith("sqlite:///") and _state(Path(uri[len("sqlite:///") :]).resolve()) == "half-made"


def _sweep(path: Path) -> None:
    """Remove the temporary stores that killed creators left (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.creating*"):
        pid = stale.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)


def _state(path: Path) -> str:
    """ "missing", "half-made" (empty, or only MLflow's tables at an older or no revision, and no runs
    in them) or "whole": anything else, including files that are not MLflow's (another program's
    database, a newer MLflow's store), which are never replaced; the address check names those."""
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "whole"
    if path.stat().st_size == 0:
        return "half-made"
    try:
        with contextlib.closing(sqlite3.connect(files.sqlite_uri(path, open_mode(path)), uri=True, timeout=30)) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
            if not tables:
                return "half-made"
            runs = db.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0
            experiments = db.execute("select count(*) from experiments").fetchone()[0] if "experiments" in tables else 0
            if runs or experiments > 1:
                return "whole"  # it holds work: never half-made, whatever its schema (and no 3 s reading MLflow's)
            head, revisions, known_tables = _known()
            if not tables <= known_tables:
                return "whole"  # not only MLflow's tables: someone else's data
            version = (
                db.execute("select version_num from alembic_version").fetchone()
                if "alembic_version" in tables
                else None
            )
            if version is not None and (version[0] == head or version[0] not in revisions):
                return "whole"  # complete, or written by a newer MLflow
    except sqlite3.DatabaseError:
        return "whole"
    return "half-made"  # MLflow's tables at an older or no revision, and nothing in them


def open_mode(path: Path) -> str:
    """How to open a database only to read it: read-only, unless a hot journal beside it must be
    rolled back first (SQLite does that on a read-write open; read-only, it cannot)."""
    return "rw" if Path(f"{path}-journal").exists() else "ro"


@functools.lru_cache(maxsize=1)
def _known() -> tuple[str, frozenset[str], frozenset[str]]:
    """The installed MLflow's newest schema revision, every revision it knows, and every table its
    schema has (with alembic's own)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import Base, InitialBase, _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    revisions = frozenset(r.revision for r in script.walk_revisions())
    tables = frozenset(Base.metadata.tables) | frozenset(InitialBase.metadata.tables) | {"alembic_version"}
    return script.get_current_head(), revisions, tables


def _build(tmp: Path) -> None:
    """A complete, empty MLflow store at `tmp`: a copy of the cached empty store of the installed
    MLflow (`_template`), or, where the cache cannot be written, migrated in place (about 3 s)."""
    _remove(tmp)
    template = _template()
    if template is None:
        _migrate(tmp)
    else:
        shutil.copyfile(template, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: Path) -> None:
    """A database file and SQLite's files beside it, gone (the ones that are there)."""
    for leftover in (path, *(Path(f"{path}{s}") for s in SIDE_FILES)):
        leftover.unlink(missing_ok=True)


def _template() -> Path | None:
    """The cached empty store of the installed MLflow (made once per MLflow version and schema, in the
    user cache): running MLflow's migrations costs about 3 s a store; copying their result, a few ms.
    None when the cache cannot be read or written (a full quota, a file system SQLite cannot lock):
    the caller then migrates in place, as before the cache."""
    try:
        path = cache_dir() / f"empty-mlflow-store-{_schema_key()}.db"
        if _is_template(path):
            return path
        with file_lock(path.with_name(f".{path.name}.lock")):
            _sweep(path)  # what a killed builder left
            if not _is_template(path):
                tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
                try:
                    _migrate(tmp)
                    os.replace(tmp, path)
                finally:
                    _remove(tmp)
        return path if _is_template(path) else None
    except Exception:  # noqa: BLE001 - OSError, or SQLAlchemy's errors for a full disk or a lock: the cache only saves time
        return None


def _schema_key() -> str:
    """MLflow's version and a digest of its migrations' file names: a new schema makes a new template."""
    import mlflow
    from mlflow.store import db_migrations

    versions = sorted(os.listdir(Path(db_migrations.__file__).parent / "versions"))
    digest = hashlib.sha256("\n".join(versions).encode()).hexdigest()[:12]
    return f"{mlflow.__version__}-{digest}"


def _is_template(path: Path) -> bool:
    """Whether `path` is a whole empty store: intact, at a schema revision, with no experiment and no run."""
    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(files.sqlite_uri(path, "ro"), uri=True, timeout=30)) as db:
            return (
                db.execute("pragma quick_check").fetchone() == ("ok",)
                and db.execute("select count(*) from alembic_version").fetchone()[0] == 1
                and db.execute("select count(*) from experiments").fetchone()[0] == 0
                and db.execute("select count(*) from runs").fetchone()[0] == 0
            )
    except sqlite3.DatabaseError:
        return False


def _migrate(tmp: Path) -> None:
    """Create MLflow's tables at `tmp` and migrate them to the newest revision (MLflow's own code)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    engine = create_sqlalchemy_engine_with_retry(f"sqlite:///{tmp}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
