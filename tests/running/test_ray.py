"""The Ray executor against a real Ray cluster on loopback (a head and a second node started with
`ray start`), logging to a real MLflow tracking server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import ROOT, free_port, run_cli, run_process, write_npz

pytestmark = pytest.mark.slow
if shutil.which("ray", path=str(Path(sys.executable).parent)) is None and not os.environ.get("HARNESS_CI"):
    pytest.skip("Ray is not installed (pip install -e .[ray]); CI installs it", allow_module_level=True)

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head that runs no task and two worker nodes of one CPU each, every node with a raylet of
    its own (its node-manager port tells them apart), and an MLflow server they all log to."""
    work = tmp_path_factory.mktemp("ray")
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--object-store-memory", "100000000", "--disable-usage-stats"]
    subprocess.run(
        [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--num-cpus", "0", *common],
        check=True,
        env=ENV,
        capture_output=True,
        timeout=180,
    )
    try:
        workers = {}
        for name in ("a", "b"):
            workers[name] = free_port()
            subprocess.run(
                [
                    RAY,
                    "start",
                    "--address",
                    f"127.0.0.1:{port}",
                    "--num-cpus",
                    "1",
                    "--node-manager-port",
                    str(workers[name]),
                    *common,
                ],
                check=True,
                env=ENV,
                capture_output=True,
                timeout=180,
            )
        ui_port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                "ui",
                "--port",
                str(ui_port),
                "--tracking-uri",
                f"sqlite:///{work / 'server.db'}",
            ],
            cwd=work,
            env={**ENV, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/health", timeout=2)
                    break
                except OSError:
                    assert time.time() < deadline, "the MLflow server did not come up"
                    time.sleep(0.5)
            yield work, f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", workers
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True, timeout=120)


def test_pairs_run_on_the_cluster_once(cluster):
    work, address, server, _ = cluster
    data = write_npz(work / "data")
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
        "--executor",
        "ray",
        "--ray-address",
        address,
        "--tracking-uri",
        server,
    ]
    first = run_process(*args, cwd=work, data=data, env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 CPU, 0 GPU" in first.stdout and "4 of 4 runs finished" in first.stdout
    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("default")
    seeds = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'variant'")
    assert len(seeds) == 4 and all(r.info.status == "FINISHED" for r in seeds)
    assert sorted(p.data.tags["harness.variant"] for p in parents) == ["baseline", "dropout"]
    assert {r.data.tags["mlflow.parentRunId"] for r in seeds} == {p.info.run_id for p in parents}
    assert all(p.data.metrics["n_seeds"] == 2 for p in parents)

    again = run_process(*args, cwd=work, data=data, env={"RAY_USAGE_STATS_ENABLED": "0"})  # the same keys as local runs
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")) == 4
    assert again.stdout.count("TRAIN EPOCH") + again.stderr.count("TRAIN EPOCH") == 0


def test_bad_ray_requests(tmp_path):
    proc = run_cli("run", "--executor", "ray", cwd=tmp_path)
    assert proc.returncode == 2 and "--ray-address: required" in proc.stderr
    proc = run_cli("run", "--executor", "dask", cwd=tmp_path)
    assert proc.returncode == 2 and "--executor: 'dask' is not allowed" in proc.stderr


def _raylet(node_manager_port: int) -> int:
    """The pid of the raylet listening on `node_manager_port` (one node of the cluster)."""
    out = subprocess.run(
        ["pgrep", "-f", f"raylet.*--node_manager_port={node_manager_port}"], capture_output=True, text=True
    ).stdout.split()
    assert out, f"no raylet with node manager port {node_manager_port}"
    return int(out[0])


def test_a_node_lost_mid_run_has_its_pair_retried_on_another_and_nothing_left_running(cluster):
    """Kills worker node b's raylet (and with it the task training there) while both nodes train;
    Ray retries that task on node a, which resumes the pair from its checkpoint (the loopback nodes
    share /tmp). Runs last in this file: the cluster has one worker node afterwards."""
    work, address, server, workers = cluster
    data = write_npz(work / "data-loss")
    (work / "loss").mkdir()
    env = {
        **{k: v for k, v in ENV.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(ROOT),
        "HARNESS_DATA_DIR": str(data),
    }
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--set",
        "name=loss",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "1",
        "--epochs",
        "40",
        "--set",
        "train.batch_size=64",
        "--executor",
        "ray",
        "--ray-address",
        address,
        "--tracking-uri",
        server,
    ]
    proc = subprocess.Popen(
        cmd, cwd=work / "loss", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    client = MlflowClient(tracking_uri=server)

    def both_training() -> bool:
        exp = client.get_experiment_by_name("loss")
        if exp is None:
            return False
        runs = client.search_runs(
            [exp.experiment_id], filter_string="tags.`harness.role` = 'seed' and attributes.status = 'RUNNING'"
        )
        return len(runs) == 2 and all(client.get_metric_history(r.info.run_id, "val_acc") for r in runs)

    deadline = time.time() + 240
    while not both_training():
        assert proc.poll() is None and time.time() < deadline, (proc.stdout.read() if proc.poll() is not None else "")[
            -3000:
        ]
        time.sleep(0.5)
    os.kill(_raylet(workers["b"]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    assert "2 of 2 runs finished" in out, out[-3000:]
    # the retry on node a, from b's checkpoint
    assert re.search(r"resume \w+ seed 2021 after epoch \d+ in run", out), out[-4000:]
    exp = client.get_experiment_by_name("loss")
    seeds = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")
    assert sorted(r.info.status for r in seeds) == ["FINISHED", "FINISHED"]  # one finished run per key, nothing RUNNING
    assert len({r.data.tags["harness.run_key"] for r in seeds}) == 2
    for r in seeds:  # the retried pair resumed: every epoch is logged once
        assert sorted(m.step for m in client.get_metric_history(r.info.run_id, "val_acc")) == list(range(1, 41))
