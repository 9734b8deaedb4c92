"""`[data] split_seed = "per_seed"`: each training seed draws its own stratified split, the same for
every variant of that seed, so the pairing holds while the intervals also cover the split."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from harness.base.errors import UsageError
from harness.data import loading
from harness.settings import experiment_file
from tests.helpers import fresh_store, make_arrays, run_cli

RUN = (
    "run",
    "--variants",
    "baseline,dropout",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--set",
    "train.batch_size=64",
    "--set",
    "data.split_seed=per_seed",
)


@pytest.mark.slow
def test_each_seed_has_its_own_split_shared_by_the_variants(tmp_path, data_dir):
    fresh_store(tmp_path)
    proc = run_cli(*RUN, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "split stratified drawn per seed" in proc.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    seeds = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")
    labels = make_arrays()["y_train"]
    by_seed = {}
    for r in seeds:
        seed = int(r.data.tags["harness.seed"])
        by_seed.setdefault(seed, set()).add(r.data.tags["harness.split_fingerprint"])
        assert r.data.params["data.split_seed"] == "per_seed"
    assert set(by_seed) == {2021, 2022}
    for seed, fps in by_seed.items():
        # one per seed, the variants share it
        assert fps == {loading.make_split(labels, "stratified", 0.8, seed).fingerprint}
    assert by_seed[2021] != by_seed[2022]
    report = (tmp_path / "reports" / "default" / "report.md").read_text()
    assert (
        "The seeds vary the initial weights, the batch order and the train/validation split (a new split per seed)"
        in report
    )
    assert "used different data splits" not in report and "dropout | 2 |" in report
    again = run_cli(*RUN, cwd=tmp_path, data=data_dir)  # the run keys hold: nothing is trained twice
    assert again.returncode == 0 and again.stdout.count("skip ") == 4


@pytest.mark.slow
def test_a_fixed_split_says_what_the_intervals_leave_out(tmp_path, data_dir):
    fresh_store(tmp_path)
    proc = run_cli(*RUN[:-2], cwd=tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "reports" / "default" / "report.md").read_text()
    assert (
        "The seeds vary the initial weights and the batch order; the train/validation split (`data.split_seed`) and the test set stay fixed"
        in report
    )


@pytest.mark.parametrize(
    "sets,fragment",
    [
        (
            ["data.split_seed=per_seed", "data.split=prefix"],
            'data.split_seed: "per_seed" needs data.split = "stratified"',
        ),
        (["data.split_seed=each"], "data.split_seed: 'each' is not allowed; expected an integer >= 0, or \"per_seed\""),
        (["data.split_seed=-1"], "data.split_seed: -1 is not allowed"),
    ],
)
def test_bad_split_seeds_are_refused(sets, fragment):
    with pytest.raises(UsageError, match=None) as e:
        experiment_file.load_experiment(None, sets)
    assert fragment in str(e.value)


def test_split_seed_of():
    assert loading.split_seed_of("per_seed", 2023) == 2023 and loading.split_seed_of(7, 2023) == 7
    labels = np.repeat(np.arange(10), 20)
    assert (
        loading.make_split(labels, "stratified", 0.8, 1).fingerprint
        != loading.make_split(labels, "stratified", 0.8, 2).fingerprint
    )
