"""Marking the runs a process that died left RUNNING as KILLED (harness/running/units.py decides
which interrupted run a unit continues, from which checkpoint)."""

from __future__ import annotations

from harness.running.claims import Claims
from harness.running.console import Console
from harness.tracking import names


def sweep_dangling(tracker, claims: Claims, console: Console) -> None:
    """A run the store says is RUNNING but whose key no live runner holds was left by a process
    that died: mark it KILLED now (a later pair with its key resumes it from its checkpoint)."""
    for run_id, key in tracker.running_seed_runs():
        if key and claims.acquire(key):
            try:
                tracker.set_tags(
                    run_id, {names.ERROR_TAG: "its process died without closing it (found by a later runner)"}
                )
                tracker.finish(run_id, "KILLED")
                console.line(f"marked run {run_id} KILLED: its process had died while it was RUNNING")
            finally:
                claims.release(key)
