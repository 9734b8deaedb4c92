"""Nothing lost, nothing twice (harness/running: the runner, claims.py, resume.py; checkpoints in
harness/training/checkpoint.py; the fault points of harness/base/faults.py): real processes killed at
chosen points (SIGKILL mid-epoch and mid-checkpoint, SIGTERM, SIGINT), restarted with the same
command, and compared bit for bit with an uninterrupted run on a CPU with one thread. What is killed
runs in a real process; the restarts and the uninterrupted runs, where no process is under test,
run in this one (tests/helpers.run_cli). Also: finished
runs are skipped and `--rerun` replaces them (and resumes its own killed replacement), a changed
setting is a new key, two `run` commands on one store train each key once, a long checkpoint
interval loses at most that interval, a fault point passed too few times says it never fired, a
working directory deleted mid-run is one line, an older checkpoint put back logs each epoch once,
and SIGTERM leaves no parent run RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import faultkit
from tests.helpers import (
    ROOT,
    delete_while_written,
    fresh_store,
    run_cli,
    run_process,
    start_process,
    store_rows,
    write_npz,
)

pytestmark = pytest.mark.slow

# The ones whose training draws on randomness, and one whose checkpoint also holds a transform's
# generator, a schedule and SGD's momentum.
VARIANTS = ["baseline", "dropout", "batchnorm", "augment+cosine+sgd"]
# 400 training images, batch 32: 13 steps an epoch; `step` counts each training step plus the
# end of each phase, 15 a epoch. Four epochs.
FAULTS = [
    ("step:5:KILL", -9),  # SIGKILL mid-epoch 1, before any checkpoint
    ("step:40:KILL", -9),  # SIGKILL mid-epoch 3
    ("checkpoint:1:KILL", -9),  # SIGKILL half-way through writing the first checkpoint
    ("checkpoint:3:KILL", -9),  # ... the third
    ("checkpointed:2:KILL", -9),  # SIGKILL after checkpoint 2 is durable, before epoch 2 is logged
    ("logged:4:KILL", -9),  # SIGKILL after the last epoch is logged, before the test set
    ("step:25:TERM", 143),  # SIGTERM mid-epoch 2
    ("step:33:INT", 130),  # SIGINT (Ctrl-C) mid-epoch 3
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """One uninterrupted run per variant."""
    out = {}
    for variant in VARIANTS:
        work = tmp_path_factory.mktemp(f"ref-{variant}")
        proc = faultkit.run(work, data, variant, runner=run_cli)
        assert proc.returncode == 0, proc.stderr
        out[variant] = faultkit.result(work)
    return out


# Every fault point on the variant whose checkpoint holds the most (a transform's generator, a
# schedule, SGD's momentum); on baseline and dropout (whose checkpoint adds the dropout generator)
# the two points that test what a checkpoint holds: a kill mid-epoch, resumed from the checkpoint
# before it, and a kill half-way through writing a checkpoint. The fault points do not depend on
# the variant (the engine's loop is the same), and batch norm's running statistics are in the
# model's state like its weights, so the full cross (32 cases) would only repeat these.
CASES = [("augment+cosine+sgd", *f) for f in FAULTS] + [(v, *f) for v in VARIANTS[:2] for f in (FAULTS[1], FAULTS[3])]


@pytest.mark.parametrize("variant,fault,code", CASES)
def test_killed_and_restarted_equals_uninterrupted(tmp_path, data, reference, variant, fault, code):
    killed = faultkit.run(tmp_path, data, variant, fault=fault)
    assert killed.returncode == code, killed.stderr[-2000:]
    runs = faultkit.seed_runs(tmp_path)
    assert len(runs) == 1
    expected_state = "RUNNING" if code == -9 else "KILLED"  # SIGKILL leaves it to the next start
    assert runs[0].info.status == expected_state
    if code != -9:
        assert "Traceback" not in killed.stderr and "rerun the same command" in killed.stderr

    again = faultkit.run(tmp_path, data, variant, runner=run_cli)
    assert again.returncode == 0, again.stderr[-2000:]
    if code == -9:
        assert "its process had died" in again.stdout
    assert "resume" in again.stdout
    result = faultkit.result(tmp_path)
    assert result["run_id"] == runs[0].info.run_id  # the same MLflow run continued
    assert faultkit.same(result, reference[variant])
    assert not list((tmp_path / "checkpoints" / "default").glob("*.pt"))  # removed once finished


def test_killed_twice_then_finished(tmp_path, data, reference):
    assert faultkit.run(tmp_path, data, "dropout", fault="step:18:KILL").returncode == -9
    assert faultkit.run(tmp_path, data, "dropout", fault="checkpoint:2:KILL").returncode == -9
    assert faultkit.run(tmp_path, data, "dropout", runner=run_cli).returncode == 0
    assert faultkit.same(faultkit.result(tmp_path), reference["dropout"])


def test_finished_runs_are_skipped_and_rerun_replaces_them(tmp_path, data, reference):
    assert faultkit.run(tmp_path, data, "baseline", runner=run_cli).returncode == 0
    first = faultkit.result(tmp_path)["run_id"]
    again = faultkit.run(tmp_path, data, "baseline", runner=run_cli)
    assert again.returncode == 0 and "skip baseline seed 11: already finished" in again.stdout
    assert "TRAIN EPOCH" not in again.stdout
    forced = faultkit.run(tmp_path, data, "baseline", "--rerun", runner=run_cli)
    assert forced.returncode == 0 and "TRAIN EPOCH[004/004]" in forced.stdout
    result = faultkit.result(tmp_path)  # exactly one finished, live run for the key
    assert result["run_id"] != first and faultkit.same(result, reference["baseline"])


def test_a_changed_setting_is_a_new_key(tmp_path, data):
    assert faultkit.run(tmp_path, data, "baseline", epochs=2, runner=run_cli).returncode == 0
    other = faultkit.run(tmp_path, data, "baseline", epochs=3, runner=run_cli)
    assert "skip" not in other.stdout and "TRAIN EPOCH[003/003]" in other.stdout


def _start(work, data):
    args = ["run", "--variants", "baseline,dropout", "--seeds", "1,2", "--epochs", "1", "--set", "train.batch_size=64"]
    return start_process(*args, cwd=work, data=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("repeat", range(4))
def test_two_runners_train_each_key_once(tmp_path, data, repeat):
    """Two `run` commands on one experiment and store, started together (every other time the
    first one of them even creates the store): four keys, each trained by exactly one of them. The
    race is tried 4 times; the claims themselves, holders and leases, are tested on a real SQLite
    file in tests/running/test_claims.py."""
    if repeat % 2:
        fresh_store(tmp_path)
    procs = [_start(tmp_path, data) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "4 of 4 runs finished" in out
    trained = sum(out.count("TRAIN EPOCH[001/001]") for out, _ in outs)
    skipped = sum(out.count("skip ") for out, _ in outs)
    assert trained == 4 and skipped == 4, [o for o, _ in outs]
    runs = faultkit.seed_runs(tmp_path)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["harness.run_key"] for r in runs}) == 4
    c = faultkit.client(tmp_path)
    exp = c.get_experiment_by_name("default")
    parents = c.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'variant'")
    assert sorted(p.data.tags["harness.variant"] for p in parents) == ["baseline", "dropout"]


def test_an_interrupted_rerun_continues_itself(tmp_path, data, reference):
    """The same --rerun resumes its own killed replacement and leaves no orphan."""
    assert faultkit.run(tmp_path, data, "dropout", runner=run_cli).returncode == 0
    first = faultkit.result(tmp_path)["run_id"]
    assert faultkit.run(tmp_path, data, "dropout", "--rerun", fault="logged:2:KILL").returncode == -9
    again = faultkit.run(tmp_path, data, "dropout", "--rerun", runner=run_cli)
    assert again.returncode == 0 and "resume dropout seed 11 after epoch 2" in again.stdout, again.stdout[-2000:]
    assert "TRAIN EPOCH[001/004]" not in again.stdout
    runs = faultkit.seed_runs(tmp_path)
    assert [r.info.status for r in runs if r.info.lifecycle_stage == "active"] == ["FINISHED"]
    result = faultkit.result(tmp_path)
    assert result["run_id"] != first and faultkit.same(result, reference["dropout"])


@pytest.mark.parametrize("signal_name,code,resumed", [("TERM", 143, "after epoch 2"), ("KILL", -9, "from the start")])
def test_a_long_checkpoint_interval_loses_at_most_that_interval(tmp_path, data, reference, signal_name, code, resumed):
    """With an hour between checkpoints (train.checkpoint_seconds) a run mid-epoch 3 of 4 has written
    none: SIGTERM writes what its last whole epoch left (epoch 2) before it stops, so the next
    command resumes there; SIGKILL loses the interval (here all of it), so the next command starts
    the same run over. Either way the numbers are the uninterrupted run's, every epoch logged once."""
    hour = ("--set", "train.checkpoint_seconds=3600")
    killed = faultkit.run(tmp_path, data, "dropout", *hour, fault=f"step:40:{signal_name}")
    assert killed.returncode == code, killed.stderr[-2000:]
    again = faultkit.run(tmp_path, data, "dropout", *hour, runner=run_cli)
    assert again.returncode == 0 and f"resume dropout seed 11 {resumed}" in again.stdout, again.stdout[-2000:]
    result = faultkit.result(tmp_path)
    assert result["run_id"] == faultkit.seed_runs(tmp_path)[0].info.run_id  # the same MLflow run continued
    assert faultkit.same(result, reference["dropout"])


def test_a_fault_whose_point_is_passed_fewer_times_than_asked_is_said_not_to_have_fired(monkeypatch):
    """HARNESS_FAULT=logged:99999 on a short run injects no fault, and the process says so."""
    from harness.base import faults

    monkeypatch.setattr(faults, "_SPEC", "logged:99999")
    monkeypatch.setattr(faults, "_POINT", "logged")
    monkeypatch.setattr(faults, "_AT", "99999")
    monkeypatch.setattr(faults, "_COUNT", {"n": 0})
    assert faults.missed() == ""  # a parent process that never passes the point says nothing
    faults.point("logged"), faults.point("logged")
    assert faults.missed() == (
        "warning: HARNESS_FAULT=logged:99999: no fault was injected; this process passed 'logged' 2 time(s), fewer than 99999"
    )


def _training(work: Path, data_dir: Path, stdout) -> subprocess.Popen:
    """A `run` of 40 small epochs in `work` (a fresh store), returned once its first checkpoint is written."""
    fresh_store(work)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--epochs",
            "40",
            "--set",
            "train.batch_size=16",
            "--set",
            "train.threads=1",
        ],
        cwd=work,
        env={**env, "PYTHONPATH": str(ROOT), "HARNESS_DATA_DIR": str(data_dir)},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list((work / "checkpoints" / "default").glob("*.pt")) and time.time() < deadline:
        time.sleep(0.1)
    return proc


@pytest.mark.slow
def test_the_working_directory_deleted_mid_run_is_one_line(tmp_path, data_dir):
    work = tmp_path / "w"
    proc = _training(work, data_dir, stdout=subprocess.PIPE)
    delete_while_written(work)  # the runner may write its next checkpoint meanwhile
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: the working directory was deleted while the command ran"), (
        err
    )


@pytest.mark.slow  # slow group: three real runs, two of them killed, the last from an older checkpoint
def test_a_restored_older_checkpoint_logs_each_epoch_once(tmp_path, data_dir):
    fresh_store(tmp_path)
    args = ["run", "--epochs", "3", "--set", "train.threads=1"]
    first = run_process(*args, cwd=tmp_path, data=data_dir, env={"HARNESS_FAULT": "checkpointed:1:KILL"})
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    ckpt = next((tmp_path / "checkpoints" / "default").glob("*.pt"))
    old = ckpt.read_bytes()  # after epoch 1
    # epochs 1 and 2 in the store
    second = run_process(*args, cwd=tmp_path, data=data_dir, env={"HARNESS_FAULT": "logged:1:KILL"})
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    ckpt.write_bytes(old)  # the user puts the older checkpoint back
    third = run_cli(*args, cwd=tmp_path, data=data_dir)
    assert third.returncode == 0, third.stderr[-2000:]
    twice = store_rows(
        tmp_path,
        "select key, step, count(*) from metrics where key like 'val_%' group by run_uuid, key, step having count(*) > 1",
    )
    assert twice == []
    steps = store_rows(tmp_path, "select step from metrics where key = 'val_acc' order by step")
    assert [s for (s,) in steps] == [1, 2, 3]


@pytest.mark.slow
def test_sigterm_leaves_no_parent_run_running(tmp_path, data_dir):
    proc = _training(tmp_path, data_dir, stdout=subprocess.DEVNULL)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    statuses = store_rows(
        tmp_path,
        "select t.value, r.status from runs r join tags t on r.run_uuid = t.run_uuid where t.key = 'harness.role'",
    )
    assert ("seed", "KILLED") in statuses and not [s for s in statuses if s[1] == "RUNNING"], statuses
