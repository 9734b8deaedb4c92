"""The Ray executor against a real Ray cluster on loopback (a head and a second node started with
`ray start`), logging to a real MLflow tracking server."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, harness, write_npz

pytestmark = pytest.mark.slow
if shutil.which("ray", path=str(Path(sys.executable).parent)) is None and not os.environ.get("CI"):
    pytest.skip("Ray is not installed (pip install -e .[ray]); CI installs it", allow_module_level=True)

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("ray")
    port = _port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", "100000000", "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                   check=True, env=ENV, capture_output=True, timeout=180)
    try:
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common], check=True, env=ENV, capture_output=True, timeout=180)
        ui_port = _port()
        server = subprocess.Popen([sys.executable, "-m", "harness", "ui", "--port", str(ui_port), "--tracking-uri", f"sqlite:///{work / 'server.db'}"],
                                  cwd=work, env={**ENV, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            deadline = time.time() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/health", timeout=2)
                    break
                except OSError:
                    assert time.time() < deadline, "the MLflow server did not come up"
                    time.sleep(0.5)
            yield work, f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True, timeout=120)


def test_pairs_run_on_the_cluster_once(cluster):
    work, address, server = cluster
    data = write_npz(work / "data")
    args = ["run", "--variants", "baseline,dropout", "--seeds", "2", "--epochs", "1", "--set", "train.batch_size=64",
            "--executor", "ray", "--ray-address", address, "--tracking-uri", server]
    first = harness(*args, cwd=work, data=data, env={"RAY_USAGE_STATS_ENABLED": "0"})
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

    again = harness(*args, cwd=work, data=data, env={"RAY_USAGE_STATS_ENABLED": "0"})  # the same keys as local runs
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")) == 4
    assert again.stdout.count("TRAIN EPOCH") + again.stderr.count("TRAIN EPOCH") == 0


def test_bad_ray_requests(tmp_path):
    proc = harness("run", "--executor", "ray", cwd=tmp_path)
    assert proc.returncode == 2 and "--ray-address: required" in proc.stderr
    proc = harness("run", "--executor", "dask", cwd=tmp_path)
    assert proc.returncode == 2 and "--executor: 'dask' is not allowed" in proc.stderr
