"""Runners that write the same MLflow row at the same moment: MLflow's SQL store reads, then
inserts, so the second insert meets a UNIQUE constraint; the harness retries it (the store rolls
the transaction back whole) and the write lands once."""

from __future__ import annotations

import multiprocessing

import pytest
from mlflow import MlflowClient

from tests.helpers import fresh_store

WRITERS, ROUNDS = 6, 8


def _write(uri: str, experiments: list[str], value: str, barrier) -> None:
    from harness.tracking import store
    from harness.tracking.names import REPORT_PARENTS_TAG

    for name in experiments:
        barrier.wait(timeout=120)  # all writers at once, for each experiment
        try:
            store.set_experiment_tags(uri, name, {REPORT_PARENTS_TAG: value})
        except Exception:
            barrier.abort()  # the others stop waiting for this writer
            raise


# slow group: writers racing on one store (about 25 s)
@pytest.mark.slow
def test_simultaneous_experiment_tag_writes_all_succeed(tmp_path):
    fresh_store(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    # a new experiment each round: every writer races to insert the first row
    names = [f"race{r}" for r in range(ROUNDS)]
    for name in names:
        client.create_experiment(name)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_write, args=(uri, names, f"p{i}", barrier)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0] * WRITERS, "a writer failed"
    for name in names:
        assert client.get_experiment_by_name(name).tags["harness.report_parents"] in {f"p{i}" for i in range(WRITERS)}
