"""Where an Optuna study lives, checked before any trial trains: a database URL (many machines,
with heartbeats) or a journal file (several processes on one machine). A storage that would not
outlive the command, a file that is not a journal (a user's notes, the MLflow store), a folder, or
a database that is not Optuna's is refused with one line, before anything is written to it."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import threading
import warnings
from pathlib import Path

from harness.base import files
from harness.base.errors import UsageError

RDB_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+", "mysql://", "mysql+")
SQLITE_MAGIC = b"SQLite format 3\x00"
MLFLOW_TABLES = {"experiments", "runs"}  # an MLflow store's: Optuna's tables do not belong beside them
OPTUNA_TABLES = {"studies", "trials", "version_info"}


def check(url: str) -> None:
    """Refuse a storage the study cannot safely live in (exit 2), naming it and what is allowed."""
    if url.startswith(RDB_SCHEMES):
        if url.startswith("sqlite:///"):
            _check_sqlite(url)
        else:  # a database server: its driver installed, the server answering
            from harness.tracking import addresses

            addresses.check_driver(url, "--storage")
            addresses.check_database(url, "--storage")
        return
    if "://" in url:
        raise UsageError(
            f"--storage: {url!r} is not supported; expected a journal file path or a database URL "
            f"({', '.join(s + '...' for s in RDB_SCHEMES)})"
        )
    path = Path(url)
    if path.exists() and not path.is_file():
        raise UsageError(f"--storage: {url!r} is not a regular file; expected an Optuna journal file (new or existing)")
    if path.is_file() and path.stat().st_size:
        head = _head(path)
        if head.startswith(SQLITE_MAGIC):
            raise UsageError(
                f"--storage: {url!r} is an SQLite database, not a journal; for a database storage write "
                f"sqlite:///{url} (a file of its own, never the MLflow store)"
            )
        if not _is_journal(head):
            raise UsageError(
                f"--storage: {url!r} exists and is not an Optuna journal; the harness will not append to it: "
                "name a new file or an existing journal"
            )


def _check_sqlite(url: str) -> None:
    raw = url[len("sqlite:///") :]
    if raw in ("", ":memory:") or raw.startswith(("file::memory:", ":memory:")) or "mode=memory" in raw:
        raise UsageError(
            f"--storage: {url!r} is an in-memory database, lost when the command ends (and with it the study); "
            "give a file, e.g. sqlite:///optuna.db, or a journal path"
        )
    if "?" in raw:
        raise UsageError(f"--storage: {url!r}: query options are not supported; give sqlite:///PATH")
    path = Path(raw)
    if not path.resolve().parent.is_dir():
        raise UsageError(f"--storage: the folder of {raw!r} does not exist; create it or choose another path")
    if not path.exists():
        return
    if not path.is_file():
        raise UsageError(f"--storage: {raw!r} is not a file; expected an SQLite database for Optuna")
    if not path.stat().st_size:
        return
    if not _head(path).startswith(SQLITE_MAGIC):
        raise UsageError(f"--storage: {raw!r} is not an SQLite database; choose another file")
    try:
        with contextlib.closing(sqlite3.connect(files.sqlite_uri(path.resolve(), "ro"), uri=True, timeout=30)) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise UsageError(f"--storage: {raw!r} is not a readable SQLite database ({e}); choose another file") from None
    if MLFLOW_TABLES <= tables:
        raise UsageError(
            f"--storage: {raw!r} is an MLflow store; give the Optuna study a database of its own, e.g. sqlite:///optuna.db"
        )
    if tables and not OPTUNA_TABLES <= tables:
        raise UsageError(
            f"--storage: {raw!r} holds tables that are not Optuna's ({', '.join(sorted(tables)[:3])}...); choose another file"
        )


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError as e:
        raise UsageError(f"--storage: cannot read {str(path)!r} ({e.strerror or e})") from None


def _is_journal(head: bytes) -> bool:
    """Optuna's journal: one JSON object per line, each with an op_code."""
    first = head.split(b"\n", 1)[0]
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    return isinstance(entry, dict) and "op_code" in entry


def open_storage(url: str):
    """A database URL gets Optuna's RDB storage with heartbeats (many machines); anything else is a
    journal file, Optuna's storage for several processes on one machine: appends under a file lock,
    no 'database is locked' as with SQLite under parallel writers. One object per place and process
    (`ask` and `heartbeat` reach the storage through it, with Optuna's public API only): a relative
    path is made absolute first, so that the same text in another working directory is another
    storage."""
    return _open_storage(_absolute(url))


def _absolute(url: str) -> str:
    """`url` with a relative SQLite or journal path made absolute against the working directory."""
    from harness.tracking import addresses

    if url.startswith(RDB_SCHEMES):
        return addresses.absolute(url)
    return os.path.abspath(url)


@functools.lru_cache(maxsize=8)
def _open_storage(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line reports each trial
    if url.startswith(RDB_SCHEMES):
        # heartbeats are what makes a database storage safe for many machines: chosen, not news
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=30)
    from optuna.storages.journal import JournalFileBackend

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(url))


def _beating(url: str):
    """The storage of `url` when it records heartbeats (a database storage), else None."""
    import optuna

    s = open_storage(url)
    return s if isinstance(s, optuna.storages.RDBStorage) and s.get_heartbeat_interval() is not None else None


def ask(study, url: str):
    """A new trial, as Study.optimize would start it: on a database storage with heartbeats,
    trials whose heartbeat stopped (their process died, on any machine) are failed first."""
    import optuna

    # experimental, and "supposed to be used with Study.optimize": heartbeat() does what optimize does
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
        if _beating(url) is not None:
            optuna.storages.fail_stale_trials(study)
        return study.ask()


@contextlib.contextmanager
def heartbeat(study, trial, url: str):
    """While the trial trains, its heartbeat is recorded every heartbeat_interval seconds (database
    storages; a journal has none), as Study.optimize does, so another machine can tell it is alive."""
    s = _beating(url)
    if s is None:
        yield
        return
    trial_id = s.get_trial_id_from_study_id_trial_number(s.get_study_id_from_name(study.study_name), trial.number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            s.record_heartbeat(trial_id)
            if stop.wait(s.get_heartbeat_interval()):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def trial_slot(url: str, study_name: str):
    """An exclusive lock, held while a process counts the study's trials and asks for the next,
    so that --trials is the study's exact total however many processes tune it: on PostgreSQL and
    MySQL a lock of the database server's own (every machine's processes share it), beside a
    journal or an SQLite file a file lock (that storage is on one machine)."""
    if not url.startswith(("postgresql", "mysql")):
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
        from harness.base.files import file_lock

        with file_lock(Path(path + ".trials-lock")):  # not Optuna's own "<journal>.lock", which it takes while writing
            yield
        return
    import sqlalchemy

    name = f"harness-trials-{hashlib.sha256(study_name.encode()).hexdigest()[:32]}"  # MySQL's lock names stop at 64 characters
    take, give = (
        ("select pg_advisory_lock(hashtext(:name))", "select pg_advisory_unlock(hashtext(:name))")
        if url.startswith("postgresql")
        else ("select get_lock(:name, -1)", "select release_lock(:name)")
    )
    engine = _lock_engine(url)
    with engine.connect() as conn:  # a session lock: the server drops it if this process dies holding it
        conn.execute(sqlalchemy.text(take), {"name": name})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text(give), {"name": name})


@functools.lru_cache(maxsize=4)
def _lock_engine(url: str):
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
