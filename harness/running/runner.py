"""Runs every (variant, seed) pair of an experiment: one engine, one split, one store.

Each pair is skipped when its run key has finished, resumed from its checkpoint when it was
interrupted, or started; then trained and recorded. One failing run does not stop the others.
Several runners on one experiment share the pairs through claims (harness/running/claims.py).
With seeds on demand the runner asks the design (harness/analysis/sequential.py) which pairs the
next round needs, and trains them.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from harness.analysis import sequential
from harness.base import faults
from harness.base.errors import Terminated
from harness.data.loading import Loaded, Splits
from harness.running import claims as claims_mod
from harness.running import fused_runs, fusing, outcomes, recording, resume
from harness.running.assembly import assemble
from harness.running.claims import Claims
from harness.running.console import Console, duration
from harness.running.outcomes import Outcome, finished
from harness.settings import checks
from harness.settings.config import ExperimentConfig, RunSpec
from harness.tracking import models, names, provenance, store
from harness.training import checkpoint, engine


class LostClaim(RuntimeError):
    pass


class Runner:
    """Trains the pairs of one experiment on data already on `device`, tracked in the store at `uri`."""

    def __init__(self, cfg: ExperimentConfig, data: Loaded, uri: str, device: torch.device, console: Console, rerun: bool = False) -> None:
        self.cfg, self.device, self.console, self.rerun = cfg, device, console, rerun
        self.splits = Splits(data, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed, device)
        self.store_error = ""  # set when the store stopped taking writes
        self.first_epoch: dict[str, int] = {}  # run id -> epochs its checkpoint had when this command took it up
        self.test_digest = ""  # the test set's hash, computed when a run first records its inputs
        models.warm_up()
        self.tracker = store.Tracker(uri, cfg.name, cfg.checkpoint_folder)
        self.tags = provenance.run_tags(cfg, data, device)

    @property
    def data(self) -> Loaded:
        return self.splits.data

    def key(self, spec: RunSpec) -> str:
        return spec.key(self.data.source.identity, self.splits.fingerprint(spec.seed, spec.split_seed))

    def inputs(self, split: str) -> list:
        """The training, validation and test data as MLflow dataset inputs: digests `split` (the
        split's fingerprint, or "per_seed" on a parent) and the test set's own hash."""
        if not self.test_digest:
            a = self.data.source.arrays
            self.test_digest = models.digest_of_test_set(a.x_test, a.y_test)
        t = self.data.tensors
        return models.dataset_inputs(self.cfg.data.dataset, self.data.source.identity, split, self.test_digest,
                                     {"train": len(t.y_train), "val": len(t.y_val), "test": len(t.y_test)})

    def collect(self) -> list[Outcome]:
        """The outcome of every pair as the store has it (after other processes trained them)."""
        return outcomes.collect(self.cfg, self.tracker, self.key)

    def run_all(self) -> list[Outcome]:
        """Run every (variant, seed) pair once, or with seeds on demand the rounds the design asks for."""
        if self.cfg.sequential:
            return self.run_rounds()
        return self.run_pairs([(v, s) for v in self.cfg.variants for s in self.cfg.seeds])

    def run_rounds(self) -> list[Outcome]:
        """Seeds on demand: ask the design for the next round's pairs, train them, and go on until
        it asks for none (every comparison decided, or the budget spent). The design is replayed
        from the outcomes (a finished pair is skipped at once), so a killed run resumes in its round."""
        cfg, done, shown = self.cfg, {}, 0
        images = len(self.data.tensors.y_test)
        while True:
            walk = sequential.decide(outcomes.correct_counts(done.values(), images), set(done), cfg.baseline,
                                     [v for v in cfg.variants if v != cfg.baseline], cfg.seeds, cfg.sequential, cfg.analysis)
            for r in walk.rounds[shown:]:
                self.console.line(sequential.describe(r, walk.tracks))
            shown = len(walk.rounds)
            if not walk.next or self.store_error:
                return list(done.values())
            faults.point("round")
            done.update(zip(walk.next, self.run_pairs(walk.next)))

    def run_pairs(self, pairs: list[tuple[str, int]]) -> list[Outcome]:
        """Run these (variant, seed) pairs once. Pairs another live runner holds are waited for;
        pairs whose holder died are taken over when its lease runs out."""
        claims = Claims(self.cfg.checkpoint_folder / claims_mod.FILENAME)
        self.console.plan_runs(len(pairs), self.cfg.train.epochs)
        try:
            resume.sweep_dangling(self.tracker, claims, self.console)
            by_pair: dict[tuple[str, int], Outcome] = {}
            pending, waited = pairs, False
            while pending:
                deferred = []
                for unit in fusing.units(self, pending):  # one pair, or a fused group (train.fuse)
                    held = fusing.claim_all(self, claims, unit)  # every key of a group, or none
                    deferred += [] if held else [p for p, _ in unit]
                    try:
                        if held:
                            self.console.header(fusing.title(held, pairs))
                            by_pair.update(fused_runs.run_group(self, held, claims) if len(held) > 1 else {held[0][0]: self.run_one(held[0][1], claims)})
                    except store.StoreError as e:  # stop here: what finished is in the store, the rest is not run
                        self.store_error = str(e)
                    finally:
                        for _, spec in held:
                            claims.release(self.key(spec))
                    if self.store_error:
                        return [by_pair.get(p) or Outcome(*p, "FAILED", error=f"not run: {self.store_error}") for p in pairs]
                if deferred and not waited:
                    self.console.line(f"waiting for {len(deferred)} run(s) that another runner is training")
                    waited = True
                if deferred:
                    time.sleep(1.0)
                pending = deferred
            return [by_pair[pair] for pair in pairs]
        finally:
            claims.close()

    def parent(self, spec: RunSpec) -> tuple[str, dict]:
        """The variant's parent run (created on first use) and the params its runs share."""
        shared = {k: v for k, v in spec.flat().items() if k != "seed"}
        shared.update({f"train.{k}": getattr(self.cfg.runtime, k) for k in checks.RUNTIME_FIELDS})  # how it ran, as written in [train]
        shared.update({"data.dataset": self.cfg.data.dataset, "data.split": self.cfg.data.split,
                       "data.train_ratio": self.cfg.data.train_ratio, "data.split_seed": self.cfg.data.split_seed})
        split = self.tags["harness.split_fingerprint"]
        parent_id = self.tracker.parent(spec.variant, spec.variant_key(self.data.source.identity, split), self.tags, shared, self.inputs(split))
        return parent_id, shared

    def run_one(self, spec: RunSpec, claims: Claims) -> Outcome:
        """Skip a finished key; else resume an interrupted run from its checkpoint or start one;
        then train it and record what it produced."""
        key = self.key(spec)
        ckpt = self.cfg.checkpoint_folder / f"{key}.pt"
        existing = self.tracker.runs_with_key(key)
        done = [r for r in existing if r.status == "FINISHED"]
        if done and not self.rerun:
            checkpoint.remove(ckpt)  # left behind if a process died right after finishing
            self.console.run_done(f"skip {spec.variant} seed {spec.seed}: already finished (run {done[-1].run_id}); --rerun trains it again", skipped=True)
            return finished(spec.variant, spec.seed, done[-1], note="skipped: already finished")
        parent_id, shared = self.parent(spec)
        run_id, snapshot = self.open_run(spec, key, ckpt, existing, done, parent_id, shared)
        self.first_epoch[run_id] = snapshot["epoch"] if snapshot else 0
        t = self.splits.data_for(spec.seed, spec.split_seed).tensors
        self.console.start_run(f"{spec.variant} seed {spec.seed}", len(t.y_train) + len(t.y_val), snapshot["epoch"] if snapshot else 0)
        start = time.perf_counter()
        try:
            model, result = self.train(spec, claims, key, run_id, ckpt, snapshot)
            return self.record(spec, run_id, parent_id, ckpt, done, model, result, start)
        except (KeyboardInterrupt, Terminated, SystemExit) as e:  # SystemExit: submitit requeues a preempted Slurm task
            self.tracker.set_tags(run_id, {"harness.error": f"interrupted ({type(e).__name__}); resumes from its last checkpoint"})
            self.tracker.finish(run_id, "KILLED")
            try:
                self.tracker.update_aggregates(parent_id)  # the parent holds results, not a process: never left RUNNING
            except store.StoreError:
                pass  # the interruption is what the user hears about
            raise
        except store.StoreError:
            raise  # nothing more can be written: the experiment stops (run_all)
        except Exception as e:  # noqa: BLE001 - one failing run must not stop the others
            reason = f"{type(e).__name__}: {e}"
            if isinstance(e, engine.NonFiniteLoss):
                reason = f"non-finite loss in {spec.variant} seed {spec.seed}: {e}"
            self.console.run_done(f"FAILED {spec.variant} seed {spec.seed}: {reason}")
            self.tracker.set_tags(run_id, {"harness.error": reason[:5000]})
            self.tracker.finish(run_id, "FAILED")
            return Outcome(spec.variant, spec.seed, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=parent_id)

    def open_run(self, spec: RunSpec, key: str, ckpt, existing: list, done: list, parent_id: str, shared: dict) -> tuple[str, dict | None]:
        """The run to train in and the checkpoint to continue from: an interrupted run of the key
        (with --rerun, only a replacement started after the newest finished run), or a new one."""
        since = done[-1].start_time if done else -1
        run_id, snapshot = resume.resume_point(self.tracker, [r for r in existing if r.status != "FINISHED" and r.start_time > since], ckpt)
        if run_id is not None:
            self.tracker.reopen(run_id)
            self.tracker.set_tags(run_id, {"harness.error": ""})
            where = f"after epoch {snapshot['epoch']}" if snapshot else "from the start"
            self.console.line(f"resume {spec.variant} seed {spec.seed} {where} in run {run_id}")
            return run_id, snapshot
        checkpoint.remove(ckpt)
        split = self.splits.fingerprint(spec.seed, spec.split_seed)
        tags = {**self.tags, "harness.run_key": key, "harness.split_fingerprint": split}
        run_id = self.tracker.start_seed_run(parent_id, spec.variant, spec.seed, tags, {**shared, "seed": spec.seed})
        self.splits.data_for(spec.seed, spec.split_seed)
        self.tracker.log_inputs(run_id, self.inputs(split))
        return run_id, None

    def record(self, spec: RunSpec, run_id: str, parent_id: str, ckpt, done: list, model, result: engine.Result, start: float) -> Outcome:
        """Test and record a trained run, close it FINISHED, and (--rerun) delete the runs it replaces."""
        metrics = recording.record(self.tracker, run_id, self.cfg, spec, self.splits.data_for(spec.seed, spec.split_seed), model, result)
        self.tracker.finish(run_id, "FINISHED")
        checkpoint.remove(ckpt)
        if self.rerun:
            for old in done:  # one finished run per key, the newest; one a registered model version points at is kept, set aside
                self.replace(old.run_id, run_id, spec)
        try:
            self.tracker.update_aggregates(parent_id)
        except store.StoreError as e:  # the run itself is recorded FINISHED; the experiment stops after it
            self.store_error = str(e)
        seconds = time.perf_counter() - start
        self.console.run_done(f"finished {spec.variant} seed {spec.seed} in {duration(seconds)}: test accuracy {metrics['test_acc']:.2f}")
        trained = sum(s.seconds for s in result.history if s.epoch > self.first_epoch.get(run_id, 0))  # this command's epochs
        if result.notes:  # resumed on another device type
            self.console.line(f"note: {spec.variant} seed {spec.seed}: {' '.join(result.notes)}")
            self.tracker.set_tags(run_id, {names.NOTE_TAG: " ".join(result.notes)[:5000]})
        return Outcome(spec.variant, spec.seed, "FINISHED", metrics["best_val_acc"], result.selected_epoch,
                       result.history[-1].val_acc, metrics["test_acc"], seconds, parent_id=parent_id, train_seconds=trained)

    def replace(self, old: str, new: str, spec: RunSpec) -> None:
        """Delete a finished run that `new` replaces; keep it, no longer counted, when a registered model version points at it."""
        versions = models.Registry(self.tracker.uri).versions_of(old)
        if not versions:
            self.tracker.delete(old)
            return
        self.tracker.set_tags(old, {"harness.role": names.REPLACED_ROLE, "harness.replaced_by": new})
        named = ", ".join(f"{m} version {v}" for m, v in versions)
        self.console.line(f"kept run {old} ({spec.variant} seed {spec.seed}): {named} points at it; it no longer counts, run {new} does")

    def train(self, spec: RunSpec, claims: Claims, key: str, run_id: str, ckpt, snapshot: dict | None):
        """Train from `snapshot` (or the start), checkpointing then logging each epoch."""
        logged = self.tracker.logged_epochs(run_id) if snapshot is not None else set()
        if snapshot is not None:  # epochs checkpointed but not yet logged when the last process died
            for h in snapshot["history"]:
                if h["epoch"] not in logged:
                    self.tracker.log_metrics(run_id, names.epoch_metrics(engine.EpochStats(**h)), step=h["epoch"])

        def on_progress(progress: engine.Progress) -> None:
            if progress.phase != "epoch":
                self.console.progress(progress)
                faults.point("step")
                return
            # Checkpoint first, then log: an epoch's metrics are in the store only once its
            # checkpoint is durable, so a restart never logs an epoch twice.
            if not claims.holds(key):
                raise LostClaim(f"another runner took over {spec.variant} seed {spec.seed}; this one stops")
            self.console.epoch_done(progress.epoch, progress.epochs, progress.stats.seconds)
            checkpoint.save(ckpt, {**progress.snapshot, "run_id": run_id, "key": key})
            faults.point("checkpointed")
            if progress.epoch not in logged:  # an older checkpoint put back by hand retrains epochs the store has: once each
                self.tracker.log_metrics(run_id, names.epoch_metrics(progress.stats), step=progress.epoch)
            faults.point("logged")

        data = self.splits.data_for(spec.seed, spec.split_seed)
        build, pieces = assemble(spec, data.source.dataset)
        runtime = dataclasses.replace(self.cfg.runtime, progress_every=1 if faults.wants("step") else self.console.progress_every)
        t = data.tensors
        return engine.train(build, t.x_train, t.y_train, t.x_val, t.y_val, spec.train, spec.seed, on_progress, snapshot, runtime, pieces, spec.sources)
