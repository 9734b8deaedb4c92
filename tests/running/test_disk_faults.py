"""Full disks and failed writes (harness/base/files.py's atomic writes, harness/training/checkpoint.py,
the store's errors in harness/tracking). A failed write (the file-size limit of a real process, which
the OS enforces like a full disk, or a real tmpfs) leaves the previous checkpoint or report intact
and names the path; a store that fills mid-experiment keeps, summarises and reports what finished,
in one line and exit 1; `report` to a full disk or onto an immutable file and `promote` on a full or
unwritable store are one line; a `checkpoints/` folder deleted while a run trains is made again; and
a killed writer's temporary file is removed by the next write."""

from __future__ import annotations

import os
import re
import resource
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, copy_of, delete_while_written, fresh_store, run_cli, run_process, write_npz


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
    """Deleting `checkpoints/` (checkpoints and claims) while a run trains does not stop it: the
    next checkpoint and the claims database are recreated and the run finishes."""
    import os

    from tests.helpers import fresh_store, write_npz

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
    """The store's disk fills mid-experiment (here: a file-size limit on the process): what finished
    is kept, summarised and reported; one line names the store; exit 1."""
    import os

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

    finished = int(re.search(r"^(\d) of 6 runs finished", proc.stdout, re.M).group(1))
    assert finished >= 1 and f"the {finished} finished run(s) are in the store and in the report" in errors[0]
    report = (tmp_path / "reports" / "default" / "report.md").read_text()
    setup = next(line for line in report.splitlines() if "runs finished" in line)  # the sentence under the answer
    assert f"; {finished} of " in setup  # of the runs in the store


@pytest.fixture
def tmpfs(tmp_path):
    """A real tmpfs of 60 KB, mounted for the test (root only; skipped where mounting is not allowed)."""
    made = []

    def mount(size: str = "60k") -> Path:
        point = tmp_path / f"tmpfs{len(made)}"
        point.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True
        ).returncode:
            pytest.skip("cannot mount a tmpfs here")
        made.append(point)
        return point

    yield mount
    for point in made:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_report_on_a_full_disk_or_an_immutable_report_is_one_line(trained, tmp_path, tmpfs):
    work = copy_of(trained, tmp_path)
    full = tmpfs("60k")
    proc = run_cli("report", "--experiment", "default", "--reports-dir", str(full), cwd=work)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: report: could not write") and "No space left on device" in proc.stderr, (
        proc.stderr
    )
    assert not list(full.rglob("report.md")) and not list(full.rglob(".*.tmp"))  # nothing half-written
    report = work / "reports" / "default" / "report.md"
    before = report.read_bytes()
    if subprocess.run(["chattr", "+i", str(report)], capture_output=True).returncode:
        pytest.skip("this file system has no immutable flag")
    try:
        proc = run_cli("report", "--experiment", "default", cwd=work)
    finally:
        subprocess.run(["chattr", "-i", str(report)], capture_output=True)
    assert (
        proc.returncode == 2 and "Traceback" not in proc.stderr and "error: report: could not write" in proc.stderr
    ), proc.stderr
    assert report.read_bytes() == before


def test_promote_with_its_store_on_a_full_disk_is_one_line(trained, tmp_path, tmpfs):
    size = sum(p.stat().st_size for p in trained[1].rglob("*") if p.is_file())
    disk = tmpfs(f"{size // 1024 + 4096}k")
    work = disk / "proj"
    subprocess.run(["cp", "-a", str(trained[1]), str(work)], check=True)
    with open(disk / "filler", "wb", buffering=0) as f:  # fill what is left
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    proc = run_process("promote", "--experiment", "default", "--variant", "baseline", "--name", "m", cwd=work)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (
        proc.stderr.strip()
        == "error: tracking_uri: cannot open 'mlflow.db': its disk is full (disk I/O error); make room, the store itself is unchanged"
    )
    (disk / "filler").unlink()  # room again: the store was not harmed
    proc = run_process("promote", "--experiment", "default", "--variant", "baseline", "--name", "m", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_store_that_takes_no_writes_ends_promote_with_one_line(trained, tmp_path):
    """The store opens but cannot take the new version (here: a file-size limit on the process,
    which the OS enforces like a full disk once the database must grow)."""
    import resource

    work = copy_of(trained, tmp_path)
    size = (work / "mlflow.db").stat().st_size

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with sqlite3.connect(work / "mlflow.db") as db:  # no free pages left inside the file: a new version must grow it
        db.execute("vacuum")
    size = (work / "mlflow.db").stat().st_size
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "promote", "--experiment", "default", "--variant", "baseline", "--name", "m"],
        cwd=work,
        env={**env, "PYTHONPATH": str(ROOT)},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: tracking_uri: the MLflow store cannot be written (")
    ), proc.stderr


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(trained, tmp_path):
    work = copy_of(trained, tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = work / "reports" / "default" / f".report.md.{dead.pid}.tmp"
    stale.write_text("half a report")
    proc = run_process("report", "--experiment", "default", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
