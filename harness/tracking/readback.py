"""Reading an experiment back from MLflow as plain records: every variant's seed runs with their
final metrics, epoch histories, confusion matrices and per-image test predictions. The report is
built from these alone.

Which parent run stands for a variant: the one the last `run` used; else the newest whose shared
settings (SHARED below) match the baseline's; else the newest. So every variant
the experiment ever trained is in the report, and one trained under other settings is shown as
not comparable rather than dropped.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.errors import UsageError
from harness.tracking import names, store
from harness.tracking.names import (
    CONFUSION,
    EPOCH_METRICS,
    PREDICTIONS,
    REPORT_PARENTS_TAG,
    counts_as_seed_run,
    seed_of,
)
from harness.tracking.store import quiet_mlflow

SHARED = ("train.epochs", "train.select", "data.dataset", "data.split", "data.train_ratio", "data.split_seed")


@dataclass
class SeedRun:
    """One finished or failed (variant, seed) run as read back from the store."""

    run_id: str
    parent_id: str
    variant: str
    seed: int
    status: str
    start_time: int
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]  # final values
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(epoch, value)]
    confusion: Any = None  # the test-set confusion matrix (numpy), for finished runs
    classes: tuple[str, ...] = ()  # the class names of the confusion matrix's rows, as the run stored them
    # {"labels", "selected", "last"[, "probs"]}: per test image (numpy), when the run stored them
    # (runs recorded before the ledger have no "probs")
    predictions: Any = None


def require_store(uri: str) -> None:
    """Reading must not create a store: a SQLite store that does not exist is an error naming it."""
    from harness.tracking.addresses import sqlite_path

    if uri.startswith("sqlite:///") and not sqlite_path(uri).is_file():
        raise UsageError(
            f"tracking_uri: no MLflow store at {str(sqlite_path(uri))!r}; run `python -m harness run` first or pass --tracking-uri"
        )
    from harness.tracking import creation

    if creation.half_made(uri):
        raise UsageError(
            f"tracking_uri: the store {str(sqlite_path(uri))!r} was left half-made by an interrupted first run and holds no runs; "
            "`python -m harness run` makes it again"
        )


def experiment_tags(uri: str, experiment: str) -> dict[str, str]:

    found = store.mlflow_client(uri).get_experiment_by_name(experiment)
    return dict(found.tags) if found else {}


def choose_parents(
    parents: list[tuple[str, str, int, dict[str, str]]], baseline: str, preferred: set[str]
) -> dict[str, str]:
    """variant -> parent run id, from (run id, variant, start time, params) of every parent."""
    newest_first = sorted(parents, key=lambda p: p[2], reverse=True)
    chosen = {v: rid for rid, v, _, _ in newest_first[::-1] if rid in preferred}
    base = next((p for p in newest_first if p[0] == chosen.get(baseline)), None) or next(
        (p for p in newest_first if p[1] == baseline), None
    )
    if base is not None:
        chosen.setdefault(baseline, base[0])
        for rid, variant, _, params in newest_first:
            if variant not in chosen and all(params.get(k) == base[3].get(k) for k in SHARED):
                chosen[variant] = rid
    for rid, variant, _, _ in newest_first:
        chosen.setdefault(variant, rid)
    return chosen


def read_runs(uri: str, experiment: str) -> list[SeedRun]:
    """Every seed run under the parent run that stands for each variant, with histories and artifacts."""

    from harness.tracking import addresses

    quiet_mlflow()
    addresses.relocate_artifacts(uri, experiment)
    client = store.mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise UsageError(f"--experiment: no experiment named {experiment!r} in the store {uri}")
    eid = found.experiment_id
    # a run tagged so by hand, without its variant, is not a variant's parent
    parents = [
        p
        for p in client.search_runs([eid], filter_string="tags.`harness.role` = 'variant'", max_results=10_000)
        if p.data.tags.get(names.VARIANT_TAG)
    ]
    baseline = (
        max(parents, key=lambda p: p.info.start_time).data.tags.get(names.BASELINE_TAG, "baseline")
        if parents
        else "baseline"
    )
    latest = choose_parents(
        [(p.info.run_id, p.data.tags[names.VARIANT_TAG], p.info.start_time, dict(p.data.params)) for p in parents],
        baseline,
        set(found.tags.get(REPORT_PARENTS_TAG, "").split(",")) - {""},
    )
    runs = []
    for variant, parent_id in sorted(latest.items()):
        children = client.search_runs(
            [eid], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=10_000
        )
        best_by_seed: dict[int, Any] = {}
        for r in sorted(children, key=lambda r: r.info.start_time):
            if not counts_as_seed_run(r.data.tags):
                # a replaced run, kept for its model version, is no news
                if r.data.tags.get(names.ROLE_TAG, "seed") == "seed":
                    print(
                        f"warning: run {r.info.run_id} under {variant}'s parent run {parent_id} has no valid harness.seed tag "
                        f"({r.data.tags.get(names.SEED_TAG, 'none')!r}; not a run the harness wrote): left out",
                        file=sys.stderr,
                    )
                continue
            seed = seed_of(r.data.tags)
            prev = best_by_seed.get(seed)
            if prev is None or prev.info.status != "FINISHED":  # a finished run wins over a failed one
                best_by_seed[seed] = r
        for seed, r in sorted(best_by_seed.items()):
            history = {
                key: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, key))
                for key in EPOCH_METRICS
            }
            classes, confusion, predictions = (
                _artifacts(client, r.info.run_id) if r.info.status == "FINISHED" else ((), None, None)
            )
            runs.append(
                SeedRun(
                    r.info.run_id,
                    parent_id,
                    variant,
                    seed,
                    r.info.status,
                    r.info.start_time,
                    dict(r.data.params),
                    dict(r.data.tags),
                    dict(r.data.metrics),
                    history,
                    confusion,
                    classes,
                    predictions,
                )
            )
    return runs


def _artifacts(client, run_id: str) -> tuple[tuple[str, ...], Any, Any]:
    """The run's class names and test-set confusion matrix, and its per-image predictions; empty
    where the run has no such artifact (runs from before they were stored)."""
    import numpy as np

    from harness.training.evaluation import read_confusion_csv

    with tempfile.TemporaryDirectory() as tmp:
        try:
            classes, confusion = read_confusion_csv(Path(client.download_artifacts(run_id, CONFUSION, tmp)))
        except Exception:  # noqa: BLE001 - a run without the artifact simply has no matrix
            classes, confusion = (), None
        try:
            with np.load(client.download_artifacts(run_id, PREDICTIONS, tmp)) as f:
                predictions = {k: f[k] for k in ("labels", "selected", "last", "probs") if k in f.files}
        except Exception:  # noqa: BLE001 - nor predictions
            predictions = None
    return classes, confusion, predictions
