"""A unit's checkpoint and its epochs' metrics (harness/running/units.py trains the unit): written
together once `train.checkpoint_seconds` have passed since the last write, after the last epoch,
and on an interruption; the checkpoint first, so that an epoch's metrics are in the store only once
a durable checkpoint holds it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness.base import faults
from harness.running.claims import Claims
from harness.tracking import names, store
from harness.training import checkpoint


class LostClaim(RuntimeError):
    """Another runner took over a run of this unit (this one's lease ran out): this one stops."""


@dataclass
class Ledger:
    """A unit's checkpoint and its epochs' metrics: written together once `every` seconds have
    passed since the last write (or at once with 0), and on `flush`. Between writes the last
    epoch's snapshot is kept as a copy, so an interruption writes what the last epoch left."""

    tracker: store.Tracker
    path: Path
    trained: list  # units.Member: every member trained (key, run id)
    active: list  # the members it logs and holds claims for
    claims: Claims
    every: float
    logged: dict[str, set[int]]  # run id -> epochs the store has
    pending: dict[str, list] = field(default_factory=dict)  # run id -> EpochStats not yet logged
    unsaved: dict | None = None
    last: float = field(default_factory=time.monotonic)

    def epoch(self, snapshot: dict, stats: list, epoch: int, final: bool) -> None:
        for m, s in zip(self.trained, stats):
            if s is not None and m.run_id in self.logged and epoch not in self.logged[m.run_id]:
                self.pending.setdefault(m.run_id, []).append(s)
        if final or time.monotonic() - self.last >= self.every:
            self.write(snapshot)
        else:
            self.unsaved = _copy(snapshot)

    def write(self, snapshot: dict) -> None:
        # Checkpoint first, then log: an epoch's metrics are in the store only once its checkpoint is durable.
        if not all(self.claims.holds(m.key) for m in self.active):
            names_ = ", ".join(m.name for m in self.trained)
            raise LostClaim(
                f"another runner took over {'a member of the fused group of ' if len(self.trained) > 1 else ''}"
                f"{names_}; this one stops"
            )
        checkpoint.save(
            self.path, {**snapshot, "run_ids": [m.run_id for m in self.trained], "keys": [m.key for m in self.trained]}
        )
        self.unsaved, self.last = None, time.monotonic()
        faults.point("checkpointed")
        for run_id, stats in self.pending.items():
            self.tracker.log_epochs(run_id, [(s.epoch, names.epoch_metrics(s)) for s in stats])
            self.logged[run_id].update(s.epoch for s in stats)
        self.pending = {}
        faults.point("logged")

    def flush(self) -> None:
        """On an interruption: write the last epoch's checkpoint and metrics if they wait (nothing else can be done)."""
        if self.unsaved is None:
            return
        try:
            self.write(self.unsaved)
        except (LostClaim, store.StoreError, OSError):
            pass  # the interruption is what the user hears about; the previous checkpoint stands


def _copy(value):
    """A snapshot with every tensor copied (the live weights and optimizer state move on)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value
