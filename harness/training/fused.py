"""Many runs as one program: K members of the LeNet family trained together as one network.

Each member is a run of its own: its initial weights are drawn exactly as its separate run draws
them (its seed, then copied into the fused layout), and it has its own batch order, its own
dropout masks and its own batch transform, each from its own generator, and its own optimizer
state. What makes them one program:
- the convolutions become grouped convolutions (member k's channels are block k of the channels),
- BatchNorm runs over K×C channels, so each member keeps its own batch statistics and running stats,
- the linear layers become batched matmuls (`baddbmm`) over a leading member axis,
- one optimizer steps the stacked parameters; Adam and SGD are elementwise, so that is K of them,
- the loss is the sum of the members' losses, so each member's gradients are exactly its own.

The results are different float computations from the separate runs (a grouped convolution sums in
another order): tests/training/test_fused.py shows how close. A member whose loss goes non-finite fails
alone: its loss leaves the sum and its numbers are ignored, and the members do not share a value,
so the others train on unchanged.

The network must be the LeNet family of harness/variants/lenet.py (conv1, bn1, pool, conv2, bn2, fc1, fc2,
fc3, relu, drop); `harness.running.fusing` decides which runs may be fused.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from harness.training import engine, fused_data
from harness.training.engine import EpochStats, NonFiniteLoss, NonFiniteOutput, Pieces, Progress, Result
from harness.training.fused_net import FusedLeNet, fused_input
from harness.training.settings import Runtime, Sources, TrainSettings

ELEMENTWISE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)  # one step over stacked parameters is K steps


@dataclass
class Member:
    """One run of a group: how to build its network, its data, its settings and its seed."""

    build: Callable[[], nn.Module]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    settings: TrainSettings
    seed: int
    sources: Sources = Sources()


def _member_generators(members: list[Member], device: torch.device) -> tuple[list[nn.Module], list[torch.Generator]]:
    """Each member's network, built right after seeding with its init seed as its separate run
    builds it, and its dropout generator: on a CPU the state torch's generator has after that build
    (where the separate run's dropout masks come from), or its own stream when a source is pinned."""
    nets, gens = [], []
    for m in members:
        engine.seed_everything(m.sources.seed("init", m.seed), "cudnn")
        nets.append(m.build())
        g = torch.Generator(device=device)
        if m.sources.pinned():
            g.manual_seed(engine.stream_seed("dropout", m.sources.seed("dropout", m.seed)))
        elif device.type == "cpu":
            g.set_state(torch.get_rng_state())
        else:  # CUDA draws dropout masks its own way: a stream of the member's seed, not its separate run's bits
            g.manual_seed(m.sources.seed("init", m.seed))
        gens.append(g)
    return nets, gens


def build_group(
    members: list[Member], device: torch.device, fmt: torch.memory_format = torch.contiguous_format
) -> tuple[FusedLeNet, list[nn.Module]]:
    """The fused network on `device` and the members' own networks (for their weights afterwards)."""
    nets, gens = _member_generators(members, device)
    fused = FusedLeNet(nets).to(device, memory_format=fmt)
    fused.generators = gens
    fused.seeds = [m.sources.seed("dropout", m.seed) for m in members]
    return fused, nets


@dataclass
class _State:
    """One member's bookkeeping: its history, best epoch, generators and failure."""

    result: Result
    best: Optional[EpochStats]
    order: torch.Generator
    data: torch.Generator
    failed: Optional[NonFiniteLoss] = None


def _snapshot(epoch: int, fused: FusedLeNet, optimizer, schedule, states: list[_State]) -> dict:
    return {
        "epoch": epoch,
        "model": fused.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        "members": [
            {
                **engine.result_state(s.result, s.best),
                "failed": [s.failed.epoch, s.failed.step, s.failed.value] if s.failed else None,
                "rng": {
                    "order": s.order.get_state(),
                    "data": s.data.get_state(),
                    "dropout": fused.generators[k].get_state(),
                    "dropout_device": fused.generators[k].device.type,
                },
            }
            for k, s in enumerate(states)
        ],
        "rng": engine.global_rng_state(next(fused.parameters()).device),
    }


def _restore(
    snapshot: dict, fused: FusedLeNet, optimizer, schedule, states: list[_State], device: torch.device
) -> None:
    """Put a group's snapshot back. A member's dropout stream saved on another device type (a CUDA
    generator's state means nothing to a CPU one and the reverse) restarts from a stream of its seed
    and the epoch, and its result says so (`Result.notes`): its later masks are not those of an
    uninterrupted run, everything else is."""
    fused.load_state_dict(snapshot["model"])
    optimizer.load_state_dict(snapshot["optimizer"])
    if schedule is not None and snapshot.get("schedule") is not None:
        schedule.load_state_dict(snapshot["schedule"])
    for k, (s, saved) in enumerate(zip(states, snapshot["members"])):
        s.result, s.best = engine.result_from(saved)
        s.failed = NonFiniteLoss(*saved["failed"]) if saved["failed"] else None
        s.order.set_state(saved["rng"]["order"])
        s.data.set_state(saved["rng"]["data"])
        saved_on = saved["rng"].get("dropout_device", "cpu" if saved["rng"]["dropout"].numel() > 16 else "cuda")
        if saved_on == device.type:
            fused.generators[k].set_state(saved["rng"]["dropout"])
        else:
            fused.generators[k].manual_seed(
                engine.stream_seed(f"dropout-resumed-after-{snapshot['epoch']}", fused.seeds[k])
            )
            s.result.notes.append(engine.device_note(saved_on, device, snapshot["epoch"]))
    engine.set_global_rng_state(snapshot["rng"], device)  # the global generators draw nothing a member trains with


PER_MEMBER = ("lr", "weight_decay")  # the training settings that may differ between a group's members


def shared_settings(settings: TrainSettings) -> TrainSettings:
    """What every member of a group must share: its settings but the per-member ones."""
    return dataclasses.replace(settings, **{name: 0.0 for name in PER_MEMBER})


def check_group(members: list[Member]) -> None:
    """Raise ValueError unless the members can train as one program (the runner groups only such runs)."""
    first = members[0]
    same = shared_settings(first.settings)
    for m in members[1:]:
        if shared_settings(m.settings) != same:
            raise ValueError(
                "fused members must share every training setting but the learning rate and the weight decay"
            )
        if (len(m.y_train), len(m.y_val), m.x_train.shape[1:]) != (
            len(first.y_train),
            len(first.y_val),
            first.x_train.shape[1:],
        ):
            raise ValueError("fused members must have training and validation sets of one size and image shape")


def _optimizer(members: list[Member], fused: FusedLeNet, pieces: Pieces, device: torch.device):
    """The group's optimizer (elementwise, one parameter group) and, where the members' weight decays
    differ, each parameter's rows of per-member L2 coefficients (else None: the optimizer's own)."""
    settings = members[0].settings
    decays = [m.settings.weight_decay for m in members]
    shared = len(set(decays)) == 1
    optimizer = pieces.optimizer(
        fused.parameters(), settings if shared else dataclasses.replace(settings, weight_decay=0.0)
    )
    if not isinstance(optimizer, ELEMENTWISE) or len(optimizer.param_groups) != 1:
        raise ValueError(
            f"a fused group needs an elementwise optimizer with one parameter group (Adam, AdamW, SGD), got {type(optimizer).__name__}"
        )
    if shared:
        return optimizer, None
    if isinstance(optimizer, torch.optim.AdamW):  # L2 is added to each member's gradients as Adam and SGD add theirs
        raise ValueError("AdamW's decoupled weight decay cannot differ between fused members")
    return optimizer, _member_rows(fused, decays, device)


def train_group(  # noqa: C901 - the epoch and step loops of K runs at once, kept whole to read beside engine.train's
    members: list[Member],
    on_progress: Callable[[Progress], None] = lambda p: None,
    resume: Optional[dict] = None,
    runtime: Runtime = Runtime(),
    pieces: Pieces = Pieces(),
) -> list[tuple[nn.Module, Result] | NonFiniteLoss]:
    """Train the members as one program for their epochs, validating each after every epoch.
    Progress events carry the group's mean loss and accuracy at the end of each phase (mid-phase
    events carry the step only: nothing is read back inside a phase); an "epoch" event's `members`
    holds each member's EpochStats (None once it failed) and its `snapshot` the whole group, to
    resume bit for bit. Returns, per member, its network with its last epoch's weights and its
    result, or the NonFiniteLoss that stopped it.

    A step's work does not grow with K in launches: one gather of every member's batch, one
    forward and backward, one cross-entropy, per-member weight decay and learning rates as a few
    `torch._foreach_*` ops, dropout masks drawn once per epoch per member
    (harness/training/launches.py counts them)."""
    check_group(members)
    settings = members[0].settings
    device = members[0].x_train.device
    k = len(members)
    fmt = engine.memory_format(runtime, device)
    fused, nets = build_group(members, device, fmt)
    engine.set_determinism(runtime.determinism)
    engine.set_float_precision(settings.precision)
    forward = engine.forward_fn(fused, runtime)
    graphs = engine.uses_cuda_graphs(runtime)
    optimizer, decay = _optimizer(members, fused, pieces, device)
    params = list(fused.parameters())
    lr_scale = _lr_scale(members, fused, device)
    before = [torch.empty_like(p) for p in params] if lr_scale is not None else None
    schedule = pieces.schedule(optimizer, settings) if pieces.schedule else None
    losses_of = fused_data.per_member_loss(pieces.loss(), k)
    states = [
        _State(
            Result(),
            None,
            torch.Generator().manual_seed(m.sources.seed("order", m.seed)),
            torch.Generator().manual_seed(m.sources.seed("augment", m.seed) + 1),
        )
        for m in members
    ]
    first_epoch = 1
    if resume is not None:
        _restore(resume, fused, optimizer, schedule, states, device)
        first_epoch = resume["epoch"] + 1
    batches = fused_data.Batches(members, device)
    n = batches.n
    steps, used = settings.steps(n)
    check_each_step = engine.checks_each_step(device)
    nan = float("nan")

    for epoch in range(first_epoch, settings.epochs + 1):
        start = time.perf_counter()
        fused.train()
        if all(s.failed is not None for s in states):
            break
        alive = torch.tensor([s.failed is None for s in states], device=device)
        trained = sum(s.failed is None for s in states)  # the members that train this epoch, who share its time
        order = batches.order(states, settings.shuffle)
        masks = fused.epoch_masks(used, device)  # exactly the rows the separate run's steps draw masks for
        loss_sum = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device, dtype=torch.long)
        first_bad = torch.full((k,), -1, device=device, dtype=torch.long)
        for step in range(steps):
            lo, hi = step * settings.batch_size, min(n, (step + 1) * settings.batch_size)
            x, y = batches.take(order, lo, hi)
            if pieces.transform is not None:
                x = fused_data.transform(pieces, x, states)
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with engine.autocast(device, settings.precision):
                logits = forward(fused_input(x, fmt), fused.step_masks(masks, lo, hi))
                losses = losses_of(logits, y)
            total = torch.where(alive, losses, 0.0).sum()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if decay is not None:
                torch._foreach_addcmul_([p.grad for p in params], params, decay)
            if lr_scale is None:
                optimizer.step()
            else:
                _step_scaled(optimizer, params, before, lr_scale)
            with torch.no_grad():
                detached = losses.detach().float()
                bad = alive & ~torch.isfinite(detached)
                first_bad = torch.where((first_bad < 0) & bad, step + 1, first_bad)
                loss_sum += detached * (hi - lo)
                correct += (logits.argmax(2) == y).sum(1)
            if check_each_step and bool(bad.any()):
                for j in torch.nonzero(bad).flatten().tolist():
                    states[j].failed = NonFiniteLoss(epoch, step + 1, float(detached[j]))
                alive = alive & ~bad
            if runtime.progress_every and (step + 1) % runtime.progress_every == 0 and step + 1 < steps:
                on_progress(Progress("train", epoch, settings.epochs, step + 1, steps, nan, nan, False))
        for j, b in enumerate(first_bad.tolist()):
            if b >= 0 and states[j].failed is None:
                states[j].failed = NonFiniteLoss(epoch, b, float("nan"))
        alive = torch.tensor([s.failed is None for s in states], device=device)
        on_progress(
            Progress(
                "train", epoch, settings.epochs, steps, steps, *fused_data.means(loss_sum, correct, alive, used), True
            )
        )

        val = fused_data.evaluate_group(fused, members, settings, runtime, forward)
        for j, (loss, _) in enumerate(val):
            if states[j].failed is None and not math.isfinite(loss):
                states[j].failed = NonFiniteOutput(f"validation set at epoch {epoch}", epoch)
        val_steps = (len(members[0].y_val) + settings.eval_batch_size - 1) // settings.eval_batch_size
        living = [v for v, s in zip(val, states) if s.failed is None] or val
        mean_val = (sum(v[0] for v in living) / len(living), sum(v[1] for v in living) / len(living))
        on_progress(Progress("val", epoch, settings.epochs, val_steps, val_steps, *mean_val, True))
        seconds = (time.perf_counter() - start) / trained  # each member's share of the group's epoch
        sums, rights = loss_sum.tolist(), correct.tolist()
        for j, s in enumerate(states):
            if s.failed is not None:
                continue
            stats = EpochStats(epoch, sums[j] / used, 100.0 * rights[j] / used, val[j][0], val[j][1], seconds)
            s.result.history.append(stats)
            if engine._is_better(settings.select, stats, s.best):
                s.best = stats
                s.result.selected_epoch = epoch
                s.result.selected_state = fused.member_state(j)
        if schedule is not None:
            schedule.step()
        snapshot = _snapshot(epoch, fused, optimizer, schedule, states)
        per_member = [s.result.history[-1] if s.failed is None else None for s in states]
        on_progress(
            Progress("epoch", epoch, settings.epochs, steps, steps, *mean_val, True, None, snapshot, per_member)
        )

    out: list[tuple[nn.Module, Result] | NonFiniteLoss] = []
    for j, (net, s) in enumerate(zip(nets, states)):
        if s.failed is not None:
            out.append(s.failed)
            continue
        net.load_state_dict(fused.member_state(j))
        out.append((net.to(device, memory_format=fmt), s.result))
    return out


def _lr_scale(members: list[Member], fused: FusedLeNet, device: torch.device) -> list[torch.Tensor] | None:
    """Where the members' learning rates differ: for each stacked parameter its members' rows of
    lr / the optimizer's lr (the first member's), else None. Adam's, AdamW's and SGD's step is the
    learning rate times a term that does not depend on it (AdamW's decoupled decay included), so a
    member's step at its own rate is the optimizer's step scaled by that ratio; a schedule scales
    every member's rate alike."""
    rates = [m.settings.lr for m in members]
    if len(set(rates)) == 1:
        return None
    return _member_rows(fused, [r / rates[0] for r in rates], device)


def _member_rows(fused: FusedLeNet, values: list[float], device: torch.device) -> list[torch.Tensor]:
    """For each stacked parameter (in `fused.parameters()` order) one value per member, broadcast over that member's elements."""
    per_member = torch.tensor(values, device=device)
    return [fused.member_rows(p, per_member) for p in fused.parameters()]


@torch.no_grad()
def _step_scaled(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], before: list[torch.Tensor], scale: list[torch.Tensor]
) -> None:
    """One optimizer step, each member's part of it scaled to the member's own learning rate:
    p = old + (p - old) × rows, as four foreach ops over every parameter (`before` is scratch)."""
    torch._foreach_copy_(before, params)
    optimizer.step()
    torch._foreach_sub_(params, before)
    torch._foreach_mul_(params, scale)
    torch._foreach_add_(params, before)
