"""Resuming after a process died: which interrupted run of a key to continue, from which
checkpoint, and marking the runs a dead process left RUNNING as KILLED."""
from __future__ import annotations

from pathlib import Path

from harness.running.claims import Claims
from harness.running.console import Console
from harness.training import checkpoint


def resume_point(tracker, unfinished: list, ckpt: Path) -> tuple[str | None, dict | None]:
    """The interrupted run to continue (and its checkpoint), or (None, None) to start anew."""
    if not unfinished:
        return None, None
    run_id, snapshot = None, None
    candidate = unfinished[-1]
    saved = checkpoint.load_snapshot(ckpt)
    if saved is not None and saved.get("run_id") == candidate.run_id:
        run_id, snapshot = candidate.run_id, saved
    elif not tracker.logged_epochs(candidate.run_id):
        run_id = candidate.run_id  # died before its first checkpoint: start over in the same run
    for stale in unfinished:
        if stale.run_id != run_id and stale.status == "RUNNING":
            tracker.finish(stale.run_id, "KILLED")
    return run_id, snapshot


def sweep_dangling(tracker, claims: Claims, console: Console) -> None:
    """A run the store says is RUNNING but whose key no live runner holds was left by a process
    that died: mark it KILLED now (a later pair with its key resumes it from its checkpoint)."""
    for run_id, key in tracker.running_seed_runs():
        if key and claims.acquire(key):
            try:
                tracker.set_tags(run_id, {"harness.error": "its process died without closing it (found by a later runner)"})
                tracker.finish(run_id, "KILLED")
                console.line(f"marked run {run_id} KILLED: its process had died while it was RUNNING")
            finally:
                claims.release(key)
