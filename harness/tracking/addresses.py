"""The MLflow store's address, checked before any work: the scheme is one the harness supports, a
SQLite store is a file that outlives the command and is an MLflow store (or empty), a database
server has its driver installed, and a tracking server answers within seconds."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote

from harness.base import files
from harness.base.errors import UsageError
from harness.tracking import creation

DEFAULT_URI = "sqlite:///mlflow.db"
SCHEMES = ("sqlite:///", "http://", "https://", "postgresql://", "postgresql+", "mysql://", "mysql+")
PACKAGES = {
    "psycopg": "psycopg[binary] (the [team] extra)",
    "psycopg2": "psycopg2-binary",
    "mysqldb": "mysqlclient",
    "pymysql": "pymysql",
}
REACH_SECONDS = 5.0
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


def resolve(setting: str = "", reach: bool = True) -> str:
    """The setting, else $MLFLOW_TRACKING_URI, else a SQLite file in the working directory; checked."""
    uri = setting or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if not uri.startswith(SCHEMES):
        raise UsageError(
            f"tracking_uri: {uri!r} is not supported; expected one of {', '.join(s + '...' for s in SCHEMES)}"
        )
    if uri.startswith("sqlite:///"):
        check_sqlite(uri)
    if uri.startswith(("postgresql", "mysql")):
        check_driver(uri, "tracking_uri")
        if reach:
            check_database(uri, "tracking_uri")
    if reach and uri.startswith(("http://", "https://")):
        check_server(uri)
    return uri


def check_driver(uri: str, field: str) -> None:
    """The database driver SQLAlchemy picks for `uri` must be installed (PostgreSQL: psycopg with
    SQLAlchemy 2.1, psycopg2 before it; postgresql+DRIVER:// names one)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    where = uri.split("@")[-1]
    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise UsageError(f"{field}: {where!r} is not a database URL SQLAlchemy reads ({e})") from None
    try:
        (getattr(dialect, "import_dbapi", None) or dialect.dbapi)()
    except ImportError:
        raise UsageError(
            f"{field}: {where!r} needs the {dialect.driver} driver; install it with "
            f"`pip install {PACKAGES.get(dialect.driver, dialect.driver)}`"
        ) from None


def check_database(uri: str, field: str) -> None:
    """A database server must answer within REACH_SECONDS (else one line naming it, before any work)."""
    import sqlalchemy

    timeout = {"connect_timeout": int(REACH_SECONDS)}
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool, connect_args=timeout)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", e) or e).strip().splitlines()
        raise UsageError(
            f"{field}: cannot reach the database at {uri.split('@')[-1]!r} ({reason[0] if reason else type(e).__name__}); "
            "start it, or check the host, port, user and database name"
        ) from None
    finally:
        engine.dispose()


def absolute(uri: str) -> str:
    """`uri` with a relative SQLite path made absolute against the working directory; any other
    address as it is. MLflow keeps one store object per address for the life of a process, so a
    relative `sqlite:///mlflow.db` would stay the first working directory's store after a chdir."""
    if uri.startswith("sqlite:///") and not sqlite_path(uri).is_absolute():
        # the working directory's part is quoted: SQLAlchemy reads `?` as a query and decodes `%XX`
        return f"sqlite:///{quote(os.getcwd(), safe='/')}/{uri[len('sqlite:///') :]}"
    return uri


def sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///") :])


def check_sqlite(uri: str) -> None:
    raw = uri[len("sqlite:///") :]
    if raw in ("", ":memory:") or raw.startswith(("file::memory:", ":memory:")):
        raise UsageError(
            f"tracking_uri: {uri!r} is an in-memory store, lost when the command ends; give a file, e.g. {DEFAULT_URI}"
        )
    if "?" in raw:
        raise UsageError(
            f"tracking_uri: {uri!r}: query options are not supported (the harness sets the SQLite timeouts itself); give sqlite:///PATH"
        )
    path = Path(raw)
    folder = path.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"tracking_uri: cannot write the SQLite store in {str(folder)!r}; choose a writable directory")
    if not path.exists():
        return
    if not path.is_file():
        raise UsageError(f"tracking_uri: {raw!r} is not a file; expected an MLflow SQLite store")
    # root may write anything: the mode says what was meant
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
        raise UsageError(
            f"tracking_uri: {raw!r} is read-only; the harness writes to its store (make it writable or choose another)"
        )
    if path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(
            sqlite3.connect(files.sqlite_uri(path.resolve(), creation.open_mode(path.resolve())), uri=True, timeout=30)
        ) as db:
            tables = {row[0] for row in db.execute("select name from sqlite_master where type = 'table'")}
            versions = (
                {row[0] for row in db.execute("select version_num from alembic_version")}
                if "alembic_version" in tables
                else set()
            )
    except sqlite3.DatabaseError as e:
        # SQLite cannot make the files it reads through: a full disk, not a broken store
        if shutil.disk_usage(folder).free < 1 << 20:
            raise UsageError(
                f"tracking_uri: cannot open {raw!r}: its disk is full ({e}); make room, the store itself is unchanged"
            ) from None
        raise UsageError(
            f"tracking_uri: {raw!r} is not a readable SQLite database ({e}); move it away or choose another file"
        ) from None
    if creation.half_made(uri):
        return  # an interrupted first run's store, with no runs in it: `run` makes it again (harness/tracking/creation.py)
    if tables and not MLFLOW_TABLES <= tables:
        raise UsageError(
            f"tracking_uri: {raw!r} is an SQLite database without MLflow's tables (it holds {', '.join(sorted(tables)[:3])}...); "
            "the harness will not convert it: choose another file"
        )
    known = known_schema_versions()
    unknown = versions - known if known else set()
    if unknown:
        import mlflow

        raise UsageError(
            f"tracking_uri: {raw!r} has database schema {', '.join(sorted(unknown))}, which this MLflow ({mlflow.__version__}) "
            "does not know: it was written by a newer MLflow; upgrade mlflow (pip install -U mlflow) to use it"
        )


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
        with urllib.request.urlopen(_request(uri, "/health"), timeout=REACH_SECONDS) as response:
            response.read(64)
    except urllib.error.HTTPError as e:
        if e.code == 404 and not _answers_mlflow_api(uri):
            raise UsageError(
                f"tracking_uri: {uri!r} answers HTTP 404 for /health and for MLflow's REST API: it is not an MLflow "
                "tracking server (check the host, port and path)"
            ) from None
        return  # it answered (a proxy, an older server without /health, one that wants credentials): reachable
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UsageError(
            f"tracking_uri: cannot reach the MLflow server at {uri!r} ({reason}); start it or check the address"
        ) from None


def _request(uri: str, path: str) -> urllib.request.Request:
    """A request for `path` on the server at `uri`: a `user:password@` in the address, else
    $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD, go as HTTP basic authentication (as
    MLflow's own client sends them), never as part of the host name."""
    import base64

    from harness.base import credentials

    bare, user, password = credentials.without_userinfo(uri)
    if user is None:
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    request = urllib.request.Request(f"{bare.rstrip('/')}{path}")
    if user is not None:
        token = base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _answers_mlflow_api(uri: str) -> bool:
    """Whether MLflow's REST API answers at `uri`: a result, or an MLflow error (JSON with an error_code)."""
    import json

    try:
        with urllib.request.urlopen(
            _request(uri, "/api/2.0/mlflow/experiments/search?max_results=1"), timeout=REACH_SECONDS
        ) as r:
            r.read(64)
        return True
    except urllib.error.HTTPError as e:
        try:
            return e.code != 404 or "error_code" in json.loads(e.read(4096) or b"{}")
        except ValueError:
            return False
    except (OSError, ValueError):
        return False


def relocate_artifacts(uri: str, experiment: str) -> bool:
    """Artifact locations follow a SQLite store: MLflow records absolute paths when an experiment is
    created, so after the project folder is moved or copied (`cp -a proj proj2`) they point at the
    old place, and a copy's new runs would write into the original's folder. Whenever the recorded
    folder is not `mlartifacts/` beside this database, point the experiment there (new runs write
    beside their store), and each run and model version whose files are there too, or no longer at
    the old place. Returns whether anything was rewritten; a store that takes no writes is left as it is."""
    if not uri.startswith("sqlite:///") or not sqlite_path(uri).is_file():
        return False
    new = (sqlite_path(uri).resolve().parent / "mlartifacts" / experiment).as_uri()
    try:
        with contextlib.closing(sqlite3.connect(sqlite_path(uri), timeout=30)) as db, db:
            row = db.execute(
                "select experiment_id, artifact_location from experiments where name = ?", (experiment,)
            ).fetchone()
            if row is None or row[1] == new or not str(row[1]).startswith("file://"):
                return False
            eid, old = row
            db.execute("update experiments set artifact_location = ? where experiment_id = ?", (new, eid))
            for run_id, where in db.execute(
                "select run_uuid, artifact_uri from runs where experiment_id = ? and substr(artifact_uri, 1, ?) = ?",
                (eid, len(old), old),
            ).fetchall():
                if _follows(where, old, new):
                    db.execute("update runs set artifact_uri = ? where run_uuid = ?", (new + where[len(old) :], run_id))
            for name, version, source, stored in db.execute(
                "select name, version, source, storage_location from model_versions where substr(source, 1, ?) = ?",
                (len(old), old),
            ).fetchall():
                if _follows(source, old, new):
                    moved = stored if not str(stored or "").startswith(old) else new + stored[len(old) :]
                    db.execute(
                        "update model_versions set source = ?, storage_location = ? where name = ? and version = ?",
                        (new + source[len(old) :], moved, name, version),
                    )
    except sqlite3.Error:
        return False
    return True


def _follows(where: str, old: str, new: str) -> bool:
    """Whether an artifact location under `old` should move under `new`: its files are there, or gone from `old`."""
    from urllib.parse import unquote, urlparse

    def local(u: str) -> Path:
        return Path(unquote(urlparse(u).path))

    return local(new + where[len(old) :]).exists() or not local(where).exists()
