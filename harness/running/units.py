"""One lifecycle for a unit of k >= 1 runs: claim (the runner), open or resume, train, checkpoint and
log, close and record. Only the innermost call depends on k: the engine's own loop for one run (the
tutorial-exact path) and the fused loop (harness/training/fused.py) for a group. A member of a
group is recorded exactly as a separate run is: its own run key, MLflow child run, epoch metrics,
test set, artifacts and model, plus the tags `harness.fused` (its group's size) and
`harness.fused_group`.

Checkpoints: one file per unit (`<key>.pt` for one run, `group-<hash>.pt` naming every member's
key for a group), written atomically once `train.checkpoint_seconds` have passed since the last
(0: after every epoch), always after the last epoch and when the process is interrupted (SIGTERM,
SIGINT, a Slurm requeue): a SIGKILL loses at most that interval. The epochs' metrics go to the
store only after the checkpoint that holds them is durable, each run's in one call, so a restart
never logs an epoch twice. A unit killed at any point resumes from its checkpoint as the same unit
with the same bits as one never interrupted (tests/running/test_faults.py, tests/running/test_fused_runs.py); an
interruption marks its runs KILLED and a failure FAILED, and both keep the checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.base import faults
from harness.base.errors import Terminated
from harness.data.loading import Splits
from harness.running import failures, recording
from harness.running.assembly import assemble
from harness.running.claims import Claims
from harness.running.console import Console, duration
from harness.running.ledger import Ledger
from harness.running.outcomes import Outcome, finished
from harness.settings.config import ExperimentConfig, RunSpec
from harness.tracking import names, store
from harness.training import checkpoint, engine, fused
from harness.variants import registry

INTERRUPTIONS = (KeyboardInterrupt, Terminated, SystemExit)  # SystemExit: submitit requeues a preempted Slurm task
Pair = tuple[str, int]


@dataclass
class Place:
    """What a unit needs from the command that trains it: the experiment, the store, the console,
    the data, and the runner's three decisions (a spec's run key, its variant's parent run and the
    params it shares, and how a finished run that --rerun replaces is retired)."""

    cfg: ExperimentConfig
    tracker: store.Tracker
    console: Console
    splits: Splits
    tags: dict[str, str]  # every run's tags (harness/tracking/provenance.py)
    rerun: bool
    key: Callable[[RunSpec], str]
    parent: Callable[[RunSpec], tuple[str, dict]]
    inputs: Callable[[str], list]  # MLflow dataset inputs of a split fingerprint
    retire: Callable[[str, str, RunSpec], None]  # (old run id, new run id, spec)
    store_error: str = ""  # set when the store stopped taking writes after a run was recorded
    # parents with runs recorded since their aggregates were last computed (parent id -> variant);
    # the runner brings them up to date once this command has no more runs of that variant to train
    unsettled: dict[str, str] = field(default_factory=dict)


@dataclass
class Member:
    """A pair of the unit as the store has it, and the run it trains in."""

    pair: Pair
    spec: RunSpec
    key: str
    existing: list  # its runs (harness.tracking.store.KeyedRun), oldest first
    done: list  # the finished ones
    run_id: str = ""
    parent_id: str = ""
    first_epoch: int = 0  # the epochs its checkpoint held when this command took it up

    @property
    def name(self) -> str:
        return f"{self.spec.variant} seed {self.spec.seed}"

    def unfinished(self) -> list:
        """Its runs not finished and started after its newest finished one."""
        since = self.done[-1].start_time if self.done else -1
        return [r for r in self.existing if r.status != "FINISHED" and r.start_time > since]


def run(place: Place, held: list[tuple[Pair, RunSpec]], claims: Claims) -> dict[Pair, Outcome]:
    """Train these claimed pairs as one unit and return each pair's outcome. A finished pair is
    skipped (with --rerun trained again). A unit whose checkpoint matches its runs resumes whole:
    members recorded before the interruption train along (so that the others get the same bits)
    without being logged or recorded again. Otherwise the live pairs start (or continue a run that
    died before its first checkpoint), fused when there are two or more."""
    members = [_member(place, pair, spec) for pair, spec in held]
    live = [m for m in members if not (m.done and not place.rerun)]
    out: dict[Pair, Outcome] = {}
    path = _path(place, members)
    saved = _load(path)
    recorded = _match(saved, members, live)
    if recorded is not None:  # the same unit, interrupted
        for m in members:
            if m.pair in recorded:
                run = next(r for r in m.done if r.run_id == m.run_id)
                place.console.run_done(
                    f"skip {m.name}: recorded before the interruption (run {run.run_id})", skipped=True
                )
                out[m.pair] = finished(*m.pair, run, note="skipped: already finished")
            elif m not in live:
                out[m.pair] = _skip(place, m, path if len(members) == 1 else None)
        active = [m for m in live if m.pair not in recorded]
        if not active:
            checkpoint.remove(path)
            return out
        for m in active:
            m.parent_id = place.parent(m.spec)[0]
            m.first_epoch = saved["epoch"]
            _reopen(place, m)
        where = f"the fused group of {', '.join(m.name for m in members)}" if len(members) > 1 else members[0].name
        place.console.line(
            f"resume {where} after epoch {saved['epoch']}"
            + (f" in run {members[0].run_id}" if len(members) == 1 else "")
        )
        return {**out, **_train(place, members, active, saved, path, claims)}
    for m in members:
        if m not in live:
            out[m.pair] = _skip(place, m, path if len(members) == 1 else None)
    if not live:
        return out
    checkpoint.remove(path)  # none, or one its runs have moved past: the unit starts over
    path = _path(place, live)
    checkpoint.remove(path)
    for m in live:
        _open(place, m)
    return {**out, **_train(place, live, live, None, path, claims)}


def _member(place: Place, pair: Pair, spec: RunSpec) -> Member:
    key = place.key(spec)
    existing = place.tracker.runs_with_key(key)
    return Member(pair, spec, key, existing, [r for r in existing if r.status == "FINISHED"])


def _path(place: Place, members: list[Member]) -> Path:
    from harness.running.fusing import group_name

    if len(members) == 1:
        return place.cfg.checkpoint_folder / f"{members[0].key}.pt"
    return place.cfg.checkpoint_folder / f"group-{group_name([m.key for m in members])}.pt"


def _load(path: Path) -> dict | None:
    """A unit's checkpoint with its `keys` and `run_ids` (one written for a single run before units
    had them names its `key` and `run_id`), or None."""
    saved = checkpoint.load_snapshot(path)
    if isinstance(saved, dict) and "run_id" in saved and "run_ids" not in saved:
        saved = {**saved, "run_ids": [saved["run_id"]], "keys": [saved.get("key", "")]}
    return saved if isinstance(saved, dict) and "run_ids" in saved else None


def _match(saved: dict | None, members: list[Member], live: list[Member]) -> set[Pair] | None:
    """The pairs recorded before the interruption when `saved` is this unit's checkpoint and every
    live member's newest unfinished run (or a finished run newer than every other: recorded before
    the interruption) is the run the checkpoint names, setting each member's run id; else None."""
    if saved is None or list(saved["keys"]) != [m.key for m in members]:
        return None
    run_ids, recorded = list(saved["run_ids"]), set()
    for m, run_id in zip(members, run_ids):
        if m not in live:
            continue
        if m.done and m.done[-1].run_id == run_id:
            recorded.add(m.pair)
            continue
        unfinished = m.unfinished()
        if not unfinished or unfinished[-1].run_id != run_id:
            return None
    for m, run_id in zip(members, run_ids):
        m.run_id = run_id
    return recorded


def _skip(place: Place, m: Member, leftover: Path | None) -> Outcome:
    if leftover is not None:
        checkpoint.remove(leftover)  # left behind if a process died right after finishing
    place.console.run_done(
        f"skip {m.name}: already finished (run {m.done[-1].run_id}); --rerun trains it again", skipped=True
    )
    return finished(*m.pair, m.done[-1], note="skipped: already finished")


def _kill_stale(place: Place, m: Member) -> None:
    """Its unfinished runs other than the one it trains in, left RUNNING by a process that died, are KILLED."""
    for stale in m.unfinished():
        if stale.run_id != m.run_id and stale.status == "RUNNING":
            place.tracker.finish(stale.run_id, "KILLED")


def _reopen(place: Place, m: Member) -> None:
    """Continue in `m.run_id`: RUNNING again, its error cleared, its stale siblings KILLED."""
    _kill_stale(place, m)
    place.tracker.reopen(m.run_id)
    place.tracker.set_tags(m.run_id, {names.ERROR_TAG: ""})


def _open(place: Place, m: Member) -> None:
    """The run `m` trains in from the start: its newest unfinished run when that died before its
    first checkpoint (no epoch logged), else a new run under its variant's parent."""
    m.parent_id, shared = place.parent(m.spec)
    unfinished = m.unfinished()
    if unfinished and not place.tracker.logged_epochs(unfinished[-1].run_id):
        m.run_id = unfinished[-1].run_id
        _reopen(place, m)
        place.console.line(f"resume {m.name} from the start in run {m.run_id}")
        return
    _kill_stale(place, m)
    split = place.splits.fingerprint(m.spec.seed, m.spec.split_seed)
    described = registry.get(m.spec.variant.split("@")[0])
    tags = {
        **place.tags,
        names.RUN_KEY_TAG: m.key,
        names.SPLIT_TAG: split,
        names.CHANGES_TAG: described.describe()[:5000],
        names.HYPOTHESIS_TAG: described.hypothesis[:5000],
    }
    m.run_id = place.tracker.start_seed_run(
        m.parent_id, m.spec.variant, m.spec.seed, tags, {**shared, "seed": m.spec.seed}
    )
    place.tracker.log_inputs(m.run_id, place.inputs(split))


def _close(place: Place, members: list[Member], status: str, reason: str, error: BaseException | None = None) -> None:
    """Close these members' runs with `status` and `reason` (and the traceback of `error` as their
    artifact error.txt), and update their parents' aggregates."""
    text = failures.full(error) if error is not None else ""
    if text and failures.debugging():
        place.console.line(text.rstrip())
    for m in members:
        place.tracker.set_tags(m.run_id, {names.ERROR_TAG: reason[:5000]})
        if text:
            try:
                place.tracker.log_text(m.run_id, text, failures.TRACEBACK)
            except Exception:  # noqa: BLE001 - the run is closed FAILED with its reason whatever happens to its traceback
                pass
        place.tracker.finish(m.run_id, status)
    for parent_id in {m.parent_id for m in members}:
        try:
            place.tracker.update_aggregates(parent_id)  # the parent holds results, not a process: never left RUNNING
        except store.StoreError:
            pass  # what stopped the unit is what the user hears about


def _train(
    place: Place, trained: list[Member], active: list[Member], snapshot: dict | None, path: Path, claims: Claims
) -> dict[Pair, Outcome]:
    """Train `trained` as one unit (from `snapshot`), checkpointing and logging for the `active`
    members, then record them."""
    tracker, console = place.tracker, place.console
    if len(trained) > 1:
        for m in active:
            tracker.set_tags(
                m.run_id, {names.FUSED_TAG: str(len(trained)), names.FUSED_GROUP_TAG: path.stem[len("group-") :]}
            )
    logged = {m.run_id: tracker.logged_epochs(m.run_id) if snapshot is not None else set() for m in active}
    if snapshot is not None:  # epochs checkpointed but not yet logged when the last process died
        for m, saved in zip(trained, _histories(snapshot)):
            missing = [
                (h["epoch"], names.epoch_metrics(engine.EpochStats(**h)))
                for h in saved
                if m.run_id in logged and h["epoch"] not in logged[m.run_id]
            ]
            if missing:
                tracker.log_epochs(m.run_id, missing)
    datas = [place.splits.data_for(m.spec.seed, m.spec.split_seed) for m in trained]
    title = f"fused group of {len(trained)}" if len(trained) > 1 else trained[0].name
    console.start_run(
        title, sum(len(d.tensors.y_train) + len(d.tensors.y_val) for d in datas), snapshot["epoch"] if snapshot else 0
    )
    ledger = Ledger(place.tracker, path, trained, active, claims, place.cfg.runtime.checkpoint_seconds, logged)

    def on_progress(progress: engine.Progress) -> None:
        if progress.phase != "epoch":
            console.progress(progress)
            faults.point("step")
            return
        stats = [progress.stats] if progress.members is None else progress.members
        console.epoch_done(progress.epoch, progress.epochs, next((s.seconds for s in stats if s), 0.0))
        ledger.epoch(progress.snapshot, stats, progress.epoch, progress.epoch == progress.epochs)

    start = time.perf_counter()
    try:
        results = _fit(place, trained, datas, snapshot, on_progress)
        if ledger.unsaved is not None:  # a group whose members all failed before its last epoch: the end is written too
            ledger.write(ledger.unsaved)
    except INTERRUPTIONS as e:
        ledger.flush()
        what = "its fused group resumes" if len(trained) > 1 else "resumes"
        _close(place, active, "KILLED", f"interrupted ({type(e).__name__}); {what} from its last checkpoint")
        raise
    except store.StoreError:
        raise  # nothing more can be written: the experiment stops (Runner.run_pairs)
    except Exception as e:  # noqa: BLE001 - a failing unit must not stop the others; its checkpoint stays to resume from
        reason = failures.reason(e)
        for m in active:
            console.run_done(f"FAILED {m.name}: {reason}")
        _close(place, active, "FAILED", reason, e)
        return {
            m.pair: Outcome(*m.pair, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=m.parent_id)
            for m in active
        }
    return _record_all(place, trained, active, results, path, start)


def _histories(snapshot: dict) -> list[list[dict]]:
    """Each member's saved history: a group's snapshot has one per member, a single run's its own."""
    return [m["history"] for m in snapshot["members"]] if "members" in snapshot else [snapshot["history"]]


def _fit(place: Place, trained: list[Member], datas: list, snapshot: dict | None, on_progress) -> list:
    """The innermost call: the engine's loop for one run, the fused loop for a group. Per member:
    (network, result), or the NonFiniteLoss that stopped it."""
    import dataclasses

    runtime = dataclasses.replace(
        place.cfg.runtime, progress_every=1 if faults.wants("step") else place.console.progress_every
    )
    parts = [assemble(m.spec, d.source.dataset) for m, d in zip(trained, datas)]
    if len(trained) == 1:
        (build, pieces), t, spec = parts[0], datas[0].tensors, trained[0].spec
        try:
            return [
                engine.train(
                    build,
                    t.x_train,
                    t.y_train,
                    t.x_val,
                    t.y_val,
                    spec.train,
                    spec.seed,
                    on_progress,
                    snapshot,
                    runtime,
                    pieces,
                    spec.sources,
                )
            ]
        except engine.NonFiniteLoss as e:
            return [e]
    group = [
        fused.Member(
            build,
            d.tensors.x_train,
            d.tensors.y_train,
            d.tensors.x_val,
            d.tensors.y_val,
            m.spec.train,
            m.spec.seed,
            m.spec.sources,
        )
        for (build, _), d, m in zip(parts, datas, trained)
    ]
    return fused.train_group(group, on_progress, snapshot, runtime, parts[0][1])


def _record_all(
    place: Place, trained: list[Member], active: list[Member], results: list, path: Path, start: float
) -> dict[Pair, Outcome]:
    """Record each active member (a non-finite one FAILED); the checkpoint goes once all are recorded."""
    out, kept = {}, False
    by_pair = {m.pair: r for m, r in zip(trained, results)}
    pending = list(active)
    try:
        while pending:
            m = pending[0]
            result = by_pair[m.pair]
            try:
                if isinstance(result, engine.NonFiniteLoss):
                    raise result
                out[m.pair] = _record(place, m, *result, start)
            except (*INTERRUPTIONS, store.StoreError):
                raise
            except Exception as e:  # noqa: BLE001 - this one FAILED, the others go on
                nonfinite = isinstance(e, engine.NonFiniteLoss)
                reason = f"non-finite loss in {m.name}: {e}" if nonfinite else failures.reason(e)
                place.console.run_done(f"FAILED {m.name}: {reason}")
                _close(place, [m], "FAILED", reason, None if nonfinite else e)
                out[m.pair] = Outcome(
                    *m.pair, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=m.parent_id
                )
                # its checkpoint stays: the next command records it from there
                kept = kept or not isinstance(e, engine.NonFiniteLoss)
            pending.pop(0)
            if len(trained) > 1:
                faults.point("recorded")
    except INTERRUPTIONS as e:  # the members not yet recorded resume (recording) from the checkpoint
        _close(
            place,
            pending,
            "KILLED",
            f"interrupted ({type(e).__name__}) while recording" + (" its fused group" if len(trained) > 1 else ""),
        )
        raise
    if not kept:
        checkpoint.remove(path)
    return out


def _record(place: Place, m: Member, model, result: engine.Result, start: float) -> Outcome:
    """Test and record a trained member, close it FINISHED, and (--rerun) retire the runs it replaces."""
    spec = m.spec
    for problem in recording.log_figures(place.tracker):  # the figures of runs recorded earlier, drawn meanwhile
        place.console.line(f"warning: {problem}")
    data = place.splits.data_for(spec.seed, spec.split_seed)
    metrics = recording.record(place.tracker, m.run_id, place.cfg, spec, data, model, result, m.first_epoch > 0)
    if result.notes:
        place.tracker.set_tags(m.run_id, {names.NOTE_TAG: " ".join(result.notes)[:5000]})
        for note in result.notes:
            place.console.line(f"note: {m.name}: {note}")
    place.tracker.finish(m.run_id, "FINISHED")
    if place.rerun:
        # one finished run per key, the newest; one a registered model version points at is kept, set aside
        for old in m.done:
            place.retire(old.run_id, m.run_id, spec)
    place.unsettled[m.parent_id] = spec.variant
    seconds = time.perf_counter() - start
    trained = sum(s.seconds for s in result.history if s.epoch > m.first_epoch)  # this command's epochs
    place.console.run_done(f"finished {m.name} in {duration(seconds)}: test accuracy {metrics['test_acc']:.2f}")
    return Outcome(
        spec.variant,
        spec.seed,
        "FINISHED",
        metrics["best_val_acc"],
        result.selected_epoch,
        result.history[-1].val_acc,
        metrics["test_acc"],
        seconds,
        parent_id=m.parent_id,
        train_seconds=trained,
    )
