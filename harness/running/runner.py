"""Runs every (variant, seed) pair of an experiment: one engine, one split, one store.

Each pair is skipped when its run key has finished, resumed from its checkpoint when it was
interrupted, or started; then trained and recorded. One failing run does not stop the others.
Several runners on one experiment share the pairs through claims (harness/running/claims.py).
With seeds on demand the runner asks the design (harness/analysis/sequential.py) which pairs the
next round needs, and trains them.
"""

from __future__ import annotations

import time

import torch

from harness.analysis import sequential
from harness.base import faults
from harness.data.loading import Loaded, Splits
from harness.running import claims as claims_mod
from harness.running import fusing, outcomes, recording, resume, units
from harness.running.claims import Claims
from harness.running.console import Console
from harness.running.outcomes import Outcome
from harness.settings import checks
from harness.settings.config import ExperimentConfig, RunSpec
from harness.tracking import models, names, provenance, store


class Runner:
    """Trains the pairs of one experiment on data already on `device`, tracked in the store at `uri`."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: Loaded,
        uri: str,
        device: torch.device,
        console: Console,
        rerun: bool = False,
        command: str | None = None,
    ) -> None:
        self.cfg, self.device, self.console, self.rerun = cfg, device, console, rerun
        self.splits = Splits(data, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed, device)
        self.test_digest = ""  # the test set's hash, computed when a run first records its inputs
        models.warm_up()
        self.tracker = store.Tracker(uri, cfg.name, cfg.checkpoint_folder)
        self.tags = provenance.run_tags(cfg, data, device, command)
        self.parents: dict[tuple[str, str], tuple[str, dict]] = {}
        self.rule = (
            sequential.RULE
        )  # seeds on demand: the rule the experiment's design recorded (experiment.run sets it)
        self.place = units.Place(
            cfg, self.tracker, console, self.splits, self.tags, rerun, self.key, self.parent, self.inputs, self.replace
        )

    @property
    def store_error(self) -> str:
        """Set when the store stopped taking writes: the experiment stops there."""
        return self.place.store_error

    @store_error.setter
    def store_error(self, value: str) -> None:
        self.place.store_error = value

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
        return models.dataset_inputs(
            self.cfg.data.dataset,
            self.data.source.identity,
            split,
            self.test_digest,
            {"train": len(t.y_train), "val": len(t.y_val), "test": len(t.y_test)},
        )

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
            walk = sequential.decide(
                outcomes.correct_counts(done.values(), images),
                set(done),
                cfg.baseline,
                [v for v in cfg.variants if v != cfg.baseline],
                cfg.seeds,
                cfg.sequential,
                cfg.analysis,
                self.rule,
            )
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
            resume.sweep_dangling(self.tracker, claims, self.console, self.cfg.checkpoint_folder)
            by_pair: dict[tuple[str, int], Outcome] = {}
            pending, waited = pairs, False
            while pending:
                deferred = []
                planned = fusing.units(self, pending)  # one pair, or a fused group (train.fuse)
                for i, unit in enumerate(planned):
                    held = fusing.claim_all(self, claims, unit)  # every key of a group, or none
                    deferred += [] if held else [p for p, _ in unit]
                    try:
                        if held:
                            self.console.header(fusing.title(held, pairs))
                            by_pair.update(units.run(self.place, held, claims))
                    except store.StoreError as e:  # stop here: what finished is in the store, the rest is not run
                        self.store_error = str(e)
                    finally:
                        for _, spec in held:
                            claims.release(self.key(spec))
                    self.settle({p[0] for u in planned[i + 1 :] for p, _ in u} | {p[0] for p in deferred})
                    if self.store_error:
                        return [
                            by_pair.get(p) or Outcome(*p, "FAILED", error=f"not run: {self.store_error}") for p in pairs
                        ]
                if deferred and not waited:
                    self.console.line(f"waiting for {len(deferred)} run(s) that another runner is training")
                    waited = True
                if deferred:
                    time.sleep(1.0)
                pending = deferred
            return [by_pair[pair] for pair in pairs]
        finally:
            claims.close()
            self.settle(set())
            self.log_figures()

    def settle(self, training: set[str]) -> None:
        """Bring up to date the aggregates of the parents whose variant has no run left to train in
        `training` (one search and one write per parent, not per run); a store that takes no more
        writes stops the experiment (its runs are recorded; the next command settles them)."""
        for parent_id, variant in list(self.place.unsettled.items()):
            if variant in training or self.store_error:
                continue
            try:
                self.tracker.update_aggregates(parent_id)
            except store.StoreError as e:
                self.store_error = str(e)
            self.place.unsettled.pop(parent_id, None)

    def log_figures(self) -> None:
        """Wait for the last runs' figures (harness/running/recording.py) and log them; a store that
        takes no writes, or an interruption, leaves them out (they are views of what was logged)."""
        try:
            for problem in recording.log_figures(self.tracker, wait=True):
                self.console.line(f"warning: {problem}")
        except store.StoreError:
            pass

    def parent(self, spec: RunSpec) -> tuple[str, dict]:
        """The variant's parent run (created on first use, then remembered) and the params its runs share."""
        split = self.tags[names.SPLIT_TAG]
        key = spec.variant_key(self.data.source.identity, split)
        if (spec.variant, key) in self.parents:
            return self.parents[spec.variant, key]
        shared = {k: v for k, v in spec.flat().items() if k != "seed"}
        # how it ran, as written in [train]
        shared.update({f"train.{k}": getattr(self.cfg.runtime, k) for k in checks.RUNTIME_FIELDS})
        shared.update(
            {
                "data.dataset": self.cfg.data.dataset,
                "data.split": self.cfg.data.split,
                "data.train_ratio": self.cfg.data.train_ratio,
                "data.split_seed": self.cfg.data.split_seed,
            }
        )
        parent_id = self.tracker.parent(spec.variant, key, self.tags, shared, self.inputs(split))
        self.parents[spec.variant, key] = parent_id, shared
        return parent_id, shared

    def replace(self, old: str, new: str, spec: RunSpec) -> None:
        """Delete a finished run that `new` replaces; keep it, no longer counted, when a registered model version points at it."""
        versions = models.Registry(self.tracker.uri).versions_of(old)
        if not versions:
            self.tracker.delete(old)
            return
        self.tracker.set_tags(old, {names.ROLE_TAG: names.REPLACED_ROLE, names.REPLACED_BY_TAG: new})
        named = ", ".join(f"{m} version {v}" for m, v in versions)
        self.console.line(
            f"kept run {old} ({spec.variant} seed {spec.seed}): {named} points at it; it no longer counts, run {new} does"
        )
