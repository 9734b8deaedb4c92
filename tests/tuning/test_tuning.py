"""Optuna tuning (harness/tuning: tuner.py, session.py, storage.py; the search spaces in
harness/settings/search.py) on tiny synthetic data: search-space checks, pruning, a NaN trial, MLflow
nesting, resume, two workers on one study, and the way back with `run --tuned` or `--params-from`.
Also: trials of a dead process are failed with their MLflow runs, SIGTERM to `tune --workers 2`
stops its workers and marks everything, two `tune` commands on one study stop at its total, tuning
the baseline trains each trial at its own lr, a storage it cannot keep or must not write is refused
in one line, and a database storage prints no Optuna warnings."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import typing

import optuna
import pytest
import tomllib
from mlflow import MlflowClient

from harness.base.errors import UsageError
from harness.data import datasets, loading
from harness.running import preflight
from harness.settings import config, experiment_file, search
from harness.tuning import tuner
from tests.helpers import ROOT, TINY, check_refusal, fresh_store, run_cli, run_process, store_rows


@pytest.mark.parametrize(
    "space,fragment",
    [
        ("p = {low = 0.5, high = 0.1}", "low (0.5) must be below high (0.1)"),
        ("lr = {low = 0.0, high = 0.1, log = true}", "log-uniform range needs low > 0"),
        ("p = {low = 0.0, high = 1.0}", "search.dropout.p: 1.0 is outside what the setting allows"),
        ("lr = {low = -1.0, high = 0.1}", "search.dropout.lr: -1.0 is outside"),
        ("q = {low = 0.0, high = 0.5}", "params.dropout.q: unknown setting"),
        ("p = {low = 0.0}", "needs both low and high"),
        ("p = {low = 0.0, high = 0.5, step = 2}", "search.dropout.p.step: unknown key"),
        ("p = {low = 'a', high = 0.5}", "search.dropout.p.low: expected float"),
        ("p = {choices = []}", "choices must be a non-empty list"),
        ("p = 0.3", "expected a table such as"),
    ],
)
def test_search_space_checks(tmp_path, space, fragment):
    path = tmp_path / "exp.toml"
    path.write_text(f"[search.dropout]\n{space}\n")
    with pytest.raises(UsageError) as e:
        search.check(experiment_file.load_experiment(str(path)))
    assert fragment in str(e.value)


def test_search_space_for_unknown_variant(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[search.dropuot]\np = {low = 0.0, high = 0.5}\n")
    with pytest.raises(UsageError, match="did you mean 'dropout'"):
        search.check(experiment_file.load_experiment(str(path)))


def test_default_experiment_declares_spaces():
    cfg = experiment_file.load_experiment(None)
    search.check(cfg)
    space = {p.name: p for p in search.space(cfg, "dropout")}
    assert space["p"].low == 0.0 and space["p"].high == 0.8 and space["lr"].log


def _prepared(tmp_path, data_dir, epochs=3):
    cfg = experiment_file.load_experiment(
        None,
        [
            f"data.dir='{data_dir}'",
            f"tracking_uri='sqlite:///{tmp_path}/mlflow.db'",
            f"checkpoint_dir='{tmp_path}/ck'",
            f"reports_dir='{tmp_path}/reports'",
            f"train.epochs={epochs}",
            "train.batch_size=32",
            "train.threads=1",
        ],
    )
    fresh_store(tmp_path)
    uri, device = preflight.check(cfg)
    source = loading.read_source(datasets.get("cifar10"), data_dir)
    return Prepared(
        cfg,
        uri,
        loading.load_split(source, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed, device, with_test=False),
    )


class Prepared(typing.NamedTuple):
    cfg: config.ExperimentConfig
    uri: str
    data: loading.Loaded


def _request(tmp_path, trials, pruner="median"):
    return tuner.TuneRequest("dropout", trials, (2021,), None, 1, "s", str(tmp_path / "optuna.journal"), pruner)


def test_pruning_a_nan_trial_and_mlflow_nesting(tmp_path, data_dir):
    from harness.tracking import store

    p = _prepared(tmp_path, data_dir, epochs=4)
    assert p.data.tensors.x_test.numel() == 0  # the test set is not on the device while tuning
    req = _request(tmp_path, 6)
    study = tuner.load_study(req)
    for _ in range(3):
        study.enqueue_trial({"p": 0.0, "lr": 5e-3})
    study.enqueue_trial({"p": 0.7, "lr": 1.0001e-4})  # learns nothing in 4 epochs: must be pruned
    study.enqueue_trial({"p": 0.0, "lr": 5e-3})
    tracker = store.Tracker(p.uri, p.cfg.name, p.cfg.checkpoint_folder)
    parent = tuner.study_parent(tracker, req)
    tuner.optimize(p.cfg, p.data, req, study, 5, parent, tracker, print)
    # a diverging trial: a search space whose learning rates make the loss non-finite at once
    nan_cfg = dataclasses.replace(p.cfg, search={"dropout": {"lr": {"low": 1e29, "high": 1e30, "log": True}}})
    tuner.optimize(nan_cfg, p.data, req, study, 1, parent, tracker, print)
    states = [t.state for t in study.trials]
    assert states[:3] == [optuna.trial.TrialState.COMPLETE] * 3
    assert states[3] == optuna.trial.TrialState.PRUNED
    assert states[5] == optuna.trial.TrialState.FAIL
    assert "non-finite loss in dropout" in study.trials[5].user_attrs["fail_reason"]

    client = MlflowClient(tracking_uri=p.uri)
    exp = client.get_experiment_by_name("default")
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 6
    by_trial = {int(r.data.tags["harness.trial"]): r for r in children}
    assert [by_trial[i].data.tags["harness.trial_state"] for i in range(6)] == ["COMPLETE"] * 3 + [
        "PRUNED",
        "COMPLETE",
        "FAIL",
    ]
    assert [by_trial[i].info.status for i in (0, 3, 5)] == ["FINISHED", "KILLED", "FAILED"]
    assert by_trial[0].data.params["searched.p"] == "0.0"
    assert [m.step for m in client.get_metric_history(by_trial[0].info.run_id, "val_acc")] == [1, 2, 3, 4]
    assert len(client.get_metric_history(by_trial[3].info.run_id, "val_acc")) < 4
    assert not any(k.startswith("test") for r in children for k in r.data.metrics)


@pytest.mark.slow  # slow group: about 60 s of real `tune` commands (one with 2 workers) and a `run --tuned`
def test_cli_tune_resume_workers_and_tuned_run(tmp_path, data_dir):
    fresh_store(tmp_path)
    common = ["--variant", "dropout", "--epochs", "2", "--set", "train.batch_size=64"]
    first = run_cli("tune", *common, "--trials", "2", cwd=tmp_path, data=data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_process("tune", *common, "--trials", "4", "--workers", "2", cwd=tmp_path, data=data_dir)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "2 trial(s) so far, 2 to run with 2 worker(s)" in second.stdout
    study = optuna.load_study(
        study_name="default-dropout", storage=tuner.open_storage(str(tmp_path / "optuna" / "default.journal"))
    )
    assert sorted(t.number for t in study.trials) == list(range(4))  # none lost, none twice
    assert all(t.state.is_finished() for t in study.trials)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and parents[0].data.metrics["trials"] == 4
    kids = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    assert sorted(int(k.data.tags["harness.trial"]) for k in kids) == list(range(4))

    best = tomllib.loads((tmp_path / "reports" / "default" / "tuning" / "dropout.toml").read_text())
    assert best["tuning"]["trials"] == 4 and set(best["params"]["dropout"]) == {"p", "lr"}
    section = (tmp_path / "reports" / "default" / "tuning" / "dropout.md").read_text()
    assert "![dropout_history.png](tuning/dropout_history.png)" in section

    back = run_cli(
        "run",
        "--variants",
        "baseline,dropout",
        "--tuned",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--set",
        "train.batch_size=64",
        cwd=tmp_path,
        data=data_dir,
    )
    assert back.returncode == 0, back.stderr[-2000:]
    assert "parameters from reports/default/tuning/dropout.toml" in back.stdout
    runs = client.search_runs(
        [exp.experiment_id], filter_string="tags.`harness.role` = 'seed' and tags.`harness.variant` = 'dropout'"
    )
    assert len(runs) == 2
    assert float(runs[0].data.params["model.dropout.p"]) == best["params"]["dropout"]["p"]
    assert float(runs[0].data.params["train.lr"]) == best["params"]["dropout"]["lr"]
    report = (tmp_path / "reports" / "default" / "report.md").read_text()
    assert "## Tuning" in report and "### Tuning `dropout`" in report and "| dropout | 2 |" in report


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--variant", "dropuot"], "did you mean 'dropout'"),
        (  # a composition is named as one, not as an unknown component
            ["--variant", "dropout+batchnorm"],
            "'dropout+batchnorm' composes 2 components; tune searches one component's parameters at a time: tune dropout and batchnorm one by one",
        ),
        (["--variant", "dropout", "--trials", "0"], "--trials: 0 is not allowed"),
        (["--variant", "dropout", "--workers", "0"], "--workers: 0 is not allowed"),
        (["--variant", "dropout", "--pruner", "asha"], "--pruner: 'asha' is not allowed"),
        (["--variant", "dropout", "--timeout", "-5"], "--timeout"),
    ],
)
def test_bad_tune_requests(tmp_path, data_dir, args, fragment):
    proc = run_cli("tune", *args, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"data"}


def test_trials_of_a_dead_process_are_failed_on_the_next_start(tmp_path):

    req = _request(tmp_path, 5)
    study = tuner.load_study(req)
    live = study.ask()
    live.set_user_attr("harness.worker", tuner.OWNER)
    dead = study.ask()
    dead.set_user_attr("harness.worker", f"{socket.gethostname()}:{2**22 + 12345}")  # no such process
    from harness.tracking import store

    fresh_store(tmp_path)
    tracker = store.Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "default", tmp_path / "checkpoints")
    parent = tuner.study_parent(tracker, req)
    runs = {
        t.number: tracker.child_run(parent, "trial", f"dropout-trial{t.number}", {"harness.trial": str(t.number)}, {})
        for t in (live, dead)
    }
    assert tuner.fail_stale_trials(study) == [dead.number]
    tuner.fail_stale_trial_runs(tracker, parent, [dead.number])
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert states[live.number] == optuna.trial.TrialState.RUNNING
    client = MlflowClient(tracking_uri=tracker.uri)  # the MLflow runs follow
    assert client.get_run(runs[dead.number]).info.status == "FAILED"
    assert client.get_run(runs[dead.number]).data.tags["harness.error"] == "its process died while the trial ran"
    assert client.get_run(runs[live.number]).info.status == "RUNNING"


def test_params_from_file(tmp_path):
    path = tmp_path / "best.toml"
    path.write_text("[tuning]\nstudy = 'x'\n\n[params.dropout]\np = 0.25\nlr = 0.002\n")
    cfg = experiment_file.load_experiment(None, params_files=[str(path)], variants=("dropout",))
    spec = config.resolve(cfg, "dropout", 1)
    assert spec.model_params == {"dropout.p": 0.25} and spec.train.lr == 0.002
    bad = tmp_path / "bad.toml"
    bad.write_text("[other]\nx = 1\n")
    with pytest.raises(UsageError, match="must hold \\[params.<variant>\\] tables"):
        experiment_file.load_experiment(None, params_files=[str(bad)])
    with pytest.raises(UsageError, match="does not exist"):
        experiment_file.load_experiment(None, params_files=[str(tmp_path / "missing.toml")])


@pytest.mark.slow
def test_sigterm_to_tune_stops_its_workers_and_marks_their_trials(tmp_path, data_dir):
    """SIGTERM to `tune --workers 2` reaches the workers; everything is marked, exit 143."""
    import subprocess

    from tests.helpers import ROOT

    fresh_store(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(ROOT),
        "HARNESS_DATA_DIR": str(data_dir),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "tune",
            "--variant",
            "dropout",
            "--trials",
            "6",
            "--workers",
            "2",
            "--epochs",
            "200",
            "--pruner",
            "none",
            "--set",
            "train.batch_size=64",
            "--set",
            "train.threads=1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.time() + 180
    while time.time() < deadline:  # both workers are in a trial
        exp = client.get_experiment_by_name("default")
        running = (
            client.search_runs([exp.experiment_id], "tags.`harness.role` = 'trial' and attributes.status = 'RUNNING'")
            if exp
            else []
        )
        if len(running) >= 2:
            break
        time.sleep(0.5)
    assert len(running) >= 2, "the workers never started their trials"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    exp = client.get_experiment_by_name("default")
    trials = client.search_runs([exp.experiment_id], "tags.`harness.role` = 'trial'")
    assert trials and all(r.info.status != "RUNNING" for r in trials)
    (parent,) = client.search_runs([exp.experiment_id], "tags.`harness.role` = 'study'")
    assert parent.info.status == "KILLED"
    study = optuna.load_study(
        study_name="default-dropout", storage=tuner.open_storage(str(tmp_path / "optuna" / "default.journal"))
    )
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    workers = subprocess.run(["pgrep", "-f", f"parent-run {parent.info.run_id}"], capture_output=True, text=True)
    assert workers.stdout.strip() == ""  # no worker outlives the command


@pytest.mark.slow
def test_two_concurrent_tunes_of_one_study_stop_at_its_total(tmp_path, data_dir):
    """--trials is the study's total, also when two commands tune it at once."""

    fresh_store(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(ROOT),
        "HARNESS_DATA_DIR": str(data_dir),
    }
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "tune",
        "--variant",
        "dropout",
        "--trials",
        "4",
        "--epochs",
        "2",
        "--pruner",
        "none",
        "--set",
        "train.batch_size=64",
        "--set",
        "train.threads=1",
    ]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    study = optuna.load_study(
        study_name="default-dropout", storage=tuner.open_storage(str(tmp_path / "optuna" / "default.journal"))
    )
    assert len(study.trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.slow  # slow group: a real `tune` of 3 trials, then a `run --tuned`
def test_tune_of_the_baseline_trains_each_trial_at_its_own_lr(tmp_path, data_dir):
    """`tune --variant baseline` (harness/experiments/default.toml's search space): trials at different lr
    train differently, so they do not all score the same."""
    fresh_store(tmp_path)
    proc = run_cli(
        "tune", "--variant", "baseline", "--trials", "3", "--pruner", "none", *TINY, cwd=tmp_path, data=data_dir
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = store_rows(
        tmp_path,
        "select m.value from metrics m join tags t on m.run_uuid = t.run_uuid where m.key = 'val_loss' "
        "and t.key = 'harness.role' and t.value = 'trial'",
    )
    assert len(losses) == 3 and len(set(losses)) == 3, losses  # three trainings, not one three times
    tuned = (tmp_path / "reports" / "default" / "tuning" / "baseline.toml").read_text()
    run = run_cli("run", "--tuned", "--variants", "baseline", *TINY, cwd=tmp_path, data=data_dir)
    assert run.returncode == 0, run.stderr[-2000:]
    lr = float(tuned.split("lr = ")[1].split()[0])
    logged = store_rows(
        tmp_path,
        "select p.value from params p join tags t on p.run_uuid = t.run_uuid "
        "where p.key = 'train.lr' and t.key = 'harness.role' and t.value = 'seed' order by p.run_uuid",
    )
    assert any(abs(float(v) - lr) < 1e-12 for (v,) in logged), (lr, logged)


@pytest.mark.parametrize(
    "storage,fragment",
    [
        ("sqlite:///:memory:", "--storage: 'sqlite:///:memory:' is an in-memory database, lost when the command ends"),
        ("notes.txt", "--storage: 'notes.txt' exists and is not an Optuna journal; the harness will not append to it"),
        ("mlflow.db", "--storage: 'mlflow.db' is an SQLite database, not a journal"),
        (
            "sqlite:///mlflow.db",
            "--storage: 'mlflow.db' is an MLflow store; give the Optuna study a database of its own",
        ),
        ("sqlite:///optuna.db?timeout=5", "query options are not supported"),
        ("a-folder", "--storage: 'a-folder' is not a regular file"),
        # a team's database (docs/scaling-out.md): its server must answer and its driver be installed, checked before any work
        ("postgresql://u@127.0.0.1:9/optuna", "--storage: cannot reach the database at '127.0.0.1:9/optuna'"),
        (
            "mysql://u@127.0.0.1:9/optuna",
            "--storage: '127.0.0.1:9/optuna' needs the mysqldb driver; install it with `pip install mysqlclient`",
        ),
    ],
)
def test_tune_refuses_a_storage_it_cannot_keep_or_must_not_write(tmp_path, data_dir, storage, fragment):
    fresh_store(tmp_path)
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "a-folder").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    proc = run_cli(
        "tune", "--variant", "dropout", "--trials", "2", "--storage", storage, *TINY, cwd=tmp_path, data=data_dir
    )
    check_refusal(tmp_path, proc, fragment, {"data", "mlflow.db", "notes.txt", "a-folder"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# slow group: a real tuning process on a database storage (about 15 s)
@pytest.mark.slow
def test_tune_on_a_database_prints_no_optuna_warnings(tmp_path, data_dir):
    fresh_store(tmp_path)
    proc = run_process(
        "tune",
        "--variant",
        "dropout",
        "--trials",
        "2",
        "--storage",
        "sqlite:///optuna.db",
        *TINY,
        cwd=tmp_path,
        data=data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr


def test_a_relative_storage_follows_the_working_directory_within_one_process(tmp_path, monkeypatch):
    """The same relative storage in two working directories of one process is two storages, each in
    its own folder (harness/tuning/storage.py keeps one object per place, not per text)."""
    from harness.tuning import storage

    opened = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        opened.append(storage.open_storage("optuna/study.journal"))
    assert opened[0] is not opened[1]
    assert (tmp_path / "a" / "optuna").is_dir() and (tmp_path / "b" / "optuna").is_dir()
