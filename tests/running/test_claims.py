"""Claims with leases, on a real SQLite file, with the real renewal thread."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from harness.running.claims import Claims


def test_one_holder_at_a_time(tmp_path):
    a, b = Claims(tmp_path / "c.sqlite"), Claims(tmp_path / "c.sqlite")
    try:
        assert a.acquire("k") and not b.acquire("k")
        assert a.acquire("k")  # re-entrant for its holder
        a.release("k")
        assert b.acquire("k") and not a.acquire("k")
    finally:
        a.close(), b.close()


def test_a_live_holder_never_loses(tmp_path):
    # A 3 s lease (renewed every 0.5 s): a lease of 0.6 s or 1.5 s can be lost on a loaded 2-core
    # machine, where the renewal thread may go unscheduled for a whole lease. Three leases long,
    # a live holder never loses.
    a, b = Claims(tmp_path / "c.sqlite", lease_s=3.0), Claims(tmp_path / "c.sqlite", lease_s=3.0)
    try:
        assert a.acquire("k")
        deadline = time.time() + 9.0  # three leases long: only renewal keeps it
        while time.time() < deadline:
            assert not b.acquire("k")
            assert a.holds("k")
            time.sleep(0.1)
    finally:
        a.close(), b.close()


def test_a_holder_on_another_machine_loses_when_its_lease_runs_out(tmp_path):
    c = Claims(tmp_path / "c.sqlite")
    try:
        with sqlite3.connect(tmp_path / "c.sqlite") as db:
            db.execute("insert into claims values ('k', 'elsewhere:123:abcd', ?)", (time.time() + 1.0,))
        assert not c.acquire("k")
        time.sleep(1.1)
        assert c.acquire("k")
    finally:
        c.close()


def test_a_dead_local_process_loses_at_once(tmp_path):
    path = str(tmp_path / "c.sqlite")
    code = f"from harness.running.claims import Claims; import os, pathlib; c = Claims(pathlib.Path({path!r})); c.acquire('k'); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    c = Claims(tmp_path / "c.sqlite")
    try:
        assert c.acquire("k")
    finally:
        c.close()


def test_default_lease_is_at_most_30_seconds():
    from harness.running import claims

    assert claims.LEASE_S <= 30


def test_a_dangling_run_is_killed_and_its_parent_closed_even_when_no_command_trains_its_key_again(tmp_path):
    """A component edited between a SIGKILL and the next command gives its runs new keys, so no
    command trains the old key again: the sweep marks the old run KILLED, closes its variant's
    parent and names its kept checkpoint."""
    from mlflow import MlflowClient

    from harness.running import resume
    from harness.running.console import Console
    from harness.tracking import store
    from tests.helpers import fresh_store

    fresh_store(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = store.Tracker(uri, "default", tmp_path / "checkpoints")
    parent = tracker.parent("wide", "oldkey-parent", {}, {})
    run = tracker.start_seed_run(parent, "wide", 1, {"harness.run_key": "oldkey"}, {})
    (tmp_path / "checkpoints" / "default").mkdir(parents=True)
    (tmp_path / "checkpoints" / "default" / "oldkey.pt").write_bytes(b"weights")
    shown = tmp_path / "console.txt"
    with open(shown, "w") as stream:
        resume.sweep_dangling(
            tracker, Claims(tmp_path / "claims.db"), Console(stream), tmp_path / "checkpoints" / "default"
        )
    client = MlflowClient(uri)
    assert client.get_run(run).info.status == "KILLED" and client.get_run(parent).info.status == "FINISHED"
    assert "oldkey.pt is kept for a command with its settings and code" in shown.read_text()
