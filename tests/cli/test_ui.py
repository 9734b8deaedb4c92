"""The MLflow UI in a real browser (`python -m harness ui`, harness/cli/ui.py): it serves a store
made by a small real run from few processes and prints its address once the server answers;
headless Chromium renders the experiment (opened on its runs, not on MLflow 3's traces overview)
and each variant's parent run, with the store's across-seed aggregates, the paired difference and
verdict the report gives, the datasets each run used, and each seed run's Logged Model. SIGTERM to
`ui` stops its server and workers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.chromium import CHROMIUM, chromium
from tests.helpers import ROOT, free_port, fresh_store, run_process, write_npz

# About 90 s with its store and the UI server: in the slow group, so the default suite stays near 12 min on CI.
pytestmark = pytest.mark.slow

if not CHROMIUM and not os.environ.get("CI"):
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium); CI installs it", allow_module_level=True
    )


def page_text(url: str) -> list[str]:
    """The rendered page's visible text, one item per element."""
    dom = chromium("--dump-dom", url)
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    return [t.strip() for t in re.split(r"<[^>]+>", dom) if t.strip()]


@pytest.fixture(scope="module")
def served(tmp_path_factory):

    work = tmp_path_factory.mktemp("ui")
    fresh_store(work)
    proc = run_process(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--set",
        "train.batch_size=64",
        cwd=work,
        data=write_npz(work / "data"),
    )
    assert proc.returncode == 0, proc.stderr
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True).start()
    try:
        deadline = time.time() + 180
        while not any(line.startswith("MLflow UI for ") and "workflowType=machine_learning" in line for line in lines):
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError(f"the MLflow UI did not come up: {lines}")
            time.sleep(0.2)
        # the address is printed once the server answers, from few processes
        assert urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK"
        group = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(group) <= 4, group  # harness ui, mlflow server, uvicorn and its one worker
        yield work, base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_parent_runs_and_aggregates_are_visible(served):
    work, base = served
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    listing = page_text(f"{base}/#/experiments/{exp.experiment_id}/runs")
    assert "baseline" in listing and "dropout" in listing
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'variant'")
    assert len(parents) == 2
    for parent in parents:
        text = page_text(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}")
        assert parent.info.run_name in text
        for key in (
            "n_seeds",
            "test_acc_mean",
            "test_acc_std",
            "test_acc_ci_low",
            "test_acc_ci_high",
            "best_val_acc_mean",
        ):
            assert key in text, f"{key} not on the page of {parent.info.run_name}"
            shown = float(text[text.index(key) + 1])
            assert shown == pytest.approx(parent.data.metrics[key], rel=1e-9)
        for seed in (2021, 2022):
            assert f"{parent.info.run_name}-seed{seed}" in text  # its child runs


def test_a_parents_paired_difference_and_verdict_match_the_report(served):
    work, base = served
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    (parent,) = client.search_runs(
        [exp.experiment_id], filter_string="tags.`harness.variant` = 'dropout' and tags.`harness.role` = 'variant'"
    )
    report = (work / "reports" / "default" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| dropout | 2 | "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    text = page_text(f"{base}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}")
    shown = {
        key: float(text[text.index(key) + 1])
        for key in ("paired_delta_test_acc", "paired_delta_ci_low", "paired_delta_ci_high", "paired_n")
    }
    assert f"{shown['paired_delta_test_acc']:+.2f}" == cells[2] and shown["paired_n"] == 2
    assert f"[{shown['paired_delta_ci_low']:.2f}, {shown['paired_delta_ci_high']:.2f}]" == cells[3]
    assert text[text.index("harness.verdict") + 1] == f": {cells[-1].strip('*')}"  # the tag, as the page lists it


def test_screenshot(served, tmp_path):
    work, base = served
    exp = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}").get_experiment_by_name("default")
    shot = tmp_path / "mlflow-ui.png"
    chromium("--window-size=1400,800", f"--screenshot={shot}", f"{base}/#/experiments/{exp.experiment_id}/runs")
    assert shot.exists() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


def test_the_datasets_column_shows_every_variant_on_the_same_split(served):
    """Each parent run lists the training, validation and test data it used; the digests are the
    split's fingerprint and the test set's hash, the same for both variants."""
    work, base = served
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'variant'")
    split = {p.data.tags["harness.split_fingerprint"] for p in parents}
    assert len(parents) == 2 and len(split) == 1
    (test,) = {d.dataset.digest for p in parents for d in p.inputs.dataset_inputs if d.dataset.name == "cifar10-test"}
    listing = page_text(f"{base}/#/experiments/{exp.experiment_id}/runs")
    assert "Dataset" in listing
    for name, digest, context in (
        ("cifar10-train", *split, "training"),
        ("cifar10-val", *split, "validation"),
        ("cifar10-test", test, "test"),
    ):
        shown = [i for i, t in enumerate(listing) if t == f"{name} ({digest})"]
        assert len(shown) == 2 and all(listing[i + 1] == context for i in shown), (name, listing)


def test_the_experiment_opens_on_its_runs_not_mlflow_3s_traces_overview(served):
    """MLflow 3's UI opens an experiment on the GenAI traces overview ("No data available"); with the
    model-training workflow that the address `harness ui` prints asks for, it opens on the runs."""
    work, base = served
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    landing = page_text(f"{base}/#/experiments/{exp.experiment_id}?workflowType=machine_learning")
    assert "baseline" in landing and "dropout" in landing, " | ".join(landing)[:3000]


def test_each_seed_runs_model_is_a_logged_model_listed_under_the_experiments_models(served):
    """The selected epoch's network is an MLflow 3 Logged Model linked to its run (no `model/` run
    artifact beside `model.pt`: the weights are stored once), and the experiment's Models view lists
    one per seed run."""
    work, base = served
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    seeds = client.search_runs([exp.experiment_id], "tags.`harness.role` = 'seed'")
    ids = [r.outputs.model_outputs[0].model_id for r in seeds]
    assert len(set(ids)) == len(seeds) == 4
    assert all("model" not in {a.path for a in client.list_artifacts(r.info.run_id)} for r in seeds)
    page = " | ".join(page_text(f"{base}/#/experiments/{exp.experiment_id}/models?workflowType=machine_learning"))
    assert all(i in page for i in ids) or sum(page.count(r.info.run_name) for r in seeds) >= 4, page[:3000]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_to_ui_stops_its_server_and_workers(tmp_path):
    fresh_store(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    ui = subprocess.Popen(
        [sys.executable, "-m", "harness", "ui", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not _answers(port) and time.time() < deadline and ui.poll() is None:
        time.sleep(0.2)
    assert _answers(port), "the UI never answered"
    ui.send_signal(signal.SIGTERM)
    assert ui.wait(timeout=60) == 143
    deadline = time.time() + 20
    while _answers(port) and time.time() < deadline:
        time.sleep(0.2)
    assert not _answers(port), "the MLflow server is still serving the store after `ui` stopped"
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).count(str(port))]
    assert not leftovers, [_cmdline(p) for p in leftovers]


def _cmdline(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
