"""Training a fused group (harness/training/fused.py) in the runner, each member recorded exactly
as a separate run is: its own run key and claim, its own MLflow child run with every epoch's
metrics, its test set, artifacts and model, plus the tags `harness.fused` (its group's size) and
`harness.fused_group`.

A group writes one checkpoint, named by its members' keys and holding every member, after each
epoch, and removes it once every member is recorded. A group killed at any point (mid-epoch,
mid-write, before the test set, after some members were recorded) resumes from it as the same
group with the same bits as one never interrupted (tests/test_fused_runs.py). As for a separate
run, an interruption marks the members' runs KILLED and a failure marks them FAILED, and both keep
the checkpoint to resume from.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from harness.base import faults
from harness.base.errors import Terminated
from harness.running.assembly import assemble
from harness.running.claims import Claims
from harness.running.fusing import group_name
from harness.running.outcomes import Outcome, finished
from harness.settings.config import RunSpec
from harness.tracking import names, store
from harness.training import checkpoint, engine, fused

INTERRUPTIONS = (KeyboardInterrupt, Terminated, SystemExit)


class LostClaim(RuntimeError):
    pass


@dataclass
class Member:
    """A pair of the group as the store has it."""

    pair: tuple[str, int]
    spec: RunSpec
    key: str
    existing: list  # its runs (harness.tracking.store.KeyedRun), oldest first
    done: list  # the finished ones


def run_group(runner, held: list[tuple[tuple[str, int], RunSpec]], claims: Claims) -> dict[tuple[str, int], Outcome]:
    """Train these claimed pairs as one fused group and return each pair's outcome. A finished pair
    is skipped; with fewer than two left to train, the one left trains as a separate run. A group
    with a checkpoint that matches its runs resumes whole: finished members train along (so that
    the others get the same bits), without being logged or recorded again."""
    members = []
    for pair, spec in held:
        key = runner.key(spec)
        existing = runner.tracker.runs_with_key(key)
        members.append(Member(pair, spec, key, existing, [r for r in existing if r.status == "FINISHED"]))
    live = [m for m in members if not (m.done and not runner.rerun)]
    whole = _path(runner, members)
    saved = checkpoint.load_snapshot(whole)
    resumed = _match(saved, members, live)
    out: dict[tuple[str, int], Outcome] = {}
    if resumed is not None:  # the same group, interrupted
        run_ids, recorded = resumed
        for m in members:
            if m.pair in recorded:  # recorded before the interruption (under --rerun, newer than the runs it replaces)
                run = next(r for r in m.done if r.run_id == recorded[m.pair])
                runner.console.run_done(f"skip {m.spec.variant} seed {m.spec.seed}: recorded before the interruption (run {run.run_id})", skipped=True)
                out[m.pair] = finished(*m.pair, run, note="skipped: already finished")
            elif m not in live:
                out[m.pair] = runner.run_one(m.spec, claims)
        active = [m for m in live if m.pair not in recorded]
        if not active:
            checkpoint.remove(whole)
            return out
        for m in active:
            runner.tracker.reopen(run_ids[members.index(m)])
            runner.tracker.set_tags(run_ids[members.index(m)], {"harness.error": ""})
        runner.console.line(f"resume the fused group of {_names(members)} after epoch {saved['epoch']}")
        return {**out, **_train(runner, members, active, run_ids, saved, whole, claims)}
    checkpoint.remove(whole)  # none, or one its runs have moved past: the group starts over
    for m in members:
        if m not in live or len(live) < 2:  # finished (skipped), or the one left to train
            out[m.pair] = runner.run_one(m.spec, claims)
    if len(live) < 2:
        return out
    ckpt = _path(runner, live)
    checkpoint.remove(ckpt)
    run_ids = [runner.open_run(m.spec, m.key, ckpt, m.existing, m.done, *runner.parent(m.spec))[0] for m in live]
    return {**out, **_train(runner, live, live, run_ids, None, ckpt, claims)}


def _path(runner, members: list[Member]) -> Path:
    return runner.cfg.checkpoint_folder / f"group-{group_name([m.key for m in members])}.pt"


def _match(saved: dict | None, members: list[Member], live: list[Member]) -> tuple[list[str], dict] | None:
    """(the group's run ids, {pair: run id} of members already recorded) when `saved` is this
    group's checkpoint and every live member's newest unfinished run (or a finished run newer than
    every other, recorded before the interruption) is the run the checkpoint names; else None."""
    if saved is None or saved.get("keys") != [m.key for m in members]:
        return None
    run_ids, recorded = list(saved["run_ids"]), {}
    for m, run_id in zip(members, run_ids):
        if m not in live:
            continue
        if m.done and m.done[-1].run_id == run_id:
            recorded[m.pair] = run_id
            continue
        since = m.done[-1].start_time if m.done else -1
        unfinished = [r for r in m.existing if r.status != "FINISHED" and r.start_time > since]
        if not unfinished or unfinished[-1].run_id != run_id:
            return None
    return run_ids, recorded


def _names(members: list[Member]) -> str:
    return ", ".join(f"{m.spec.variant} seed {m.spec.seed}" for m in members)


def _close(runner, members: list[Member], run_ids: list[str], parents: dict, status: str, reason: str) -> None:
    """Close these members' runs with `status` and `reason`, and update their parents' aggregates."""
    for m, run_id in zip(members, run_ids):
        runner.tracker.set_tags(run_id, {"harness.error": reason[:5000]})
        runner.tracker.finish(run_id, status)
    for parent_id in {parents[m.pair] for m in members}:
        try:
            runner.tracker.update_aggregates(parent_id)  # the parent holds results, not a process: never left RUNNING
        except store.StoreError:
            pass  # what stopped the group is what the user hears about


def _train(runner, trained: list[Member], active: list[Member], run_ids: list[str], snapshot: dict | None, ckpt: Path,
           claims: Claims) -> dict[tuple[str, int], Outcome]:
    """Train `trained` as one group (from `snapshot`), checkpointing then logging each epoch for the
    `active` members, then record them."""
    ids = {m.pair: run_ids[i] for i, m in enumerate(trained)}
    runner.first_epoch.update({run_id: snapshot["epoch"] if snapshot else 0 for run_id in run_ids})
    active_ids = [ids[m.pair] for m in active]
    parents = {m.pair: runner.parent(m.spec)[0] for m in active}
    for run_id in active_ids:
        runner.tracker.set_tags(run_id, {"harness.fused": str(len(trained)), "harness.fused_group": ckpt.stem[len("group-"):]})
    logged = {rid: runner.tracker.logged_epochs(rid) if snapshot is not None else set() for rid in active_ids}
    for rid, saved in zip(run_ids, snapshot["members"] if snapshot else []):  # checkpointed, not yet logged when it died
        for h in saved["history"] if rid in logged else []:
            if h["epoch"] not in logged[rid]:
                runner.tracker.log_metrics(rid, names.epoch_metrics(engine.EpochStats(**h)), step=h["epoch"])
    datas = [runner.splits.data_for(m.spec.seed, m.spec.split_seed) for m in trained]
    runner.console.start_run(f"fused group of {len(trained)}", sum(len(d.tensors.y_train) + len(d.tensors.y_val) for d in datas),
                             snapshot["epoch"] if snapshot else 0)

    def on_progress(progress: engine.Progress) -> None:
        if progress.phase != "epoch":
            runner.console.progress(progress)
            faults.point("step")
            return
        if not all(claims.holds(m.key) for m in active):
            raise LostClaim(f"another runner took over a member of the fused group of {_names(trained)}; this one stops")
        runner.console.epoch_done(progress.epoch, progress.epochs, next((s.seconds for s in progress.members if s), 0.0))
        checkpoint.save(ckpt, {**progress.snapshot, "run_ids": run_ids, "keys": [m.key for m in trained]})
        faults.point("checkpointed")
        for rid, stats in zip(run_ids, progress.members):
            if stats is not None and rid in logged and progress.epoch not in logged[rid]:
                runner.tracker.log_metrics(rid, names.epoch_metrics(stats), step=progress.epoch)
        faults.point("logged")

    parts = [assemble(m.spec, d.source.dataset) for m, d in zip(trained, datas)]
    group = [fused.Member(build, d.tensors.x_train, d.tensors.y_train, d.tensors.x_val, d.tensors.y_val, m.spec.train, m.spec.seed, m.spec.sources)
             for (build, _), d, m in zip(parts, datas, trained)]
    runtime = dataclasses.replace(runner.cfg.runtime, progress_every=1 if faults.wants("step") else runner.console.progress_every)
    start = time.perf_counter()
    try:
        results = fused.train_group(group, on_progress, snapshot, runtime, parts[0][1])
    except INTERRUPTIONS as e:
        _close(runner, active, active_ids, parents, "KILLED", f"interrupted ({type(e).__name__}); its fused group resumes from its last checkpoint")
        raise
    except store.StoreError:
        raise  # nothing more can be written: the experiment stops (run_all)
    except Exception as e:  # noqa: BLE001 - a failing group must not stop the others; its checkpoint stays to resume from
        reason = f"{type(e).__name__}: {e}"
        for m in active:
            runner.console.run_done(f"FAILED {m.spec.variant} seed {m.spec.seed}: {reason}")
        _close(runner, active, active_ids, parents, "FAILED", reason)
        return {m.pair: Outcome(*m.pair, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=parents[m.pair]) for m in active}
    return _record(runner, trained, active, ids, parents, results, ckpt, start)


def _record(runner, trained: list[Member], active: list[Member], ids: dict, parents: dict, results: list, ckpt: Path, start: float) -> dict:
    """Record each active member (a non-finite one FAILED); the checkpoint goes once all are recorded."""
    out, kept = {}, False
    by_pair = {m.pair: r for m, r in zip(trained, results)}
    pending = list(active)
    try:
        while pending:
            m = pending[0]
            run_id, result, parent_id = ids[m.pair], by_pair[m.pair], parents[m.pair]
            try:
                if isinstance(result, engine.NonFiniteLoss):
                    raise result
                out[m.pair] = runner.record(m.spec, run_id, parent_id, runner.cfg.checkpoint_folder / f"{m.key}.pt", m.done, *result, start)
            except (*INTERRUPTIONS, store.StoreError):
                raise
            except Exception as e:  # noqa: BLE001 - as for a separate run: this one FAILED, the others go on
                reason = f"non-finite loss in {m.spec.variant} seed {m.spec.seed}: {e}" if isinstance(e, engine.NonFiniteLoss) else f"{type(e).__name__}: {e}"
                runner.console.run_done(f"FAILED {m.spec.variant} seed {m.spec.seed}: {reason}")
                _close(runner, [m], [run_id], parents, "FAILED", reason)
                out[m.pair] = Outcome(*m.pair, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=parent_id)
                kept = kept or not isinstance(e, engine.NonFiniteLoss)  # its checkpoint stays: the next command records it from there
            pending.pop(0)
            faults.point("recorded")
    except INTERRUPTIONS as e:  # the members not yet recorded resume (recording) from the checkpoint
        _close(runner, pending, [ids[m.pair] for m in pending], parents, "KILLED", f"interrupted ({type(e).__name__}) while recording its fused group")
        raise
    if not kept:
        checkpoint.remove(ckpt)
    return out
