"""The MLflow store as a project holds it (harness/tracking, through the CLI): a copied project
writes its artifacts beside its own store; `report`, `plan` and `promote` apply the name rule; a
promoted version keeps its run across `run --rerun` and `mlflow gc`, and promoting the same run
again is refused; foreign runs and edited tags are named and skipped; an address that answers 404
is named; and no command connects to MLflow's telemetry unless the user turns it on."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from tests.helpers import ROOT, TINY, check_refusal, copy_of, fresh_store, run_cli, seed_runs, store_rows


def test_a_copied_project_writes_its_artifacts_beside_its_own_store(trained, tmp_path):
    original = copy_of(trained, tmp_path, "proj")
    copy = copy_of(trained, tmp_path, "proj2")
    # `cp -a` took them; a copy of the store alone must not read the original's either
    shutil.rmtree(copy / "mlartifacts")
    subprocess.run(["cp", "-a", str(original / "mlartifacts"), str(copy / "mlartifacts")], check=True)
    proc = run_cli("run", "--variants", "baseline", "--seeds", "7,", *TINY, cwd=copy, data=trained[0])
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(original)  # delete the original: the copy keeps every artifact
    uris = [u for (u,) in store_rows(copy, "select artifact_uri from runs")]
    assert uris and all(u.startswith((copy / "mlartifacts").as_uri()) for u in uris), uris
    new_run = store_rows(
        copy,
        "select r.run_uuid from runs r join tags t on r.run_uuid = t.run_uuid "
        "where t.key = 'harness.seed' and t.value = '7'",
    )[0][0]
    assert list((copy / "mlartifacts").rglob(f"{new_run}/artifacts/confusion_matrix.csv"))
    report = run_cli("report", "--experiment", "default", cwd=copy)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "per-class" in (copy / "reports" / "default" / "report.md").read_text().lower()


@pytest.mark.slow
def test_rerun_keeps_the_run_a_promoted_version_points_at(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    promoted = run_cli("promote", "--experiment", "default", "--variant", "baseline", "--name", "lenet", cwd=work)
    assert promoted.returncode == 0, promoted.stderr[-2000:]
    run_id = promoted.stdout.split(": run ")[1].split()[0]
    seed = promoted.stdout.split("baseline seed ")[1].split(",")[0].rstrip(")")
    # the same run again: refused, and --again named
    again = run_cli("promote", "--experiment", "default", "--variant", "baseline", "--name", "lenet", cwd=work)
    assert again.returncode == 2 and "is already lenet version 1" in again.stderr and "--again" in again.stderr, (
        again.stderr
    )
    rerun = run_cli("run", "--variants", "baseline", "--seeds", f"{seed},", "--rerun", *TINY, cwd=work, data=trained[0])
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"kept run {run_id} (baseline seed {seed}): lenet version 1 points at it" in rerun.stdout
    gc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "gc",
            "--backend-store-uri",
            "sqlite:///mlflow.db",
            "--tracking-uri",
            "sqlite:///mlflow.db",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gc.returncode == 0, gc.stderr[-2000:]
    load = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
            "print(type(mlflow.pytorch.load_model('models:/lenet/1')).__name__)",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert load.returncode == 0 and load.stdout.strip(), load.stderr[-2000:]
    runs = run_cli("report", "--experiment", "default", cwd=work)
    assert runs.returncode == 0, runs.stderr
    seeds = store_rows(
        work,
        "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid join tags v on r.run_uuid = v.run_uuid "
        "where t.key = 'harness.role' and t.value = 'seed' and v.key = 'harness.variant' and v.value = 'baseline' "
        "and r.lifecycle_stage = 'active'",
    )
    assert seeds == [(2,)]  # one counted run per seed; the kept one is set aside


@pytest.mark.parametrize(
    "args", [["report"], ["plan", "--sd", "1"], ["promote", "--variant", "baseline", "--name", "m"]]
)
def test_report_plan_and_promote_apply_the_name_rule(tmp_path, args):
    from mlflow import MlflowClient

    work = tmp_path / "w"
    fresh_store(work)
    MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}").create_experiment("..")
    (tmp_path / "report.md").write_text("mine\n")
    proc = run_cli(args[0], "--experiment", "..", *args[1:], cwd=work)
    check_refusal(work, proc, "--experiment: '..' is not allowed; expected 1 to 100 letters", {"mlflow.db"})
    assert (tmp_path / "report.md").read_text() == "mine\n"


class _Proxy:
    """A local HTTP(S) proxy that answers nothing and records each request line it is sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(4096).decode(errors="replace").split("\r\n")[0])
                except OSError:
                    self.seen.append("(connected)")


@pytest.mark.slow
def test_no_command_reaches_mlflows_telemetry_unless_the_user_turns_it_on(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    proxy = _Proxy()
    ci = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in ci and k != "MLFLOW_TRACKING_URI"}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "HTTPS_PROXY": proxy.address,
            "HTTP_PROXY": proxy.address,
            "https_proxy": proxy.address,
            "NO_PROXY": "127.0.0.1,localhost",
            "HARNESS_DATA_DIR": str(trained[0]),
        }
    )

    def cli(*args, extra=None):
        return subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=work,
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )

    control = cli(
        "promote",
        "--experiment",
        "default",
        "--variant",
        "dropout",
        "--name",
        "m",
        extra={"MLFLOW_DISABLE_TELEMETRY": "false"},
    )
    assert control.returncode == 0, control.stderr[-2000:]
    assert any("mlflow-telemetry" in line for line in proxy.seen), proxy.seen  # the listener sees what telemetry sends
    proxy.seen.clear()
    for args in (
        ["run", "--variants", "baseline", "--seeds", "9,", *TINY],
        ["promote", "--experiment", "default", "--variant", "baseline", "--name", "m"],
    ):
        proc = cli(*args)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert proxy.seen == [], proxy.seen


@pytest.mark.slow
def test_foreign_runs_and_edited_tags_are_named_and_skipped(trained, tmp_path):
    from mlflow import MlflowClient

    work = copy_of(trained, tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    parent = client.search_runs(
        [exp.experiment_id], "tags.`harness.role` = 'variant' and tags.`harness.variant` = 'baseline'"
    )[0]
    mine = client.create_run(exp.experiment_id, run_name="my-notes", tags={"mlflow.parentRunId": parent.info.run_id})
    client.set_terminated(mine.info.run_id)
    client.set_experiment_tag(exp.experiment_id, "harness.design", "{edited by hand")
    client.set_experiment_tag(exp.experiment_id, "harness.analysis", '{"margin": "wide"}')
    for args in (
        ["report", "--experiment", "default"],
        ["plan", "--experiment", "default", "--sd", "1"],
        ["promote", "--experiment", "default", "--variant", "dropout", "--name", "m"],
    ):
        proc = run_cli(*args, cwd=work)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        if args[0] != "plan":
            assert f"warning: run {mine.info.run_id} under baseline's parent run" in proc.stderr, proc.stderr
            assert (
                "warning: experiment tag harness.design = '{edited by hand' is not what the harness writes"
                in proc.stderr
            )
        assert (
            "warning: experiment tag harness.analysis" in proc.stderr
            and "the default [analysis] settings are used" in proc.stderr
        )
    run = run_cli("run", "--variants", "baseline,dropout", "--seeds", "2", *TINY, cwd=work, data=trained[0])
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]


class _NotFound(threading.Thread):
    """An HTTP server that answers 404 to everything (a wrong host or path)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the standard library's name
                self.send_error(404)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        super().__init__(target=self.server.serve_forever, daemon=True)
        self.start()


def test_a_tracking_uri_that_answers_404_is_named(tmp_path, data_dir):
    server = _NotFound()
    uri = f"http://127.0.0.1:{server.server.server_address[1]}"
    try:
        check_refusal(
            tmp_path,
            run_cli("run", "--tracking-uri", uri, cwd=tmp_path, data=data_dir),
            "answers HTTP 404 for /health and for MLflow's REST API",
            {"data"},
        )
    finally:
        server.server.shutdown()


def test_a_relative_store_address_follows_the_working_directory_within_one_process(tmp_path, data_dir):
    """MLflow keeps one store object per address for the life of a process: the default
    `sqlite:///mlflow.db` must still mean the store of the folder each command runs in (a notebook
    that moves between projects; harness/tracking/addresses.py `absolute`), also in a folder whose
    name a URI would misread (`?` starts a query, `%41` is decoded)."""
    for name in ("a", "b", "c?d%41"):
        work = tmp_path / name
        fresh_store(work)
        proc = run_cli("run", "--variants", "baseline", "--seeds", "1", *TINY, cwd=work, data=data_dir)
        assert proc.returncode == 0 and "skip " not in proc.stdout, proc.stderr[-2000:]
        assert len(seed_runs(work)) == 1, name
