"""How many kernel-launching ops a training step costs, counted below autograd.

A `TorchDispatchMode` sees every aten op that autograd's forward, backward and the optimizer issue.
An op counts when it does work on data: views (an output that aliases an input without writing
it), allocations (`empty*`) and reads of a number back to the host are not kernels; the reads are
counted apart as host synchronisations.

A step's count is the difference between two epochs of one run that differ only in their number
of steps, divided by that difference: what an epoch pays once (its batch order, validation, the
dropout masks a fused group draws for its whole epoch, the snapshot) cancels, and what every step
pays remains. `python -m harness.cli.bench_launches` (and benchmarks/launches.py) prints the counts for LeNet;
tests/training/test_launches.py holds them.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

from torch.utils._python_dispatch import TorchDispatchMode

FREE = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh", "_to_copy_noop"}
SYNCS = {"_local_scalar_dense", "item", "is_nonzero", "equal"}


def _is_view(func) -> bool:
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


class Counting(TorchDispatchMode):
    """Counts the ops that launch kernels (`ops`, by name in `names`) and the host reads (`syncs`)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops, self.syncs, self.names = 0, 0, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCS:
            self.syncs += 1
        elif name not in FREE and not _is_view(func):
            self.ops += 1
            self.names[name] += 1
        return func(*args, **(kwargs or {}))


def per_step(train: Callable[[int], object], short: int = 2, long: int = 6) -> tuple[float, float, Counter]:
    """Kernel-launching ops and host reads per step of `train(steps)`, from two epochs of `short`
    and `long` steps (after one untimed call that makes lazy state: kernels chosen, modules loaded),
    and the per-step ops by name."""
    train(short)
    counts = []
    for steps in (short, long):
        with Counting() as counter:
            train(steps)
        counts.append(counter)
    span = long - short
    names = counts[1].names.copy()
    names.subtract(counts[0].names)
    return (counts[1].ops - counts[0].ops) / span, (counts[1].syncs - counts[0].syncs) / span, +names
