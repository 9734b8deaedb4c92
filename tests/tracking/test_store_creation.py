"""A new SQLite store (harness/tracking/creation.py) is a copy of an empty store migrated once per
MLflow version, with the schema MLflow's own client makes; a damaged template is made again and an
unwritable cache still gives a whole store; a first `run` killed while it makes the store leaves no
store or a whole one; and a half-made store (a kill mid-migration) is named by `report` and made
again by `run`."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.tracking import creation
from tests.helpers import ROOT, TINY, _store_template, fresh_store, run_cli


def _schema(path) -> tuple[set, str]:
    """Every table and index with its definition's lines as a set: MLflow's own migrations order a
    table's constraints differently from one run to the next (two migrations here differed so)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("select type, name, sql from sqlite_master where name not like 'sqlite_%'")
        sql = {
            (kind, name, frozenset(line.strip().rstrip(",") for line in (text or "").splitlines()))
            for kind, name, text in rows
        }
        return sql, db.execute("select version_num from alembic_version").fetchone()[0]


def test_a_new_store_is_a_copy_of_the_migrated_template_with_mlflows_own_schema(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    for db in (first, second):
        db.parent.mkdir()
        assert creation.ensure(f"sqlite:///{db}") == ""
    templates = list((tmp_path / "cache").glob("empty-mlflow-store-*.db"))
    assert len(templates) == 1
    assert first.read_bytes() == second.read_bytes() == templates[0].read_bytes()
    # the schema MLflow's own client makes when it creates a store itself
    assert _schema(first) == _schema(_store_template())
    client = MlflowClient(tracking_uri=f"sqlite:///{first}")
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert creation._state(first) == "whole"


def test_a_damaged_template_is_made_again_and_an_unwritable_cache_still_gives_a_whole_store(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    cache.mkdir()
    template = cache / f"empty-mlflow-store-{creation._schema_key()}.db"
    template.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)  # a torn copy
    leftover = cache / f".{template.name}.999999999.creating"  # a killed builder's (no such process)
    leftover.write_bytes(b"half")
    db = tmp_path / "a" / "mlflow.db"
    db.parent.mkdir()
    creation.ensure(f"sqlite:///{db}")
    assert creation._state(db) == "whole" and creation._is_template(template) and not leftover.exists()

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(template / "not-a-folder"))  # a file where the folder should be
    other = tmp_path / "b" / "mlflow.db"
    other.parent.mkdir()
    creation.ensure(f"sqlite:///{other}")
    assert _schema(other) == _schema(db)


def _whole(path: Path) -> bool:
    from harness.tracking import creation

    return creation._state(path) == "whole"


@pytest.mark.slow
def test_a_first_run_killed_while_the_store_is_made_leaves_no_half_made_store(tmp_path, data_dir):
    """SIGKILL at several points while the first `run` of a folder creates its store: afterwards
    there is no store or a whole one, and the next commands work."""
    for i, delay in enumerate((0.0, 0.4, 1.0, 2.0)):
        work = tmp_path / f"w{i}"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", *TINY],
            cwd=work,
            env={**env, "PYTHONPATH": str(ROOT), "HARNESS_DATA_DIR": str(data_dir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while (
            time.time() < deadline
            and proc.poll() is None
            and not any(
                p.name.startswith((".mlflow.db.", "mlflow.db")) and not p.name.endswith(".lock") for p in work.iterdir()
            )
        ):
            time.sleep(0.01)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        db = work / "mlflow.db"
        assert not db.exists() or _whole(db), f"half-made store after a kill {delay} s into its creation"
    report = run_cli("report", "--experiment", "default", cwd=work)
    # Killed before the store was whole (a slow machine takes longer than 2 s to get there): one line
    # saying there is no store; killed before the experiment was recorded: one line naming it;
    # killed after: a report of what there is.
    assert "Traceback" not in report.stderr, report.stderr
    if not (work / "mlflow.db").exists():
        assert report.returncode == 2 and "no MLflow store" in report.stderr, report.stderr
    else:
        assert report.returncode == 0 or (report.returncode == 2 and "default" in report.stderr), report.stderr
    again = run_cli("run", *TINY, cwd=work, data=data_dir)
    assert again.returncode == 0, again.stderr[-2000:]


# slow group: two real processes, one of which makes the store again (about 25 s)
@pytest.mark.slow
def test_a_half_made_store_from_before_is_made_again(tmp_path, data_dir):
    fresh_store(tmp_path)
    with sqlite3.connect(
        tmp_path / "mlflow.db"
    ) as db:  # what a kill mid-migration left: tables of an older revision, no runs
        db.execute("update alembic_version set version_num = '0a8213491aaa'")
        db.execute("drop table logged_models")
    report = run_cli("report", "--experiment", "default", cwd=tmp_path)
    assert report.returncode == 2 and "was left half-made by an interrupted first run" in report.stderr, report.stderr
    proc = run_cli("run", *TINY, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: the store" in proc.stderr and "made it again" in proc.stderr
    assert _whole(tmp_path / "mlflow.db")
