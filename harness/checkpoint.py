"""Checkpoints: one file per run key, written atomically (temporary file, flush, fsync, rename,
fsync of the folder), so a process killed at any moment leaves either the previous checkpoint or
the new one, never a torn file. A failed write (no space left, say) leaves the previous file intact
and names the path in its error.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from harness import faults


class CheckpointError(OSError):
    """A checkpoint (or any file written through `atomic_write_bytes`, such as a report) could not be written."""


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue(), fault_point="checkpoint")


def atomic_write_bytes(path: Path, payload: bytes, fault_point: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            half = len(payload) // 2
            f.write(payload[:half])
            if fault_point:
                faults.point(fault_point)  # a kill here leaves a half-written temporary file
            f.write(payload[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write {str(path)!r}: {e.strerror or e}") from e


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none or it cannot be read (then the run starts over)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # our own file, not a download
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is the same as none
        return None


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
