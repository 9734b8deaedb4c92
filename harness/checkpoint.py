"""Checkpoints: one file per run key, written by the atomic writer (harness/files.py), so a
process killed at any moment leaves either the previous checkpoint or the new one.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from harness.files import atomic_write
from harness.files import remove_with_leftovers as remove  # noqa: F401 - a checkpoint and its leftovers


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue(), fault_point="checkpoint")


def load_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot saved at `path`, or None when there is none or it cannot be read (then the run starts over)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # our own file, not a download
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is the same as none
        return None

