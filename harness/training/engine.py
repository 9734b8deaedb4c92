"""The training engine: a plain PyTorch loop over batches that already live on the device.

It imports only torch, numpy and the standard library. It knows nothing of MLflow, files or the
console: it reports through one callback, `on_progress(Progress)`, and returns a `Result`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from harness.training.determinism import (  # noqa: F401 - re-exported: what the engine's callers seed and set
    CUBLAS_WORKSPACE,
    global_rng_state,
    seed_everything,
    set_determinism,
    set_float_precision,
    set_global_rng_state,
    stream_seed,
)
from harness.training.settings import Runtime, Sources, TrainSettings  # noqa: F401 - the engine's settings, re-exported


def adam(parameters, settings: TrainSettings) -> torch.optim.Optimizer:
    """The tutorial's optimizer: Adam at the run's learning rate and weight decay."""
    return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


@dataclass(frozen=True)
class Pieces:
    """The generic parts of training, each defaulting to the tutorial's: the optimizer, the loss,
    an optional learning-rate schedule (stepped once after each epoch) and an optional transform
    of each training batch (drawn from the run's own generator; evaluation never transforms)."""

    optimizer: Callable[..., torch.optim.Optimizer] = adam  # (parameters, settings) -> optimizer
    loss: Callable[[], nn.Module] = nn.CrossEntropyLoss
    schedule: Optional[Callable] = None  # (optimizer, settings) -> torch.optim.lr_scheduler.LRScheduler
    transform: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None  # (batch, generator) -> batch


@dataclass(frozen=True)
class Progress:
    phase: str  # "train", "val", or "epoch" (the epoch is over: `stats` and `snapshot` are set)
    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based, steps done so far in this phase
    steps: int
    loss: float  # mean per sample of the phase (NaN mid-phase: nothing is read back from the device inside a phase)
    acc: float  # percent, likewise
    done: bool  # the phase is complete
    stats: Optional["EpochStats"] = None
    snapshot: Optional[dict] = None  # everything needed to resume after this epoch, bit for bit
    members: Optional[list] = None  # a fused group's "epoch": each member's EpochStats, None once it failed


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_acc: float  # percent
    val_loss: float
    val_acc: float  # percent
    seconds: float  # wall time of the epoch (train + validation)


@dataclass
class Result:
    history: list[EpochStats] = field(default_factory=list)
    selected_epoch: int = 0
    selected_state: dict = field(default_factory=dict)  # weights at the selected epoch (on the CPU)
    notes: list[str] = field(default_factory=list)  # what the run's record must say (a resume on another device type)


class NonFiniteLoss(RuntimeError):
    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


class NonFiniteOutput(NonFiniteLoss):
    """The network's outputs or loss were not finite on the validation or the test set: the run
    fails as it does for a non-finite training loss (argmax of NaN picks class 0, which once
    recorded a NaN network as FINISHED with the share of class 0 as its accuracy)."""

    def __init__(self, where: str, epoch: int = 0) -> None:
        RuntimeError.__init__(self, f"outputs or loss not finite on the {where}")
        self.epoch, self.step, self.value, self.where = epoch, 0, float("nan"), where


def memory_format(runtime: Runtime, device: torch.device) -> torch.memory_format:
    """Channels-last is 25% faster for LeNet on a CPU (measured); on CUDA `auto` keeps the tutorial's layout."""
    name = runtime.memory_format
    if name == "auto":
        name = "contiguous" if device.type == "cuda" else "channels_last"
    return {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}[name]


def forward_fn(model: nn.Module, runtime: Runtime) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's forward pass as the settings ask: eager, or compiled with torch.compile's mode.
    Weights stay in `model` (the compiled module shares them), so checkpoints never see the wrapper."""
    if runtime.compile == "off":
        return model
    return torch.compile(model, mode=runtime.compile)


def checks_each_step(device: torch.device) -> bool:
    """On a CPU reading a number costs nothing, so a non-finite loss stops the run at its step; on a
    GPU the check stays on the device and is read once per epoch (no synchronisation per step)."""
    return device.type != "cuda"


def uses_cuda_graphs(runtime: Runtime) -> bool:
    """torch.compile's reduce-overhead and max-autotune modes replay CUDA graphs (on CUDA; elsewhere
    marking steps is harmless): each step must be marked so that a replay may reuse the previous
    step's output memory, which the engine has read by then."""
    return runtime.compile in ("reduce-overhead", "max-autotune")


def autocast(device: torch.device, precision: str):
    """bf16 autocast for the forward pass and loss (the loss itself is computed in fp32 by autocast)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def materialize(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A model with lazy modules (nn.LazyLinear, nn.LazyConv2d) gets its shapes from one forward
    pass of `example` (images as the data holds them), without gradients and in eval mode (no
    dropout draw, no BatchNorm statistics), before it is moved or laid out. Other models are
    returned as they are: nothing runs."""
    if not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        return model
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(to_float(example.detach().to("cpu")))
    return model.train(was_training)


def time_step(
    build: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    runtime: Runtime = Runtime(),
) -> float:
    """Seconds one training step of `build`'s network takes on `x`'s device (the median of three
    after a warm-up step), for the estimate a long study prints before it starts; the network is
    thrown away (each run seeds and builds its own)."""
    device = x.device
    fmt = memory_format(runtime, device)
    model = materialize(build(), x[:1]).to(device, memory_format=fmt)
    optimizer = adam(model.parameters(), settings)
    batch = to_float(x[: settings.batch_size]).contiguous(memory_format=fmt)
    target = y[: settings.batch_size]
    times = []
    for _ in range(4):
        start = time.perf_counter()
        with autocast(device, settings.precision):
            loss = nn.functional.cross_entropy(model(batch).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # waits for the device
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[1]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], the same values as torchvision's ToTensor()."""
    return x.float().div_(255)


def _is_better(select: str, stats: EpochStats, best: Optional[EpochStats]) -> bool:
    if best is None or select == "last":
        return True
    if select == "val_loss":
        return stats.val_loss < best.val_loss
    return stats.val_acc > best.val_acc


def result_state(result: Result, best: Optional[EpochStats]) -> dict:
    """A run's history, selected epoch and weights, best-so-far and notes, in a checkpoint's plain values."""
    return {
        "history": [dataclasses.asdict(s) for s in result.history],
        "selected_epoch": result.selected_epoch,
        "selected_state": result.selected_state,
        "best": dataclasses.asdict(best) if best else None,
        "notes": list(result.notes),
    }


def result_from(state: dict) -> tuple[Result, Optional[EpochStats]]:
    """The result and best-so-far that `result_state` saved."""
    result = Result(
        [EpochStats(**h) for h in state["history"]],
        state["selected_epoch"],
        state["selected_state"],
        list(state.get("notes", [])),
    )
    return result, EpochStats(**state["best"]) if state.get("best") else None


def device_note(saved_on: str, device: torch.device, epoch: int) -> str:
    """What a run resumed on another device type than its checkpoint's says in its record."""
    return (
        f"resumed after epoch {epoch} on {device.type} from a checkpoint written on {saved_on}: its dropout masks from then on "
        f"come from a fresh stream of its seed (a generator's state does not carry across device types), so its numbers "
        f"differ from an uninterrupted run's"
    )


def _snapshot(
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    result: Result,
    best: Optional[EpochStats],
    order_rng: torch.Generator,
    data_rng: torch.Generator,
    schedule,
) -> dict:
    """The resumable state after `epoch`: weights, optimizer, history, best-so-far and every RNG."""
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        **result_state(result, best),
        "rng": {
            **global_rng_state(next(model.parameters()).device),
            "order": order_rng.get_state(),
            "data": data_rng.get_state(),
        },
    }


def _restore(
    snapshot: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    order_rng: torch.Generator,
    data_rng: torch.Generator,
    schedule,
) -> tuple[Result, Optional[EpochStats]]:
    """Put the state of `snapshot` back. A piece that is missing is left as seeding made it."""
    if "model" in snapshot:
        model.load_state_dict(snapshot["model"])
    if "optimizer" in snapshot:
        optimizer.load_state_dict(snapshot["optimizer"])
    if schedule is not None and snapshot.get("schedule") is not None:
        schedule.load_state_dict(snapshot["schedule"])
    rng = snapshot.get("rng", {})
    saved_on = set_global_rng_state(rng, next(model.parameters()).device)
    if "order" in rng:
        order_rng.set_state(rng["order"])
    if "data" in rng:
        data_rng.set_state(rng["data"])
    result, best = result_from(snapshot)
    if saved_on:
        result.notes.append(device_note(saved_on, next(model.parameters()).device, snapshot["epoch"]))
    return result, best


def train(
    build: Callable[[], nn.Module],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    settings: TrainSettings,
    seed: int,
    on_progress: Callable[[Progress], None] = lambda p: None,
    resume: Optional[dict] = None,
    runtime: Runtime = Runtime(),
    pieces: Pieces = Pieces(),
    sources: Sources = Sources(),
) -> tuple[nn.Module, Result]:
    """Seed, build the model on the data's device, train for `settings.epochs`, validating after each.
    With `resume` (a snapshot from an "epoch" progress event) it continues after that epoch and
    ends with the same bits as a run that was never interrupted.

    Returns the model with its last epoch's weights and the result (history and selected weights).
    """
    seed_everything(sources.seed("init", seed), runtime.determinism)
    set_float_precision(settings.precision)
    device = x_train.device
    fmt = memory_format(runtime, device)
    model = materialize(build(), x_train[:1]).to(device, memory_format=fmt)
    if sources.pinned():  # each source its own stream: the dropout masks no longer continue the init stream
        dropout_seed = stream_seed("dropout", sources.seed("dropout", seed))
        torch.manual_seed(dropout_seed)
        torch.cuda.manual_seed_all(dropout_seed)
    forward = forward_fn(model, runtime)
    graphs = uses_cuda_graphs(runtime)
    x_train, x_val = x_train.contiguous(memory_format=fmt), x_val.contiguous(memory_format=fmt)
    optimizer = pieces.optimizer(model.parameters(), settings)
    schedule = pieces.schedule(optimizer, settings) if pieces.schedule else None
    loss_fn = pieces.loss()
    # Batch order and batch transforms have their own generators, so neither shifts the stream that
    # dropout draws from, and a run without a transform draws exactly what the tutorial draws.
    order_rng = torch.Generator(device="cpu").manual_seed(sources.seed("order", seed))
    data_rng = torch.Generator(device="cpu").manual_seed(sources.seed("augment", seed) + 1)
    n = len(y_train)
    steps, used = settings.steps(n)
    check_each_step = checks_each_step(device)
    result, best = Result(), None
    first_epoch = 1
    if resume is not None:
        result, best = _restore(resume, model, optimizer, order_rng, data_rng, schedule)
        first_epoch = resume["epoch"] + 1

    for epoch in range(first_epoch, settings.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=order_rng).to(device) if settings.shuffle else None
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        first_bad = torch.full((), -1, device=device, dtype=torch.long)
        for step in range(steps):
            lo, hi = step * settings.batch_size, min(n, (step + 1) * settings.batch_size)
            if order is None:
                xb, yb = x_train[lo:hi], y_train[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = x_train[idx], y_train[idx]
            if pieces.transform is not None:
                xb = pieces.transform(xb, data_rng)
            if graphs:  # a new training step: outputs of the previous graph replay may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            with autocast(device, settings.precision):
                logits = forward(to_float(xb))
                loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                # Accumulate on the device: no host synchronisation inside the epoch.
                detached = loss.detach()
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(detached), step + 1, first_bad)
                loss_sum += detached * (hi - lo)
                correct += (logits.argmax(1) == yb).sum()
            if check_each_step and not torch.isfinite(detached):
                raise NonFiniteLoss(epoch, step + 1, float(detached))
            if runtime.progress_every and (step + 1) % runtime.progress_every == 0 and step + 1 < steps:
                # no host read mid-phase
                on_progress(
                    Progress("train", epoch, settings.epochs, step + 1, steps, float("nan"), float("nan"), False)
                )
        bad = int(first_bad.item())
        if bad >= 0:
            raise NonFiniteLoss(epoch, bad, float("nan"))
        train_loss, train_acc = loss_sum.item() / used, 100.0 * correct.item() / used
        on_progress(Progress("train", epoch, settings.epochs, steps, steps, train_loss, train_acc, True))

        val_loss, val_acc, _ = evaluate(
            model, x_val, y_val, settings, runtime, forward, f"validation set at epoch {epoch}"
        )
        val_steps = (len(y_val) + settings.eval_batch_size - 1) // settings.eval_batch_size
        on_progress(Progress("val", epoch, settings.epochs, val_steps, val_steps, val_loss, val_acc, True))

        stats = EpochStats(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - start)
        result.history.append(stats)
        if _is_better(settings.select, stats, best):
            best = stats
            result.selected_epoch = epoch
            result.selected_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if schedule is not None:
            schedule.step()
        snapshot = _snapshot(epoch, model, optimizer, result, best, order_rng, data_rng, schedule)
        on_progress(Progress("epoch", epoch, settings.epochs, steps, steps, val_loss, val_acc, True, stats, snapshot))
    return model, result


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    runtime: Runtime = Runtime(),
    forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    where: str = "evaluation set",
) -> tuple[float, float, torch.Tensor]:
    """Mean loss per sample, accuracy in percent, and the predicted class of every sample, in
    batches of `settings.eval_batch_size` with the run's precision and memory layout. `forward` is the
    model's (compiled) forward pass; by default the model itself. Non-finite outputs or loss raise
    NonFiniteOutput naming `where` (read with the loss: no extra wait for the device)."""
    loss, acc, pred, _ = outputs(model, x, y, settings, runtime, forward, where, probabilities=False)
    return loss, acc, pred


@torch.inference_mode()
def outputs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    runtime: Runtime = Runtime(),
    forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    where: str = "evaluation set",
    probabilities: bool = True,
) -> tuple[float, float, torch.Tensor, Optional[torch.Tensor]]:
    """`evaluate`'s loss, accuracy and predictions, and with `probabilities` each sample's class
    probabilities too (float32, the softmax of the float32 logits; None without)."""
    forward = model if forward is None else forward
    was_training = model.training
    model.eval()
    x = x.contiguous(memory_format=memory_format(runtime, x.device))
    loss_sum = torch.zeros((), device=x.device)
    finite = torch.ones((), device=x.device, dtype=torch.bool)
    preds, probs = [], []
    for lo in range(0, len(y), settings.eval_batch_size):
        if uses_cuda_graphs(runtime):
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(x.device, settings.precision):
            logits = forward(to_float(x[lo : lo + settings.eval_batch_size]))
        loss_sum += nn.functional.cross_entropy(logits.float(), y[lo : lo + settings.eval_batch_size], reduction="sum")
        finite &= torch.isfinite(logits).all()
        preds.append(logits.argmax(1))
        if probabilities:
            probs.append(torch.softmax(logits.float(), 1))
    model.train(was_training)
    pred = torch.cat(preds)
    total, ok, right = torch.stack([loss_sum, finite.float(), (pred == y).sum().float()]).tolist()
    if not ok or not math.isfinite(total):
        raise NonFiniteOutput(where)
    return total / len(y), 100.0 * right / len(y), pred, torch.cat(probs) if probabilities else None


def copy_weights(model: nn.Module, state: dict) -> nn.Module:
    """A copy of `model` holding `state`."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone
