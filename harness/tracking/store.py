"""Writing to MLflow: the store's address, one parent run per variant with one child run per seed,
per-epoch metrics, final metrics and artifacts, across-seed aggregates and the paired comparison
on the parent. Reading an experiment back is harness/tracking/readback.py.

The rest of the harness never imports mlflow; it calls these modules.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.base import credentials
from harness.base.errors import StoreError  # noqa: F401 - raised here, caught by the runner and the CLI
from harness.base.files import file_lock
from harness.tracking import names
from harness.tracking.names import VERDICT_TAG

FINAL_AGGREGATES = (
    "best_val_acc",
    "final_val_acc",
    "final_val_loss",
    "test_acc",
    "test_loss",
    "test_acc_last",
    "test_nll",
    "test_ece",
    "test_brier",
    "epoch_seconds_mean",
)


def quiet_mlflow():
    """Import mlflow without its progress bars and start-up chatter on our console."""
    import logging

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports leave the machine unless the user asks
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the console is ours
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs a traceback for every database error it then raises; the harness retries a busy store
    # and names an unwritable one in one line itself.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    return mlflow


def resolve_uri(setting: str = "", reach: bool = True) -> str:
    """The store's address, checked (harness/tracking/addresses.py)."""
    from harness.tracking import addresses

    return addresses.resolve(setting, reach)


def mlflow_client(uri: str):
    """An MlflowClient of the store at `uri`, a relative SQLite path made absolute first
    (addresses.absolute: MLflow caches a store per address for the life of the process)."""
    from mlflow import MlflowClient

    from harness.tracking import addresses

    return MlflowClient(tracking_uri=addresses.absolute(uri))


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside the database file, in `mlartifacts/`."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()
    return None


@contextlib.contextmanager
def store_lock(folder: Path):
    """An exclusive lock (flock) for the few store writes that must not race between runners on
    one machine: creating the database and experiment, and creating a variant's parent run."""
    with file_lock(folder / ".store.lock"):
        yield


# Errors of a store call that lost a race with another runner and succeeds when tried again:
# SQLite busy, and MLflow's read-then-insert of a tag or latest metric meeting the row another
# runner inserted in between (the transaction is rolled back whole; the retry updates that row).
_TRANSIENT = ("locked", "busy", "UNIQUE constraint failed")
# Errors that mean the store cannot take writes at all (its disk is full or failing, it became read-only).
_UNWRITABLE = (
    "disk I/O error",
    "database or disk is full",
    "readonly database",
    "unable to open database file",
    "No space left",
)


def unwritable(error: BaseException) -> str:
    """Why `error` means the store cannot take writes at all ('' when it does not)."""
    return next((s for s in _UNWRITABLE if s in str(error)), "")


def _retrying(fn):
    """Retry a store call that lost a race with another runner writing to the same store."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        for attempt in range(30):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - MLflow wraps the driver's error in its own types
                if unwritable(e):
                    raise StoreError(f"the MLflow store cannot be written ({unwritable(e)})") from e
                if not any(s in str(e) for s in _TRANSIENT) or attempt == 29:
                    raise
                time.sleep(0.1 + 0.05 * attempt)

    return call


@dataclass(frozen=True)
class KeyedRun:
    run_id: str
    status: str
    start_time: int
    metrics: dict[str, float]
    parent_id: str = ""


class Tracker:
    """Writes one experiment's runs. Construct it once per `run` command."""

    def __init__(self, uri: str, experiment: str, lock_dir: Path) -> None:

        from harness.tracking import creation

        quiet_mlflow()
        note = creation.ensure(uri)  # whole or not at all: a kill while it is made leaves no half-made store
        if note:
            print(f"note: {note}", file=sys.stderr, flush=True)
        self.uri = uri
        self.lock_dir = lock_dir
        with store_lock(lock_dir):
            self.client = mlflow_client(uri)  # creates and migrates the database on first use
            found = self.client.get_experiment_by_name(experiment)
            _enable_wal(uri)
            if found is None:
                self.experiment_id = self.client.create_experiment(
                    experiment,
                    artifact_location=_experiment_artifacts(uri, experiment),
                    tags={names.EXPERIMENT_KIND_TAG: names.EXPERIMENT_KIND},  # MLflow 3's UI opens it on its runs
                )
            else:
                self.experiment_id = found.experiment_id
                from harness.tracking import addresses

                addresses.relocate_artifacts(uri, experiment)  # the project folder moved: artifacts follow the store

    def named_run(
        self, role: str, name: str, match: dict[str, str], tags: dict[str, str], params: dict[str, Any] | None = None
    ) -> tuple[str, bool]:
        """The run of `role` whose tags include `match`, created on first use (named `name`, with
        `tags` and `params`); returns its id and whether it was created now."""
        where = " and ".join([f"tags.`harness.role` = '{role}'", *(f"tags.`{k}` = '{v}'" for k, v in match.items())])
        with store_lock(self.lock_dir):
            found = self._search(where)
            if found:
                return found[0].info.run_id, False
            run_id = _retrying(self.client.create_run)(
                self.experiment_id, run_name=name, tags=_masked({**tags, **match, names.ROLE_TAG: role})
            ).info.run_id
        self._log_params(run_id, params or {})
        return run_id, True

    def parent(self, variant: str, key: str, tags: dict[str, str], params: dict[str, Any], inputs: list = ()) -> str:
        """The variant's parent run for this configuration, created on first use (with the dataset `inputs`)."""
        run_id, created = self.named_run(
            "variant", variant, {names.VARIANT_KEY_TAG: key}, {**tags, names.VARIANT_TAG: variant}, params
        )
        if created:
            if inputs:
                self.log_inputs(run_id, list(inputs))
            self.finish(run_id, "FINISHED")  # a parent holds results, not a process: never RUNNING
        return run_id

    def child_run(self, parent_id: str, role: str, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        """A new run under `parent_id` (a seed run under its variant, a trial under its study)."""
        run = _retrying(self.client.create_run)(
            self.experiment_id,
            run_name=name,
            tags=_masked({**tags, "mlflow.parentRunId": parent_id, names.ROLE_TAG: role}),
        )
        self._log_params(run.info.run_id, params)
        return run.info.run_id

    def log_analysis(self, metrics: dict[str, float]) -> str:
        """The experiment's analysis run (one, named "effects"): the design's effects as metrics,
        so the MLflow UI shows them beside the variants."""
        run_id, _ = self.named_run("analysis", "effects", {}, {})
        self.log_metrics(run_id, metrics)
        self.finish(run_id, "FINISHED")
        return run_id

    @_retrying
    def _search(self, filter_string: str) -> list:
        return list(self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=10_000))

    def run_ids(self, filter_string: str) -> list[str]:
        return [r.info.run_id for r in self._search(filter_string)]

    def tagged_runs(self, filter_string: str, tag: str) -> list[tuple[str, str]]:
        """(run id, value of `tag`) of the runs that `filter_string` finds."""
        return [(r.info.run_id, r.data.tags.get(tag, "")) for r in self._search(filter_string)]

    def runs_with_key(self, key: str) -> list[KeyedRun]:
        """The live (not deleted) seed runs of a run key, oldest first."""
        found = self._search(f"tags.`harness.role` = 'seed' and tags.`harness.run_key` = '{key}'")
        return sorted(
            (
                KeyedRun(
                    r.info.run_id,
                    r.info.status,
                    r.info.start_time,
                    dict(r.data.metrics),
                    r.data.tags.get("mlflow.parentRunId", ""),
                )
                for r in found
            ),
            key=lambda r: r.start_time,
        )

    def running_seed_runs(self) -> list[tuple[str, str, str]]:
        """(run id, run key, parent run id) of every seed run the store says is RUNNING."""
        found = self._search("tags.`harness.role` = 'seed' and attributes.status = 'RUNNING'")
        return [
            (r.info.run_id, r.data.tags.get(names.RUN_KEY_TAG, ""), r.data.tags.get("mlflow.parentRunId", ""))
            for r in found
        ]

    @_retrying
    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    @_retrying
    def delete(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    @_retrying
    def runs_metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    @_retrying
    def logged_epochs(self, run_id: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(run_id, "val_acc")}

    def start_seed_run(
        self, parent_id: str, variant: str, seed: int, tags: dict[str, str], params: dict[str, Any]
    ) -> str:
        return self.child_run(
            parent_id,
            "seed",
            f"{variant}-seed{seed}",
            {**tags, names.VARIANT_TAG: variant, names.SEED_TAG: str(seed)},
            params,
        )

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, credentials.mask(str(v))) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            _retrying(self.client.log_batch)(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None and math.isfinite(v)]
        if metrics:  # one batch: an epoch's metrics are logged together or not at all
            _retrying(self.client.log_batch)(run_id, metrics=metrics)

    def log_epochs(self, run_id: str, epochs: list[tuple[int, dict[str, float]]]) -> None:
        """Several epochs' metrics (step, values) in as few calls as MLflow allows (1,000 metrics a batch)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for step, values in epochs
            for k, v in values.items()
            if v is not None and math.isfinite(v)
        ]
        for i in range(0, len(metrics), 1000):
            _retrying(self.client.log_batch)(run_id, metrics=metrics[i : i + 1000])

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        self.client.log_artifacts(run_id, str(folder))

    def log_text(self, run_id: str, text: str, name: str) -> None:
        """`text` as the run's artifact `name` (a failed run's traceback)."""
        _retrying(self.client.log_text)(run_id, text, name)

    def log_inputs(self, run_id: str, inputs: list) -> None:
        """MLflow dataset inputs (harness/tracking/models.py) on a run."""
        _retrying(self.client.log_inputs)(run_id, datasets=inputs)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        _retrying(self.client.log_batch)(run_id, tags=[RunTag(k, v) for k, v in _masked(tags).items()])

    @_retrying
    def finish(self, run_id: str, status: str) -> None:
        """status: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def update_aggregates(self, parent_id: str) -> None:
        """Recompute the parent's across-seed aggregates from its finished children."""
        from harness.analysis import stats

        children = [
            r
            for r in self._search(f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'FINISHED'")
            if names.counts_as_seed_run(r.data.tags)
        ]
        values: dict[str, float] = {"n_seeds": float(len(children))}
        for key in FINAL_AGGREGATES:
            s = stats.summarize([r.data.metrics[key] for r in children if key in r.data.metrics])
            if s.n:
                values.update(
                    {f"{key}_mean": s.mean, f"{key}_std": s.std, f"{key}_ci_low": s.ci_low, f"{key}_ci_high": s.ci_high}
                )
        self.log_metrics(parent_id, values)
        self.finish(parent_id, "FINISHED")  # a parent holds results, not a process: it is never left RUNNING


def _enable_wal(uri: str) -> None:
    """Write-ahead logging lets readers and one writer work at once; it persists in the file."""
    if uri.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(uri[len("sqlite:///") :], timeout=30)) as db:
            db.execute("pragma journal_mode=wal")


def _experiment_artifacts(uri: str, experiment: str) -> str | None:
    root = artifact_root(uri)
    return f"{root}/{experiment}" if root else None


def set_experiment_tags(uri: str, experiment: str, tags: dict[str, str]) -> None:
    """Record facts about the whole experiment (the report's parents, the design) on the MLflow experiment."""
    client = mlflow_client(uri)
    eid = client.get_experiment_by_name(experiment).experiment_id
    for key, value in tags.items():
        _retrying(client.set_experiment_tag)(eid, key, credentials.mask(value))


def log_comparisons(uri: str, by_parent: dict[str, tuple[dict[str, float], str]]) -> None:
    """Put each compared variant's paired difference against the baseline (metrics) and its verdict
    (tag VERDICT_TAG) on its parent run, so MLflow's compare view shows the report's numbers."""
    from mlflow.entities import Metric, RunTag

    client = mlflow_client(uri)
    now = int(time.time() * 1000)
    for parent_id, (metrics, verdict) in by_parent.items():
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)]
        tags = [RunTag(VERDICT_TAG, verdict), RunTag(names.DESCRIPTION_TAG, _description(metrics, verdict))]
        _retrying(client.log_batch)(parent_id, metrics=values, tags=tags)


def _description(metrics: dict[str, float], verdict: str) -> str:
    """The parent run's description in the MLflow UI: its verdict line, as the report's answer gives it."""
    delta, low, high = (
        metrics.get(k, math.nan) for k in ("paired_delta_test_acc", "paired_delta_ci_low", "paired_delta_ci_high")
    )
    if not math.isfinite(delta):
        return f"Verdict against the baseline: {verdict} (see the report)."
    interval = f", 95% CI [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) and math.isfinite(high) else ""
    pairs = int(metrics.get("paired_n", 0))
    return f"{verdict}: {delta:+.2f} points of test accuracy against the baseline{interval}, over {pairs} paired seeds (harness report)."


def _masked(tags: dict[str, str]) -> dict[str, str]:
    """Tags as they are stored: any password in an address masked (harness/base/credentials.py)."""
    return {k: credentials.mask(v) for k, v in tags.items()}
