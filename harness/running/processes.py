"""`run --jobs-per-device K`: the same experiment in several processes at once, K per GPU (each
pinned to its GPU) or K on the CPU (each with its share of the cores). The claims hand every key
to exactly one of them; the parent then reads the outcomes from the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from harness.base import parent
from harness.base.errors import Terminated, UsageError
from harness.running import preflight
from harness.running.console import Console
from harness.settings import config


def run_in_processes(cfg, device: torch.device, per_device: int, console: Console, identity: str = "") -> None:
    """Start the children, each running the resolved configuration `cfg` (written as an experiment
    file, as every run logs it) on the data the parent checked (`identity`: a child that reads other
    data stops before training), and wait for all of them; on Ctrl-C or SIGTERM pass SIGTERM on and
    wait. A child's refusal (exit 2, its error line on its stderr) is the command's, said once."""
    with tempfile.TemporaryDirectory(prefix="harness-") as folder:
        path = Path(folder) / f"{cfg.name}.toml"
        path.write_text(config.to_toml(cfg), encoding="utf-8")
        _run(
            ["run", "--experiment", str(path)],
            device,
            per_device,
            console,
            {preflight.DATA_IDENTITY: identity} if identity else {},
        )


def _run(
    child_args: list[str], device: torch.device, per_device: int, console: Console, env: dict | None = None
) -> None:
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
            env={**os.environ, **slot, **parent.child_env(), **(env or {}), "HARNESS_CONSOLE": "plain"},
            stderr=subprocess.PIPE,
            text=True,
        )
        for slot in slots
    ]
    refusals: list[str] = []
    relays = [threading.Thread(target=_relay, args=(proc, refusals), daemon=True) for proc in procs]
    for relay in relays:
        relay.start()
    try:
        for proc in procs:
            proc.wait()
    except (KeyboardInterrupt, Terminated):
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        raise
    finally:
        for relay in relays:
            relay.join(timeout=10)
    if any(proc.returncode == 2 for proc in procs) and refusals:  # 2: the command line's exit for a refusal
        raise UsageError(refusals[0][len("error: ") :])  # every child refused the same way: said once
    for line in refusals:  # a child's other errors (its store stopped taking writes), each said once
        print(line, file=sys.stderr)


def _relay(proc: subprocess.Popen, refusals: list[str]) -> None:
    """A child's stderr on ours as it comes, but its one-line errors (`error: ...`) kept to be said once."""
    for line in proc.stderr:
        if line.startswith("error: "):
            if line.rstrip("\n") not in refusals:
                refusals.append(line.rstrip("\n"))
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
