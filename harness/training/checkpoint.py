"""Checkpoints: one file per run key, written by the atomic writer (harness/base/files.py), so a
process killed at any moment leaves either the previous checkpoint or the new one.

A checkpoint holds only tensors and plain Python values (numpy's RNG state is stored as a tensor
and a list), so it is read with `torch.load(weights_only=True)`: whoever can write the checkpoint
folder cannot make the next runner execute code. A file that needs more is refused like a corrupt
one: the run starts over.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.base.files import atomic_write
from harness.base.files import remove_with_leftovers as remove  # noqa: F401 - a checkpoint and its leftovers


def save(path: Path, state: dict[str, Any]) -> None:
    rng = dict(state.get("rng", {}))
    if "numpy" in rng:  # ('MT19937', uint32 keys, pos, has_gauss, cached_gaussian)
        name, keys, pos, has_gauss, cached = rng["numpy"]
        rng["numpy"] = [
            name,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ]
        state = {**state, "rng": rng}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue(), fault_point="checkpoint")


def load_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot saved at `path`, or None when there is none or it cannot be read (then the run starts over)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable (or code-carrying) checkpoint is the same as none
        return None
    rng = state.get("rng", {}) if isinstance(state, dict) else {}
    if isinstance(rng.get("numpy"), list):
        name, keys, pos, has_gauss, cached = rng["numpy"]
        rng["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    return state
