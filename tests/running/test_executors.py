"""The executor flags of `run`, checked in-process before any work (the executors themselves run
against real clusters in tests/running/test_slurm.py, tests/running/test_ray.py and tests/running/test_team.py)."""

from __future__ import annotations

import pytest

from harness.base.errors import UsageError
from harness.cli import arguments, commands
from harness.running import execution, slurm_executor


def _args(*argv: str) -> execution.Execution:
    return commands.execution_of(arguments.parser(arguments.RaisingParser).parse_args(["run", *argv]))


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--executor", "dask"], "--executor: 'dask' is not allowed; expected one of local, ray, slurm"),
        (["--partition", "gpu"], "--partition: only with --executor slurm"),
        (["--time", "10"], "--time: only with --executor slurm"),
        (["--detach"], "--detach: only with --executor slurm"),
        (["--slurm-setup", "module load cuda"], "--slurm-setup: only with --executor slurm"),
        (
            ["--executor", "ray", "--array-parallelism", "4", "--ray-address", "auto"],
            "--array-parallelism: only with --executor slurm",
        ),
        (["--ray-address", "auto"], "--ray-address: only with --executor ray"),
        (["--executor", "slurm", "--jobs-per-device", "2"], "--jobs-per-device: only with the local executor"),
        (
            ["--executor", "slurm", "--gpus-per-run", "0.5"],
            "--gpus-per-run: 0.5 is not allowed with --executor slurm; Slurm gives whole",
        ),
        (["--executor", "slurm", "--cpus-per-run", "1.5"], "--cpus-per-run: 1.5 is not allowed with --executor slurm"),
        (["--executor", "slurm", "--array-parallelism", "0"], "--array-parallelism: 0 is not allowed"),
        (["--executor", "slurm", "--time", "soon"], "--time: 'soon' is not a time limit; expected minutes (90)"),
        (["--executor", "slurm", "--time", "0"], "--time: '0' is not allowed; give at least 5 minutes"),
        (["--executor", "slurm", "--time", "1:30"], "--time: '1:30' is not allowed; give at least 5 minutes"),
        (["--executor", "slurm", "--partition", "gpu;rm"], "--partition: 'gpu;rm' is not a partition name"),
        (
            ["--executor", "slurm", "--slurm-setup", " "],
            "--slurm-setup: ' ' is not allowed; give one non-empty shell line",
        ),
    ],
)
def test_executor_flags_are_refused_in_one_line(argv, fragment):
    with pytest.raises(UsageError) as e:
        execution.check(_args(*argv))
    assert fragment in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "text,minutes", [("90", 90), ("5:01", 6), ("1:30:00", 90), ("2-00", 2880), ("0-01:00:00", 60), ("1-0:30", 1470)]
)
def test_slurm_time_limits_read_as_sbatch_reads_them(text, minutes):
    assert slurm_executor.parse_time(text) == minutes


def test_slurm_without_its_client_commands_says_where_to_run(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UsageError) as e:
        execution.check(_args("--executor", "slurm"))
    assert "--executor slurm: sbatch is not on PATH; run on a Slurm login node" in str(e.value)


def test_processes_of_jobs_per_device_stop_in_one_line_when_the_data_changed_after_the_command_checked_it(tmp_path):
    """When the data changes after the command checked it, the children of `--jobs-per-device`
    train nothing under other keys: the command stops with one line naming the change, exit 2, and
    no run finishes."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from tests.helpers import ROOT, fresh_store, image_folder

    fresh_store(tmp_path)
    image_folder(tmp_path / "shapes", per_class=6, mode="RGB", sizes=((16, 16),))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--dataset", "folder:shapes", "--variants", "baseline",
         "--seeds", "1,2", "--epochs", "1", "--jobs-per-device", "2", "--set", "train.batch_size=8"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stdout:
        if "processes, 2 per device" in line:  # the parent checked the data and starts its children
            Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "shapes" / "vertical" / "000.png")
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (out, err)
    assert err.count("error: ") == 1 and err.startswith(
        "error: data.dataset: the data changed after the command checked it"
    )
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("default")
    assert experiment is None or not client.search_runs(
        [experiment.experiment_id], "attributes.status = 'FINISHED' and tags.`harness.role` = 'seed'"
    )
