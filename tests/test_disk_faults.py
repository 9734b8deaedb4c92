"""A failed write (here: the file-size limit of a real process, which the OS enforces like a full
disk) leaves the previous checkpoint or report intact and names the path."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT


def _limited(code: str, limit_bytes: int) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "run.pt"
    proc = _limited(
        f"""
        import torch
        from pathlib import Path
        from harness.training import checkpoint
        path = Path({str(path)!r})
        checkpoint.save(path, {{"epoch": 1, "w": torch.zeros(10)}})
        try:
            checkpoint.save(path, {{"epoch": 2, "w": torch.zeros(100_000)}})
        except OSError as e:
            print("ERROR", e)
    """,
        64_000,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR could not write" in proc.stdout and str(path) in proc.stdout
    from harness.training import checkpoint

    assert checkpoint.load_snapshot(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left


def test_failed_report_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("# the previous report\n")
    proc = _limited(
        f"""
        from pathlib import Path
        from harness.base.files import atomic_write
        try:
            atomic_write(Path({str(path)!r}), "x" * 200_000)
        except OSError as e:
            print("ERROR", e)
    """,
        64_000,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR could not write" in proc.stdout and str(path) in proc.stdout
    assert path.read_text() == "# the previous report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


@pytest.mark.slow
def test_the_checkpoint_folder_deleted_mid_run_is_recreated(tmp_path):
    """Issue 14, item 13: deleting `checkpoints/` (checkpoints and claims) while a run trains does
    not stop it: the next checkpoint and the claims database are recreated and the run finishes."""
    import os
    import time

    from tests.conftest import delete_while_written, fresh_store, write_npz

    fresh_store(tmp_path)
    data = write_npz(tmp_path / "data")
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(ROOT),
        "HARNESS_DATA_DIR": str(data),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--variants",
            "baseline",
            "--seeds",
            "3,",
            "--epochs",
            "40",
            "--set",
            "train.batch_size=16",
            "--set",
            "train.threads=1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    folder = tmp_path / "checkpoints" / "default"
    deadline = time.time() + 120
    while not list(folder.glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert list(folder.glob("*.pt")), "no checkpoint appeared"
    delete_while_written(tmp_path / "checkpoints")  # the runner may write its next checkpoint meanwhile
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "1 of 1 runs finished" in out and "another runner took over" not in out + err


@pytest.mark.slow
def test_a_store_that_fills_up_stops_the_experiment_with_the_summary_and_report(tmp_path):
    """Issue 14, item 13: the store's disk fills mid-experiment (here: a file-size limit on the
    process): what finished is kept, summarised and reported; one line names the store; exit 1."""
    import os

    from tests.conftest import fresh_store, write_npz

    fresh_store(tmp_path)
    data = write_npz(tmp_path / "data")
    limit_bytes = (tmp_path / "mlflow.db").stat().st_size + 200_000

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PYTHONPATH": str(ROOT),
        "HARNESS_DATA_DIR": str(data),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--variants",
            "baseline,dropout,batchnorm",
            "--seeds",
            "2",
            "--epochs",
            "2",
            "--set",
            "train.batch_size=64",
            "--set",
            "train.threads=1",
        ],
        cwd=tmp_path,
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: tracking_uri: sqlite:///mlflow.db: the MLflow store cannot be written ("
    )
    assert (
        "not run: the MLflow store cannot be written" in proc.stdout
        and "report: reports/default/report.md" in proc.stdout
    )
    import re

    finished = int(re.search(r"^(\d) of 6 runs finished", proc.stdout, re.M).group(1))
    assert finished >= 1 and f"the {finished} finished run(s) are in the store and in the report" in errors[0]
    report = (tmp_path / "reports" / "default" / "report.md").read_text()
    setup = next(line for line in report.splitlines() if "runs finished" in line)  # the sentence under the answer
    assert f"; {finished} of " in setup  # of the runs in the store
