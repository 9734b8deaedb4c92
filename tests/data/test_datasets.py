"""Datasets as records: the run key names the data's content, CIFAR-100 and scikit-learn's digits
run through `run` and `report`, the content hash is cached, and a setting added later at its
neutral value leaves a store's finished runs finished."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from harness.base.errors import UsageError
from harness.data import datasets, loading
from tests.helpers import fresh_store, make_arrays, run_cli, seed_runs, write_npz

RUN = (
    "run",
    "--variants",
    "baseline",
    "--seeds",
    "2021,",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.threads=1",
)


@pytest.mark.slow  # slow group: about 40 s, three real `run` commands on two data files
def test_other_data_with_the_same_split_is_a_new_run_not_a_finished_one(tmp_path):
    """Two files of the same size give the prefix split the same fingerprint; the key names the
    data's content, so the second trains a run of its own, not skipped as 'already finished'."""
    work = tmp_path / "w"
    fresh_store(work)
    first = write_npz(tmp_path / "a")
    second = write_npz(tmp_path / "b", **{k: v for k, v in make_arrays(seed=1).items()})
    for folder in (first, second):
        proc = run_cli(*RUN, "--set", "data.split=prefix", cwd=work, data=folder)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "skip baseline" not in proc.stdout
    runs = seed_runs(work)
    assert len(runs) == 2 and len({r.data.tags["harness.dataset"] for r in runs}) == 2
    assert len({r.data.tags["harness.split_fingerprint"] for r in runs}) == 1
    again = run_cli(*RUN, "--set", "data.split=prefix", cwd=work, data=first)
    assert "skip baseline seed 2021: already finished" in again.stdout


def test_digits_from_scikit_learn_run_end_to_end(tmp_path):
    """A real dataset shipped inside an installed package: 1,797 handwritten digits, 1×32×32."""
    work = tmp_path / "w"
    fresh_store(work)
    proc = run_cli(
        *RUN,
        "--variants",
        "baseline,batchnorm",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--dataset",
        "digits",
        cwd=work,
        data=tmp_path / "data",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 of 4 runs finished" in proc.stdout and "data digits:" in proc.stdout
    arrays = np.load(tmp_path / "data" / "digits.npz")
    assert arrays["x_train"].shape == (1500, 32, 32, 1) and arrays["x_test"].shape == (297, 32, 32, 1)
    report = (work / "reports" / "default" / "report.md").read_text()
    assert "| 7 | " in report  # the per-class table names the digits, read from the runs' own files
    test_acc = [r.data.metrics["test_acc"] for r in seed_runs(work)]
    assert min(test_acc) > 50  # real images: two epochs of LeNet learn the digits well beyond chance (10%)
    before = (work / "reports" / "default" / "report.md").read_bytes()
    rebuilt = run_cli("report", "--experiment", "default", cwd=work)
    assert rebuilt.returncode == 0 and (work / "reports" / "default" / "report.md").read_bytes() == before


def test_cifar100_shaped_data_runs_and_reports_its_class_names(tmp_path):
    work = tmp_path / "w"
    fresh_store(work)
    folder = write_npz(tmp_path / "data", "cifar100.npz", **make_arrays(600, 200, classes=100))
    proc = run_cli(*RUN, "--dataset", "cifar100", cwd=work, data=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = seed_runs(work)
    assert "test_f1_aquarium_fish" in run.data.metrics and run.data.params["data.dataset"] == "cifar100"
    assert run.data.metrics["n_params"] == 62006 + 84 * 90 + 90  # the last layer has 100 outputs
    assert "| aquarium_fish | " in (work / "reports" / "default" / "report.md").read_text()


def test_a_file_of_the_wrong_shape_for_its_dataset_is_refused(tmp_path):
    folder = write_npz(tmp_path / "data", "digits.npz")  # CIFAR-shaped images under the digits name
    with pytest.raises(UsageError, match=r"x_train has shape \(500, 32, 32, 3\); expected \(N, 32, 32, 1\) for digits"):
        loading.read_source(datasets.get("digits"), folder)


def test_a_fifo_in_place_of_the_data_file_is_refused(tmp_path):
    (tmp_path / "cifar10.npz").parent.mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "cifar10.npz")
    with pytest.raises(UsageError, match="is not a regular file"):
        loading.read_source(datasets.get("cifar10"), tmp_path)


def test_the_content_hash_is_cached_beside_the_file_and_follows_changes(tmp_path):
    import hashlib
    import json

    folder = write_npz(tmp_path / "data")
    path = folder / "cifar10.npz"
    first = loading.content_digest(path)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cache = folder / "cifar10.npz.sha256.json"
    planted = {**json.loads(cache.read_text()), "sha256": "feedfacefeedface"}
    cache.write_text(json.dumps(planted))
    assert loading.content_digest(path) == "feedfacefeedface"  # read from the cache, not hashed again
    write_npz(folder, **make_arrays(seed=3))  # a changed file (size or time) is hashed again
    assert loading.content_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:16] != first


def test_a_read_only_data_folder_keeps_its_hash_in_the_user_cache(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        monkeypatch.setattr(loading, "atomic_write", _refuse_beside(tmp_path / "data"))
    folder = write_npz(tmp_path / "data")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    os.chmod(folder, 0o555)
    try:
        digest = loading.content_digest(folder / "cifar10.npz")
    finally:
        os.chmod(folder, 0o755)
    assert not (folder / "cifar10.npz.sha256.json").exists()
    assert any((tmp_path / "cache").glob("digest-*.json")) and len(digest) == 16


def _refuse_beside(folder):
    """As root, chmod does not stop writes: refuse writes into `folder` as a read-only one would."""
    from harness.base.files import atomic_write

    def write(path, payload, fault_point=""):
        if path.parent == folder:
            raise PermissionError(13, "Permission denied")
        return atomic_write(path, payload)

    return write


def test_a_setting_added_later_leaves_a_stores_finished_runs_finished(tmp_path, monkeypatch, data_dir):
    """Run once; then 'add' a training setting at its neutral value (as a later version of the
    harness would) and run again on the same store: the finished run is skipped, not retrained."""
    from harness.running import preflight
    from harness.running.console import Console
    from harness.running.runner import Runner
    from harness.settings import checks, experiment_file
    from harness.training import engine

    fresh_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    sets = [f"data.dir='{data_dir}'", "train.epochs=1", "train.batch_size=64", "train.threads=1", "seeds=[2021]"]

    def run_once():
        cfg = experiment_file.load_experiment(None, sets)
        uri, device = preflight.check(cfg)
        source = loading.read_source(datasets.get("cifar10"), data_dir)
        loaded = loading.load_split(source, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed, device)
        return Runner(cfg, loaded, uri, device, Console(open(os.devnull, "w"))).run_all()

    (first,) = run_once()
    assert first.status == "FINISHED" and not first.note
    Extended = dataclasses.make_dataclass(
        "TrainSettings",
        [("label_smoothing", float, dataclasses.field(default=0.0, metadata={"neutral": True}))],
        bases=(engine.TrainSettings,),
        frozen=True,
    )
    monkeypatch.setattr(checks, "TrainSettings", Extended)
    monkeypatch.setattr(checks, "TRAIN_FIELDS", checks.TRAIN_FIELDS + ("label_smoothing",))
    monkeypatch.setitem(checks.CHECKS, "train.label_smoothing", ("a number from 0 to 1", lambda v: 0 <= v <= 1))
    (second,) = run_once()
    assert second.status == "FINISHED" and second.note == "skipped: already finished"
    sets.append("train.label_smoothing=0.1")
    (third,) = run_once()
    assert third.status == "FINISHED" and not third.note  # another value is another run
    torch.set_num_threads(os.cpu_count() or 1)
