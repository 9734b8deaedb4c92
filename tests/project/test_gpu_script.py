"""benchmarks/gpu.sh, the one prepared script a lent GPU runs, end to end on this CPU with small
sizes (DEVICE=cpu): every step it takes on a card but CUDA graphs, the kill-and-resume check and
the ablation's training-beside-wall line included, so that a card's minutes are not spent on a
script that fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, write_npz


@pytest.mark.slow
def test_gpu_script_runs_end_to_end_on_the_cpu(tmp_path):
    data = write_npz(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_FAULT")}
    env.update(
        DEVICE="cpu",
        HARNESS_DATA_DIR=str(data),
        PYTHON=sys.executable,
        PYTHONPATH=str(ROOT),
        SMOKE_SEEDS="1",
        SMOKE_EPOCHS="1",
        REPEATS="1",
        FUSED="1,2",
        BENCH_ARGS="--train-images 256 --val-images 64",
        ABLATION_SEEDS="1",
        ABLATION_EPOCHS="1",
        HARNESS_CONSOLE="plain",
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "all steps passed" in out, out[-6000:]
    for name in (
        "env",
        "smoke",
        "smoke_strict",
        "smoke_bf16",
        "resume",
        "bench",
        "bench_fused",
        "ablation_off",
        "ablation_auto",
    ):
        assert f"== {name}: exit 0" in out, name
    # the LeNet family fused (with one seed: baseline, dropout, weight decay and the member at its own lr)
    smoke = (tmp_path / "out" / "smoke.log").read_text()
    assert "fused group of 4: baseline seed 2021, dropout seed 2021, weight_decay seed 2021, fast_lr seed 2021" in smoke
    assert "resume the fused group" in (tmp_path / "out" / "smoke_resume.second.log").read_text()
    assert "s of the runs' " in out and "wall time" in out  # the ablation's training seconds beside its wall seconds
