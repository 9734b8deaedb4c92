"""`run --jobs-per-device K`: the same experiment in several processes at once, K per GPU (each
pinned to its GPU) or K on the CPU (each with its share of the cores). The claims hand every key
to exactly one of them; the parent then reads the outcomes from the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from harness.base import parent
from harness.base.errors import Terminated
from harness.running.console import Console
from harness.settings import config


def run_in_processes(cfg, device: torch.device, per_device: int, console: Console) -> None:
    """Start the children, each running the resolved configuration `cfg` (written as an experiment
    file, as every run logs it), and wait for all of them; on Ctrl-C or SIGTERM pass SIGTERM on and wait."""
    with tempfile.TemporaryDirectory(prefix="harness-") as folder:
        path = Path(folder) / f"{cfg.name}.toml"
        path.write_text(config.to_toml(cfg), encoding="utf-8")
        _run(["run", "--experiment", str(path)], device, per_device, console)


def _run(child_args: list[str], device: torch.device, per_device: int, console: Console) -> None:
    if device.type == "cuda":
        gpus = torch.cuda.device_count() if device.index is None else 1
        first = device.index or 0
        slots = [{"CUDA_VISIBLE_DEVICES": str(first + i % gpus)} for i in range(gpus * per_device)]
        extra = ["--device", "cuda"]
    else:
        threads = max(1, (os.cpu_count() or 1) // per_device)
        slots = [{} for _ in range(per_device)]
        extra = ["--set", f"train.threads={threads}"]
    console.line(f"{len(slots)} processes, {per_device} per device")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness", *child_args, *extra],
            env={**os.environ, **slot, **parent.child_env(), "HARNESS_CONSOLE": "plain"},
        )
        for slot in slots
    ]
    try:
        for proc in procs:
            proc.wait()
    except (KeyboardInterrupt, Terminated):
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        raise
