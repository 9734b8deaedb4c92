"""Where a run's numbers came from: git commit, library versions, device and determinism settings."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "numpy", "mlflow", "optuna", "pandas", "scipy", "seaborn")


def git_commit() -> str:
    """The commit of the code that ran, with '-dirty' when the work tree has changes; '' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def resolve_device(setting: str) -> torch.device:
    """`auto` is CUDA when available, else the CPU; asking for CUDA where there is none is an error."""
    from harness.errors import UsageError

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"train.device: {setting!r} was requested but CUDA is not available here; use cpu or auto")
        index = int(setting.split(":")[1]) if ":" in setting else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"train.device: {setting!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(setting)


def determinism(device: torch.device) -> dict[str, str]:
    """What decides whether a rerun gives the same bits: versions, device, threads, flags."""
    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "none",
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.machine()})",
        "threads": str(torch.get_num_threads()),
        "cudnn_deterministic": str(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": str(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
    }


def command_line() -> str:
    """The command as the user typed it (`python -m harness ...` or `harness ...`)."""
    first = sys.argv[0] if sys.argv else ""
    head = "python -m harness" if first.endswith("__main__.py") else Path(first).name
    return " ".join([head] + sys.argv[1:])
