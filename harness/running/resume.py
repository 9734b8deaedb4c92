"""Marking the runs a process that died left RUNNING as KILLED (harness/running/units.py decides
which interrupted run a unit continues, from which checkpoint)."""

from __future__ import annotations

from pathlib import Path

from harness.running.claims import Claims
from harness.running.console import Console
from harness.tracking import names


def sweep_dangling(tracker, claims: Claims, console: Console, checkpoints: Path) -> None:
    """A run the store says is RUNNING but whose key no live runner holds was left by a process
    that died: mark it KILLED now, and bring its parent's aggregates up to date (a parent is never
    left RUNNING, even when no command will train its key again: its component was edited since).
    A later pair with its key resumes it from its checkpoint, which is kept for that."""
    for run_id, key, parent_id in tracker.running_seed_runs():
        if key and claims.acquire(key):
            try:
                tracker.set_tags(
                    run_id, {names.ERROR_TAG: "its process died without closing it (found by a later runner)"}
                )
                tracker.finish(run_id, "KILLED")
                if parent_id:
                    tracker.update_aggregates(parent_id)
                kept = checkpoints / f"{key}.pt"
                console.line(
                    f"marked run {run_id} KILLED: its process had died while it was RUNNING"
                    + (
                        f"; its checkpoint {kept} is kept for a command with its settings and code"
                        if kept.exists()
                        else ""
                    )
                )
            finally:
                claims.release(key)
