"""`run --jobs-per-device K`: the same command in several processes at once, K per GPU (each
pinned to its GPU) or K on the CPU (each with its share of the cores). The claims hand every key
to exactly one of them; the parent then reads the outcomes from the store."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import torch

from harness.base import parent
from harness.base.errors import Terminated
from harness.running.console import Console


def run_in_processes(device: torch.device, argv: list[str], per_device: int, console: Console) -> None:
    """Start the children, wait for all of them; on Ctrl-C or SIGTERM pass SIGTERM on and wait."""
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
    child_args = without_flag(argv, "--jobs-per-device")
    procs = [subprocess.Popen([sys.executable, "-m", "harness", *child_args, *extra], env={**os.environ, **slot, **parent.child_env(), "HARNESS_CONSOLE": "plain"}) for slot in slots]
    try:
        for proc in procs:
            proc.wait()
    except (KeyboardInterrupt, Terminated):
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        raise


def without_flag(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value (`--flag V` or `--flag=V`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out
