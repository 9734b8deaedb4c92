"""A fused group's data paths (harness/training/fused.py trains it): every member's batch taken in
one gather, its transform drawn per member and applied once, each member's loss from one
cross-entropy, and the validation of every member in one pass."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from harness.training import engine
from harness.training.engine import Pieces
from harness.training.fused_net import FusedLeNet, fused_input
from harness.training.settings import Runtime, TrainSettings


class Batches:
    """The members' training images as the step reads them: one tensor for all (the members' own,
    stacked once, where their sets differ), so that one gather takes every member's batch."""

    def __init__(self, members: list, device: torch.device) -> None:  # of fused.Member
        first = members[0]
        self.n, self.k = len(first.y_train), len(members)
        shared = all(m.x_train is first.x_train and m.y_train is first.y_train for m in members)
        self.x = first.x_train if shared else torch.cat([m.x_train for m in members])
        self.y = first.y_train if shared else torch.cat([m.y_train for m in members])
        self.offsets = (
            torch.zeros(self.k, 1, dtype=torch.long, device=device)
            if shared
            else (torch.arange(self.k, device=device) * self.n).view(self.k, 1)
        )

    def order(self, states: list, shuffle: bool) -> torch.Tensor:
        """K × n indices into `x` of the epoch's images, member by member in its own batch order:
        drawn from each member's generator on the CPU (as its separate run draws it), copied once."""
        if shuffle:
            order = torch.stack([torch.randperm(self.n, generator=s.order) for s in states]).to(
                self.offsets.device, non_blocking=True
            )
        else:
            order = torch.arange(self.n, device=self.offsets.device).expand(self.k, self.n)
        return order + self.offsets

    def take(self, order: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's images (K × B × C × H × W) and labels (K × B): one gather each."""
        idx = order[:, lo:hi]
        return self.x[idx], self.y[idx]


def transform(pieces: Pieces, x: torch.Tensor, states: list) -> torch.Tensor:
    """The batch transform of every member's batch (K × B × ...), each drawing from its own
    generator. A transform with `draw` and `apply` (harness/variants/augment.py) draws each member's part
    on the CPU and is applied once to the whole stack on the device; any other is called per member."""
    k, b = x.shape[:2]
    t = pieces.transform
    if hasattr(t, "draw") and hasattr(t, "apply"):
        drawn = torch.cat([t.draw(b, s.data) for s in states]).to(x.device, non_blocking=True)
        return t.apply(x.reshape(k * b, *x.shape[2:]), drawn).view(k, b, *x.shape[2:])
    return torch.stack([t(x[j], s.data) for j, s in enumerate(states)])


def per_member_loss(loss_fn: nn.Module, k: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(K × B × classes logits, K × B labels) -> each member's mean loss (K). Cross-entropy without
    class weights is one call over all K·B rows; any other loss is called per member."""
    if type(loss_fn) is nn.CrossEntropyLoss and loss_fn.weight is None and loss_fn.reduction == "mean":
        smoothing, ignore = loss_fn.label_smoothing, loss_fn.ignore_index

        def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            rows = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                y.reshape(-1),
                reduction="none",
                label_smoothing=smoothing,
                ignore_index=ignore,
            )
            return rows.view(k, -1).mean(1)

        return cross_entropy
    return lambda logits, y: torch.stack([loss_fn(logits[j], y[j]) for j in range(k)])


def means(loss_sum: torch.Tensor, correct: torch.Tensor, alive: torch.Tensor, seen: int) -> tuple[float, float]:
    """The living members' mean loss per sample and accuracy in percent, over `seen` samples each."""
    live = alive.to(loss_sum.device)
    count = max(int(live.sum()), 1)
    loss = float(torch.where(live, loss_sum, torch.zeros_like(loss_sum)).sum()) / (count * seen)
    acc = 100.0 * float(torch.where(live, correct, torch.zeros_like(correct)).sum()) / (count * seen)
    return loss, acc


@torch.inference_mode()
def evaluate_group(
    fused: FusedLeNet,
    members: list,
    settings: TrainSettings,
    runtime: Runtime = Runtime(),
    forward: Optional[Callable] = None,
) -> list[tuple[float, float]]:
    """Each member's mean validation loss per sample and accuracy in percent, in batches of
    `settings.eval_batch_size`; members that share their validation set read it once. Read back
    once, at the end. A member with a non-finite output gets a NaN loss (fused.py fails it)."""
    forward = fused if forward is None else forward
    was_training = fused.training
    fused.eval()
    k = len(members)
    device = members[0].x_val.device
    fmt = engine.memory_format(runtime, device)
    shared = all(m.x_val is members[0].x_val for m in members)
    y = torch.stack([m.y_val for m in members])
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, device=device, dtype=torch.long)
    for lo in range(0, y.shape[1], settings.eval_batch_size):
        hi = lo + settings.eval_batch_size
        # one copy of a batch whatever K (fused_input converts and lays it out); own sets: each member's slice
        batch = (
            members[0].x_val[lo:hi].unsqueeze(0).expand(k, -1, -1, -1, -1)
            if shared
            else torch.stack([m.x_val[lo:hi] for m in members])
        )
        if engine.uses_cuda_graphs(runtime):
            torch.compiler.cudagraph_mark_step_begin()
        with engine.autocast(device, settings.precision):
            logits = forward(fused_input(batch, fmt))
        logits = logits.float()
        rows = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y[:, lo:hi].reshape(-1), reduction="none"
        )
        loss_sum += rows.view(k, -1).sum(1) + torch.where(torch.isfinite(logits).all(2).all(1), 0.0, math.nan)
        correct += (logits.argmax(2) == y[:, lo:hi]).sum(1)
    fused.train(was_training)
    total = y.shape[1]
    sums, rights = loss_sum.tolist(), correct.tolist()
    return [(sums[j] / total, 100.0 * rights[j] / total) for j in range(k)]
