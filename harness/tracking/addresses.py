"""The MLflow store's address, checked before any work: the scheme is one the harness supports, a
SQLite store is a file that outlives the command and is an MLflow store (or empty), a database
server has its driver installed, and a tracking server answers within seconds."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

from harness.base.errors import UsageError

DEFAULT_URI = "sqlite:///mlflow.db"
SCHEMES = ("sqlite:///", "http://", "https://", "postgresql://", "mysql://")
DRIVERS = {"postgresql://": ("psycopg2", "psycopg2-binary"), "mysql://": ("pymysql", "pymysql")}
REACH_SECONDS = 5.0
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


def resolve(setting: str = "", reach: bool = True) -> str:
    """The setting, else $MLFLOW_TRACKING_URI, else a SQLite file in the working directory; checked."""
    uri = setting or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if not uri.startswith(SCHEMES):
        raise UsageError(f"tracking_uri: {uri!r} is not supported; expected one of {', '.join(s + '...' for s in SCHEMES)}")
    if uri.startswith("sqlite:///"):
        check_sqlite(uri)
    for scheme, (module, package) in DRIVERS.items():
        if uri.startswith(scheme) and importlib.util.find_spec(module) is None:
            raise UsageError(f"tracking_uri: {uri.split('@')[-1]!r} needs the {module} driver; install it with `pip install {package}`")
    if reach and uri.startswith(("http://", "https://")):
        check_server(uri)
    return uri


def sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///"):])


def check_sqlite(uri: str) -> None:
    raw = uri[len("sqlite:///"):]
    if raw in ("", ":memory:") or raw.startswith(("file::memory:", ":memory:")):
        raise UsageError(f"tracking_uri: {uri!r} is an in-memory store, lost when the command ends; give a file, e.g. {DEFAULT_URI}")
    path = Path(raw)
    folder = path.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"tracking_uri: cannot write the SQLite store in {str(folder)!r}; choose a writable directory")
    if not path.exists():
        return
    if not path.is_file():
        raise UsageError(f"tracking_uri: {raw!r} is not a file; expected an MLflow SQLite store")
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:  # root may write anything: the mode says what was meant
        raise UsageError(f"tracking_uri: {raw!r} is read-only; the harness writes to its store (make it writable or choose another)")
    if path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30)) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
            versions = {row[0] for row in db.execute("select version_num from alembic_version")} if "alembic_version" in tables else set()
    except sqlite3.DatabaseError as e:
        raise UsageError(f"tracking_uri: {raw!r} is not a readable SQLite database ({e}); move it away or choose another file") from None
    if tables and not MLFLOW_TABLES <= tables:
        raise UsageError(f"tracking_uri: {raw!r} is an SQLite database without MLflow's tables (it holds {', '.join(sorted(tables)[:3])}...); "
                         "the harness will not convert it: choose another file")
    known = known_schema_versions()
    unknown = versions - known if known else set()
    if unknown:
        import mlflow

        raise UsageError(f"tracking_uri: {raw!r} has database schema {', '.join(sorted(unknown))}, which this MLflow ({mlflow.__version__}) "
                         "does not know: it was written by a newer MLflow; upgrade mlflow (pip install -U mlflow) to use it")


def known_schema_versions() -> set[str]:
    """The database schema revisions the installed MLflow can read (its migration files)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return set()
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    return {p.name.split("_", 1)[0] for p in folder.glob("*.py") if "_" in p.name}


def check_server(uri: str) -> None:
    """A tracking server must answer its health check within REACH_SECONDS."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=REACH_SECONDS) as response:
            response.read(64)
    except urllib.error.HTTPError:
        return  # it answered (a proxy or an older server without /health): reachable
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UsageError(f"tracking_uri: cannot reach the MLflow server at {uri!r} ({reason}); start it or check the address") from None


def relocate_artifacts(uri: str, experiment: str) -> bool:
    """Artifact locations follow a SQLite store: MLflow records absolute paths when an experiment is
    created, so after the project folder moves (store and `mlartifacts/` together) those paths point
    at the old place. When the recorded folder no longer exists, point the experiment and its runs at
    `mlartifacts/` beside the database again. Returns whether anything was rewritten."""
    from urllib.parse import unquote, urlparse

    if not uri.startswith("sqlite:///") or not sqlite_path(uri).is_file():
        return False
    new = (sqlite_path(uri).resolve().parent / "mlartifacts" / experiment).as_uri()
    with contextlib.closing(sqlite3.connect(sqlite_path(uri), timeout=30)) as db, db:
        row = db.execute("select experiment_id, artifact_location from experiments where name = ?", (experiment,)).fetchone()
        if row is None or row[1] == new or not str(row[1]).startswith("file://") or Path(unquote(urlparse(row[1]).path)).exists():
            return False
        eid, old = row
        db.execute("update experiments set artifact_location = ? where experiment_id = ?", (new, eid))
        db.execute("update runs set artifact_uri = ? || substr(artifact_uri, ?) where experiment_id = ? and substr(artifact_uri, 1, ?) = ?",
                   (new, len(old) + 1, eid, len(old), old))
    return True
