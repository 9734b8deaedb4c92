"""A team's shared services on a real PostgreSQL server (tests/services.py starts one): an MLflow
tracking server on it, with artifacts in a shared folder, and an Optuna study that two `tune`
commands work on at once while one of their workers is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import optuna
import pytest
from mlflow import MlflowClient

from harness.tuning import storage as storage_mod
from tests.helpers import ROOT, run_cli, run_process, write_npz
from tests.services import free_port, postgres_server, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as connect:
        yield connect


def _env(data) -> dict:
    return {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(ROOT),
        "HARNESS_DATA_DIR": str(data),
    }


def _trial_run_exists(work, number: int) -> bool:
    if not (work / "mlflow.db").exists():
        return False
    try:
        client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
        exp = client.get_experiment_by_name("default")
        return exp is not None and bool(
            client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`harness.role` = 'trial' and tags.`harness.trial` = '{number}'",
            )
        )
    except Exception:  # noqa: BLE001 - the store is being created by the tune commands: not yet
        return False


def test_two_tunes_on_one_postgresql_study_end_at_its_exact_total_after_a_worker_is_killed(postgres, tmp_path):
    url = postgres("optuna")
    data = write_npz(tmp_path / "data")
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "tune",
        "--variant",
        "dropout",
        "--trials",
        "6",
        "--epochs",
        "12",
        "--pruner",
        "none",
        "--workers",
        "2",
        "--storage",
        url,
        "--set",
        "train.batch_size=64",
        "--set",
        "train.threads=1",
    ]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=_env(data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]

    def running_trial():
        try:
            study = optuna.load_study(study_name="default-dropout", storage=storage_mod.open_storage(url))
        except KeyError:  # not created yet
            return None
        live = [
            t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if "harness.worker" in t.user_attrs
        ]
        # its MLflow run created too: a worker killed between marking its trial and creating the run leaves no run to fail
        return next((t for t in live if _trial_run_exists(tmp_path, t.number)), None)

    victim = wait_for(running_trial, "a trial running in a worker", seconds=180, every=0.2)
    # mid-trial, no chance to say goodbye
    os.kill(int(victim.user_attrs["harness.worker"].split(":")[1]), signal.SIGKILL)
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outs]
    assert any("stopped early" in o for o in outs), outs[0][-1500:] + outs[1][-1500:]

    study = optuna.load_study(study_name="default-dropout", storage=storage_mod.open_storage(url))
    states = sorted(t.state.name for t in study.trials)
    assert len(study.trials) == 6, states  # the study's total, exactly, under two commands and a dead worker
    assert states == ["COMPLETE"] * 5 + ["FAIL"] and study.trials[victim.number].state == optuna.trial.TrialState.FAIL
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    trial_runs = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'trial'")
    assert sorted(r.info.status for r in trial_runs) == ["FAILED"] + ["FINISHED"] * 5  # nothing left RUNNING


def test_an_mlflow_server_on_postgresql_gives_the_report_a_sqlite_store_gives(postgres, tmp_path):
    url = postgres("mlflow")
    shared = tmp_path / "shared-artifacts"
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            url,
            "--artifacts-destination",
            str(shared),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def healthy() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(healthy, "the MLflow server on PostgreSQL", seconds=180)
        data = write_npz(tmp_path / "data")
        args = [
            "run",
            "--variants",
            "baseline,dropout",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--set",
            "train.batch_size=64",
        ]
        for where, uri in (("team", f"http://127.0.0.1:{port}"), ("alone", "")):
            (tmp_path / where).mkdir()
            proc = run_cli(*args, *(["--tracking-uri", uri] if uri else []), cwd=tmp_path / where, data=data)
            assert proc.returncode == 0, proc.stderr[-3000:]
        for table in ("comparison", "statistics"):
            team = run_cli(
                "export",
                "--experiment",
                "default",
                "--format",
                "csv",
                "--table",
                table,
                "--tracking-uri",
                f"http://127.0.0.1:{port}",
                cwd=tmp_path / "team",
            )
            alone = run_cli(
                "export", "--experiment", "default", "--format", "csv", "--table", table, cwd=tmp_path / "alone"
            )
            assert team.returncode == 0 and team.stdout == alone.stdout and "dropout" in team.stdout, team.stderr[
                -2000:
            ]
        report = run_cli(
            "report", "--experiment", "default", "--tracking-uri", f"http://127.0.0.1:{port}", cwd=tmp_path / "team"
        )
        assert report.returncode == 0, report.stderr[-2000:]
        assert (tmp_path / "team" / "reports" / "default" / "report.md").read_text().count("| dropout") >= 1
        assert list(shared.rglob("MLmodel")), "the runs' models are in the shared artifact folder"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_password_in_the_addresses_is_nowhere_in_the_console_the_store_the_artifacts_or_the_reports(
    postgres, tmp_path
):
    secret = "Hunter2Secret"
    store = postgres("secretstore").replace("harness@", f"harness:{secret}@")  # trust auth: any password connects
    storage = postgres("secretoptuna").replace("harness@", f"harness:{secret}@")
    data = write_npz(tmp_path / "data")
    flags = ["--epochs", "1", "--set", "train.batch_size=64", "--tracking-uri", store]
    ran = run_process("run", "--variants", "baseline,dropout", "--seeds", "2", *flags, cwd=tmp_path, data=data)
    tuned = run_process(
        "tune", "--variant", "dropout", "--trials", "1", "--storage", storage, *flags, cwd=tmp_path, data=data
    )
    refused = run_process("run", "--tracking-uri", f"http://harness:{secret}@127.0.0.1:{free_port()}", cwd=tmp_path)
    assert ran.returncode == 0 and tuned.returncode == 0, (ran.stderr + tuned.stderr)[-3000:]
    assert refused.returncode == 2 and "harness:***@127.0.0.1" in refused.stderr
    shown = ran.stdout + ran.stderr + tuned.stdout + tuned.stderr + refused.stderr
    assert secret not in shown and "postgresql://harness:***@127.0.0.1" in ran.stdout

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("default")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) >= 7 and secret not in repr(experiment.tags)  # 2 parents, 4 seeds, a tuning parent and its trial
    stored = [repr(r.data.params) + repr(r.data.tags) for r in runs]
    assert not [text for text in stored if secret in text]
    assert any("harness:***@" in text for text in stored)  # the command is kept, masked
    folder = tmp_path / "downloaded"
    for r in runs:
        client.download_artifacts(r.info.run_id, "", str(folder / r.info.run_id))
    written = [p for p in [*folder.rglob("*"), *(tmp_path / "reports").rglob("*")] if p.is_file()]
    assert any(p.name == "config.toml" for p in written) and any(p.name == "report.html" for p in written)
    assert [str(p) for p in written if secret.encode() in p.read_bytes()] == []
