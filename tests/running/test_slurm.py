"""`run --executor slurm` on a real single-node Slurm cluster (tests/services.py starts munge,
slurmctld and slurmd with a slurm.conf it writes): array tasks, the same results as the local
executor, a preempted task that requeues itself and resumes, one requeued by Slurm without warning
that resumes too, a cancelled one named with its log,
and --detach with the report written by a last job."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from mlflow import MlflowClient

from tests.helpers import run_cli, run_process, seed_runs, start_process, write_npz
from tests.services import slurm_cluster, wait_for

pytestmark = pytest.mark.slow
TINY = ["--set", "train.batch_size=64"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def _queue(env) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], env=env, capture_output=True, text=True).stdout
    return out.split()


def test_an_array_trains_every_pair_as_the_local_executor_does(slurm, tmp_path):
    data = write_npz(tmp_path / "data")
    args = ["run", "--variants", "baseline,dropout", "--seeds", "2", "--epochs", "1", *TINY]
    (tmp_path / "local").mkdir()
    (tmp_path / "slurm").mkdir()
    # the tasks' one thread: the same float sums
    local = run_cli(*args, "--set", "train.threads=1", cwd=tmp_path / "local", data=data)
    assert local.returncode == 0, local.stderr[-3000:]
    on_slurm = run_process(
        *args,
        "--executor",
        "slurm",
        "--cpus-per-run",
        "1",
        "--time",
        "10",
        cwd=tmp_path / "slurm",
        data=data,
        env=slurm,
    )
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:] + on_slurm.stdout[-3000:]
    assert "submitted 4 run(s) as Slurm job array" in on_slurm.stdout and "4 of 4 runs finished" in on_slurm.stdout
    assert on_slurm.stdout.count("running as Slurm task") == 4
    logs = [p.read_text() for p in (tmp_path / "slurm" / "checkpoints" / "default" / "slurm").rglob("*_log.out")]
    # each task trains on its --cpus-per-run, not the node's cores
    assert len(logs) == 4 and all("1 thread(s))" in log for log in logs)

    def by_key(folder):
        return {
            r.data.tags["harness.run_key"]: (
                r.data.tags["harness.variant"],
                r.data.metrics["test_acc"],
                r.data.metrics["best_val_acc"],
            )
            for r in seed_runs(folder)
        }

    assert by_key(tmp_path / "slurm") == by_key(tmp_path / "local")  # the same keys, the same numbers on a CPU
    exports = [
        run_cli("export", "--experiment", "default", "--format", "csv", cwd=tmp_path / where).stdout
        for where in ("local", "slurm")
    ]
    assert exports[0] == exports[1] and "dropout" in exports[0]  # the report's comparison table, number for number

    # finished pairs are skipped, nothing submitted
    again = run_cli(*args, "--executor", "slurm", cwd=tmp_path / "slurm", data=data, env=slurm)
    assert again.returncode == 0 and "every pair has finished; nothing to submit" in again.stdout, again.stdout[-2000:]
    assert len(seed_runs(tmp_path / "slurm")) == 4


def _start(tmp_path, slurm, epochs: int = 60) -> tuple[subprocess.Popen, str]:
    """A long single-pair run in the background; returns it once its task has checkpointed."""
    data = write_npz(tmp_path / "data")
    args = ["run", "--variants", "baseline", "--seeds", "1", "--epochs", str(epochs), *TINY, "--executor", "slurm"]
    proc = start_process(
        *args, cwd=tmp_path, data=data, base=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_for(
        lambda: list((tmp_path / "checkpoints" / "default").glob("*.pt")),
        "the task's first checkpoint",
        seconds=120,
        every=0.2,
    )
    job = wait_for(lambda: _queue(slurm)[0] if _queue(slurm) else None, "the task in the queue")
    assert os.path.isdir(tmp_path / "checkpoints" / "default" / "slurm")
    return proc, job


def _requeue_and_resume(tmp_path, slurm, requeue: list[str], epochs: int = 60) -> tuple[str, str]:
    """Start a long pair, requeue its task with the `requeue` command (its job id appended), let
    Slurm start it again at once, and check that it resumed: one FINISHED run per key, every epoch
    logged once. Returns the driver's output and the task's log."""
    proc, job = _start(tmp_path, slurm, epochs)
    subprocess.run([*requeue, job], env=slurm, check=True)
    wait_for(lambda: "PENDING" in _queue(slurm), "the task back in the queue", seconds=60, every=0.2)
    # Slurm holds a requeued job for two minutes (its BeginTime); release it so the test need not wait.
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm, check=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "was requeued; it resumes from its checkpoint" in out and "1 of 1 runs finished" in out, out[-3000:]
    runs = seed_runs(tmp_path)
    assert [r.info.status for r in runs] == ["FINISHED"]  # one run per key, resumed in place, nothing left RUNNING
    history = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(
        runs[0].info.run_id, "val_acc"
    )
    # every epoch logged once: the second attempt resumed, not restarted
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    log = next((tmp_path / "checkpoints" / "default" / "slurm").rglob("*_log.out")).read_text()
    assert "resume baseline seed 2021 after epoch" in log, log[-3000:]
    return out, log


def test_a_preempted_task_requeues_itself_and_resumes_from_its_checkpoint(slurm, tmp_path):
    # What Slurm sends before a preemption or the time limit (submitit asks for USR2): the task
    # records its run as interrupted, requeues itself (`scontrol requeue`) and exits.
    out, log = _requeue_and_resume(tmp_path, slurm, ["scancel", "--signal=USR2"])
    assert out.count("running as Slurm task") == 2, out[-3000:]
    assert "Requeued job" in log


def test_a_task_requeued_without_warning_resumes_from_its_last_checkpoint(slurm, tmp_path):
    """A preemption on a cluster that sends no USR2 (or a node failure with requeue): Slurm kills the
    task (SIGTERM, SIGKILL after KillWait) and requeues it; the new attempt resumes the same run.
    submitit's task ignores the SIGTERM, so the pair must train longer than KillWait (5 s) after it:
    60 tiny epochs can finish inside it, and the requeued task would find the run finished."""
    _requeue_and_resume(tmp_path, slurm, ["scontrol", "requeue"], epochs=300)


def test_a_cancelled_task_fails_named_with_its_log_and_leaves_nothing_running(slurm, tmp_path):
    # minutes of tiny epochs: far longer than the test needs to cancel it
    proc, job = _start(tmp_path, slurm, epochs=20000)
    # while its task runs, the same command would train the pair twice
    twice = run_cli(
        "run",
        "--variants",
        "baseline",
        "--seeds",
        "1",
        "--epochs",
        "20000",
        *TINY,
        "--executor",
        "slurm",
        cwd=tmp_path,
        data=tmp_path / "data",
        env=slurm,
    )
    assert twice.returncode == 2 and "still has 1 Slurm task(s) queued or running" in twice.stderr, twice.stderr[-2000:]
    subprocess.run(["scancel", job], env=slurm, check=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]
    assert f"Slurm task {job} ended without a result" in out and "_log.out" in out, out[-3000:]
    assert [r.info.status for r in seed_runs(tmp_path)] == ["KILLED"]


def test_detach_returns_at_once_and_a_last_job_writes_the_report(slurm, tmp_path):
    data = write_npz(tmp_path / "data")
    start = time.time()
    proc = run_process(
        "run",
        "--variants",
        "baseline",
        "--seeds",
        "2",
        "--epochs",
        "1",
        *TINY,
        "--executor",
        "slurm",
        "--detach",
        cwd=tmp_path,
        data=data,
        env=slurm,
    )
    assert proc.returncode == 0 and "detached:" in proc.stdout, proc.stderr[-3000:]
    assert not (tmp_path / "reports" / "default" / "report.md").exists()
    wait_for(lambda: (tmp_path / "reports" / "default" / "report.md").exists(), "the report job's report", seconds=180)
    assert [r.info.status for r in seed_runs(tmp_path)] == ["FINISHED", "FINISHED"]
    assert time.time() - start < 180
