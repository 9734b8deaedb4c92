"""A child process outlives no parent (harness/base/parent.py): a child whose SIGTERM does nothing
prints its threads' stacks and kills itself once its parent is gone, and SIGKILL to the parent of
`run --jobs-per-device` stops both training children, keeps their checkpoints and leaves their runs
KILLED (RUNNING only where a child had to kill itself)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, fresh_store, store_rows


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_child_that_cannot_stop_after_its_parent_died_kills_itself(tmp_path):
    """parent.watch's last resort: a child whose SIGTERM does nothing (here: ignored) prints its
    threads' stacks and SIGKILLs itself `grace` seconds after its parent is gone."""
    child = (
        "import os, signal, time\n"
        "from harness.base import parent\n"
        "os.environ[parent.ENV] = str(os.getppid())\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "parent.watch(every=0.1, grace=1.0)\n"
        "open('started', 'w').close()\n"
        "time.sleep(120)\n"
    )
    boss = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(120)",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=(tmp_path / "stderr.txt").open("w"),
    )
    deadline = time.time() + 60
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.1)
    (kid,) = _children(boss.pid)
    boss.kill()
    boss.wait()
    deadline = time.time() + 30
    while _alive(kid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(kid), "the child outlived its parent"
    assert "most recent call first" in (tmp_path / "stderr.txt").read_text()


@pytest.mark.slow
def test_sigkill_to_the_parent_of_jobs_per_device_stops_its_children(tmp_path, data_dir):
    fresh_store(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # the children's too: a child that had to kill itself prints its threads' stacks there
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        parent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                "run",
                "--variants",
                "baseline,dropout",
                "--seeds",
                "2",
                "--epochs",
                "40",
                "--jobs-per-device",
                "2",
                "--set",
                "train.batch_size=16",
            ],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT), "HARNESS_DATA_DIR": str(data_dir)},
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    folder = tmp_path / "checkpoints" / "default"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(folder.glob("*.pt"))) < 2:
        time.sleep(0.2)
    children = _children(parent.pid)
    assert len(children) == 2 and len(list(folder.glob("*.pt"))) == 2, "both children should be training"
    parent.kill()
    parent.wait()
    deadline = time.time() + 60
    while any(_alive(c) for c in children) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(c) for c in children), (
        "the children went on after their parent was killed: " + stderr.read_text()[-3000:]
    )
    assert len(list(folder.glob("*.pt"))) == 2  # their checkpoints are kept for the next run to resume
    states = sorted(
        s
        for (s,) in store_rows(
            tmp_path,
            "select r.status from runs r join tags t on r.run_uuid = t.run_uuid "
            "where t.key = 'harness.role' and t.value = 'seed'",
        )
    )
    # only a child that did not stop within parent.GRACE_S and killed itself leaves its run RUNNING
    if states != [
        "KILLED",
        "KILLED",
    ]:
        assert set(states) <= {"KILLED", "RUNNING"} and "most recent call first" in stderr.read_text(), (
            states,
            stderr.read_text()[-3000:],
        )
