"""A new SQLite store is a copy of an empty store migrated once per MLflow version (harness/tracking/creation.py)."""

from __future__ import annotations

import contextlib
import sqlite3

from conftest import _store_template

from harness.tracking import creation


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
