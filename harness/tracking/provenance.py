"""Where a run's numbers came from: git commit, library versions, device and determinism settings."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from harness.data.loading import PER_SEED
from harness.settings import config
from harness.tracking import names

PACKAGES = ("torch", "torchvision", "numpy", "mlflow", "optuna", "pandas", "scipy", "seaborn")


def git_commit() -> str:
    """The commit of the code that ran, with '-dirty' when the work tree has changes; '' outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
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
    from harness.base.errors import UsageError

    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"train.device: {setting!r} was requested but CUDA is not available here; use cpu or auto")
        index = int(setting.split(":")[1]) if ":" in setting else 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"train.device: {setting!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(setting)


def determinism(device: torch.device) -> dict[str, str]:
    """What decides whether a rerun gives the same bits: versions, device, threads, flags."""
    cuda = device.type == "cuda"
    # off for precision = fp32 (engine.set_float_precision)
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "none",
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.machine()})",
        "threads": str(torch.get_num_threads()),
        "cudnn_deterministic": str(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": str(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
        "tf32_matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": str(torch.backends.cudnn.allow_tf32),
    }


def command_line() -> str:
    """The command as the user typed it (`python -m harness ...` or `harness ...`)."""
    first = sys.argv[0] if sys.argv else ""
    head = "python -m harness" if first.endswith("__main__.py") else Path(first).name
    return " ".join([head] + sys.argv[1:])


def run_tags(cfg, data, device: torch.device, command: str | None = None) -> dict[str, str]:
    """The tags every run of a command carries: the experiment, its configuration hash, the data and
    split (on a parent of a per-seed experiment the split reads "per_seed"; a seed run overrides it
    with its own), the code, the command (`command`, else this process's), the library versions and the determinism settings."""
    env = determinism(device)
    return {
        names.EXPERIMENT_TAG: cfg.name,
        names.BASELINE_TAG: cfg.baseline,
        names.CONFIG_HASH_TAG: config.config_hash(cfg),
        names.DATASET_TAG: data.source.identity,
        names.SPLIT_TAG: PER_SEED if cfg.data.split_seed == PER_SEED else data.split.fingerprint,
        names.COMMIT_TAG: git_commit(),
        names.COMMAND_TAG: command or command_line(),
        **{names.VERSION_PREFIX + k: v for k, v in versions().items()},
        **{names.ENV_PREFIX + k: v for k, v in env.items()},
        names.DEVICE_TAG: env["device"],
    }
