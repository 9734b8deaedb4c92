"""A local SQLite store read with sqlite3 alone, for the store commands' first decisions: importing
MLflow and its SQL store takes about 3 s here, more than an `export` of a small table should. Two
reads of MLflow's own tables (`experiments`, `experiment_tags`, `runs`, `tags`, `params`, `metrics`,
unchanged in their columns since MLflow 1.x): an experiment's tags, and a digest of everything its
runs hold, which changes whenever a run, tag, param or metric of it does (with the runs' local
artifact folders). Anything that cannot be
read this way (another store, another schema, a locked or damaged file) answers None and the caller
reads through MLflow as before."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

from harness.base import files
from harness.tracking.creation import open_mode

# what a digest covers: the experiment's tags, and its runs' rows, tags, params and metrics
# (metrics only appended to: their count, newest timestamp and sums stand for them)
DIGESTED = (
    "select key, value from experiment_tags where experiment_id = ? order by key",
    "select run_uuid, status, start_time, end_time, lifecycle_stage, artifact_uri from runs "
    "where experiment_id = ? order by run_uuid",
    "select t.run_uuid, t.key, t.value from tags t join runs r on r.run_uuid = t.run_uuid "
    "where r.experiment_id = ? order by 1, 2",
    "select p.run_uuid, p.key, p.value from params p join runs r on r.run_uuid = p.run_uuid "
    "where r.experiment_id = ? order by 1, 2",
    "select count(*), max(m.timestamp), total(m.value), total(m.step) from metrics m "
    "join runs r on r.run_uuid = m.run_uuid where r.experiment_id = ?",
)


def _read(path: Path, experiment: str, queries: tuple[str, ...]) -> list[list[tuple]] | None:
    """Each query's rows for the active experiment named `experiment` (None: no such experiment, or
    the file cannot be read this way)."""
    if not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(files.sqlite_uri(path, open_mode(path)), uri=True, timeout=5)) as db:
            found = db.execute(
                "select experiment_id from experiments where name = ? and lifecycle_stage = 'active'", (experiment,)
            ).fetchone()
            if found is None:
                return None
            return [db.execute(q, (found[0],)).fetchall() for q in queries]
    except sqlite3.Error:
        return None


def experiment_tags(path: Path, experiment: str) -> dict[str, str] | None:
    """The experiment's tags, as MLflow would return them; None when they cannot be read this way."""
    rows = _read(path, experiment, (DIGESTED[0],))
    return None if rows is None else {k: v for k, v in rows[0]}


def digest(path: Path, experiment: str) -> tuple[str, list[str]] | None:
    """A hash of everything the experiment's runs hold in the store, and the local artifact folder
    of each run (in run order; a run whose artifacts are not a local folder has none listed), from
    one read; None when they cannot be read this way."""
    rows = _read(path, experiment, DIGESTED)
    if rows is None:
        return None
    h = hashlib.sha256()
    for part in rows:
        for row in part:
            h.update(repr(row).encode() + b"\n")
        h.update(b"--\n")
    uris = [run[5] for run in rows[1] if run[5]]  # DIGESTED[1]'s artifact_uri
    local = [uri[len("file://") :] if uri.startswith("file://") else uri for uri in uris]
    return h.hexdigest(), [uri for uri in local if "://" not in uri and ":" not in uri.split("/", 1)[0]]
