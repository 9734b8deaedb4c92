"""How many kernel-launching ops a training step costs, counted below autograd.

A `TorchDispatchMode` sees every aten op that autograd's forward, backward and the optimizer issue.
An op counts when it does work on data: views (an output that aliases an input without writing
it), allocations (`empty*`) and reads of a number back to the host are not kernels; the reads are
counted apart as host synchronisations.

A step's count is the difference between two epochs of one run that differ only in their number
of steps, divided by that difference: what an epoch pays once (its batch order, validation, the
dropout masks a fused group draws for its whole epoch, the snapshot) cancels, and what every step
pays remains. `benchmarks/launches.py` prints the counts; tests/test_launches.py holds them.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
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


def _data(n: int, device: torch.device, shape=(3, 32, 32)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    return x, y, x[:32], y[:32]


def counts(device: str = "cpu", batch: int = 32) -> dict[str, float]:
    """Ops per step of a separate baseline run, fused groups of 2 and 8 baseline seeds, 8 mixed
    members (their own dropout p, learning rate and weight decay) and 8 seeds of `augment`; and
    each one's host reads per step (`syncs`)."""
    import dataclasses

    from harness.training import engine, fused
    from variants.augment import crop_and_flip
    from variants.lenet import LeNet

    dev = torch.device(device)
    base = engine.TrainSettings(epochs=1, batch_size=batch, eval_batch_size=batch)
    runtime = engine.Runtime(progress_every=0)
    data = {}

    def x(steps):
        if steps not in data:
            data[steps] = _data(steps * batch, dev)
        return data[steps]

    def separate(steps):
        engine.train(lambda: LeNet(), *x(steps), base, 1, runtime=runtime)

    def group(specs, pieces=engine.Pieces()):
        def train(steps):
            members = [fused.Member(lambda p=p: LeNet(dropout=p), *x(steps), dataclasses.replace(base, lr=lr, weight_decay=wd), 1 + i)
                       for i, (p, lr, wd) in enumerate(specs)]
            fused.train_group(members, runtime=runtime, pieces=pieces)
        return train

    plain = (0.0, 1e-3, 0.0)
    mixed = [(0.0, 1e-3, 0.0), (0.5, 1e-3, 0.0), (0.3, 2e-3, 5e-4), (0.0, 5e-4, 1e-4),
             (0.5, 1e-3, 5e-4), (0.2, 3e-3, 0.0), (0.0, 1e-3, 1e-3), (0.5, 2e-3, 0.0)]
    ways = {"separate": separate, "fused_2": group([plain] * 2), "fused_8": group([plain] * 8), "fused_8_mixed": group(mixed),
            "fused_8_augment": group([plain] * 8, engine.Pieces(transform=crop_and_flip))}
    out: dict[str, float] = {}
    syncs: dict[str, float] = {}
    for name, train in ways.items():
        ops, reads, _ = per_step(train)
        out[name] = round(ops, 2)
        syncs[name] = round(reads, 2)
    out["ratio_fused_8"] = round(out["fused_8"] / out["separate"], 3)
    out["ratio_fused_8_mixed"] = round(out["fused_8_mixed"] / out["separate"], 3)
    return {**out, "syncs": syncs}
