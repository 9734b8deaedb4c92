"""`python -m harness bench`: one epoch of the tutorial's LeNet on CIFAR-10 (by default the first
80% of the training set for training and the rest for validation: 40,000 and 10,000 images) several ways, side by side on the same device and model:

  (a) tutorial: a torchvision-style dataset (PIL image -> ToTensor per sample) and DataLoader(256)
  (b) harness:  the harness engine on uint8 tensors resident on the device (its default settings;
                `--engine KEY=VALUE,...` adds a row per other setting, e.g. precision=bf16)
  (c) floor:    the same training steps, in the same memory format and precision with the same
                model, on float batches already built in device memory: one floor per layout and
                precision the engine rows use, and each row is compared with its own

Each way first runs one untimed epoch (lazy imports, kernel choice, compilation); then the ways
take turns for `--repeats` epochs. It prints images per second (medians) and the ratios docs/performance.md
quotes (b/a, b/c, shuffled/unshuffled, tutorial/shuffled), and writes them to JSON. `--jobs 1,2,4,8` measures instead the aggregate throughput of K training
processes sharing one device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import harness.variants as registry
from harness.base.errors import UsageError
from harness.base.files import atomic_write
from harness.data import datasets, loading
from harness.tracking import provenance
from harness.training import engine

BATCH = 256
# one epoch in the tutorial's order: every engine way starts here
BASE = {
    "epochs": 1,
    "batch_size": BATCH,
    "shuffle": False,
}


class TutorialDataset(torch.utils.data.Dataset):
    """What the tutorial gets from torchvision's CIFAR10: a PIL image per sample, then ToTensor();
    with `augment`, the usual torchvision augmentation first (RandomCrop(32, padding=4) and
    RandomHorizontalFlip, on the PIL image)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: bool = False) -> None:
        from torchvision import transforms

        steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
        self.x, self.y, self.transform = x, y, transforms.Compose([*steps, transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_loop(model, optimizer, loss_fn, train_batches, val_batches, device) -> None:
    """The tutorial's epoch: train steps, then validation forward passes without gradients."""
    model.train()
    for xb, yb in train_batches:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        (loss.detach() * len(yb)).sum()
    model.eval()
    with torch.no_grad():
        for xb, yb in val_batches:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss_fn(model(xb), yb)


def _fresh(device):
    engine.seed_everything(2021)
    model = registry.get("baseline").build().to(device)
    return model, torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss()


def time_tutorial(x, y, device, n_train: int, augment: bool = False) -> float:
    ds_train, ds_val = TutorialDataset(x[:n_train], y[:n_train], augment), TutorialDataset(x[n_train:], y[n_train:])
    train = torch.utils.data.DataLoader(ds_train, batch_size=BATCH, shuffle=False)
    val = torch.utils.data.DataLoader(ds_val, batch_size=BATCH, shuffle=False)
    model, opt, loss_fn = _fresh(device)
    start = time.perf_counter()
    _step_loop(model, opt, loss_fn, train, val, device)
    _sync(device)
    return time.perf_counter() - start


def time_floor(
    x, y, device, n_train: int, fmt: torch.memory_format = torch.channels_last, precision: str = "fp32"
) -> float:
    """The engine's training and validation steps (forward, loss, backward, Adam, the loss and
    accuracy sums and the non-finite check kept on the device) on float batches built beforehand
    in the memory format `fmt`, with the model in that format and `precision`'s autocast: what the
    engine would cost if its batches were free."""
    xf = engine.to_float(loading.image_tensor(x, device).contiguous(memory_format=fmt))
    yt = loading.label_tensor(y, device)
    train = [(xf[i : min(i + BATCH, n_train)], yt[i : min(i + BATCH, n_train)]) for i in range(0, n_train, BATCH)]
    val = [(xf[i : i + BATCH], yt[i : i + BATCH]) for i in range(n_train, len(y), BATCH)]
    engine.seed_everything(2021)
    model = registry.get("baseline").build().to(device, memory_format=fmt)
    optimizer, loss_fn = torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss()
    _sync(device)
    start = time.perf_counter()
    model.train()
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    for step, (xb, yb) in enumerate(train):
        with engine.autocast(device, precision):
            logits = model(xb)
            loss = loss_fn(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            detached = loss.detach()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(detached), step + 1, first_bad)
            loss_sum += detached * len(yb)
            correct += (logits.argmax(1) == yb).sum()
    float(loss_sum), int(correct), int(first_bad)  # the engine reads its sums once an epoch
    model.eval()
    val_sum, preds = torch.zeros((), device=device), []
    with torch.inference_mode():
        for xb, yb in val:
            with engine.autocast(device, precision):
                logits = model(xb)
            val_sum += nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
            preds.append(logits.argmax(1))
        float(val_sum), int((torch.cat(preds) == yt[n_train:]).sum())
    _sync(device)
    return time.perf_counter() - start


def floor_name(way: "Way", device: torch.device) -> str:
    """The floor an engine row is compared with: `floor` for the default layout and precision
    (channels-last float32 on a CPU), else `floor[LAYOUT,PRECISION]`."""
    fmt = engine.memory_format(way[1], device)
    default = engine.memory_format(engine.Runtime(), device)
    if fmt == default and way[0].precision == "fp32":
        return "floor"
    return f"floor[{'channels_last' if fmt == torch.channels_last else 'contiguous'},{way[0].precision}]"


Way = tuple[engine.TrainSettings, engine.Runtime, engine.Pieces]


def time_engine(x, y, device, n_train: int, way: Way) -> float:
    xt, yt = loading.image_tensor(x, device), loading.label_tensor(y, device)  # as a run gives them to the engine
    _sync(device)
    start = time.perf_counter()
    engine.train(
        registry.get("baseline").build,
        xt[:n_train],
        yt[:n_train],
        xt[n_train:],
        yt[n_train:],
        way[0],
        2021,
        runtime=way[1],
        pieces=way[2],
    )
    _sync(device)
    return time.perf_counter() - start


def engine_ways(extra: dict[str, Way]) -> dict[str, Way]:
    """The engine as a user gets it (batches in the tutorial's fixed order, and shuffled), plus one
    way per `--engine KEY=VALUE,...` (its text -> its parsed settings)."""
    from harness.variants.augment import crop_and_flip

    base = engine.TrainSettings(**BASE)
    ways = {
        "harness": (base, engine.Runtime(), engine.Pieces()),
        "harness_shuffled": (dataclasses.replace(base, shuffle=True), engine.Runtime(), engine.Pieces()),
        "harness_augment": (base, engine.Runtime(), engine.Pieces(transform=crop_and_flip)),
    }
    for text, way in extra.items():
        ways[f"harness[{text}]"] = way
    return ways


ENGINE_SETTINGS = ("precision", "memory_format", "compile", "determinism", "eval_batch_size", "shuffle")


def parse_engine_settings(text: str, device: torch.device) -> Way:
    """`precision=bf16,compile=default` -> the bench's settings with these values, checked as the
    train.* settings are, for `device`."""
    from harness.running import preflight
    from harness.settings import checks, experiment_file

    table = dict(BASE)
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ENGINE_SETTINGS:
            raise UsageError(
                f"--engine: {part!r} is not allowed; expected KEY=VALUE with KEY one of {', '.join(ENGINE_SETTINGS)}"
            )
        experiment_file.apply_set(table, f"{key}={value.strip()}")
    settings, runtime = checks.train_settings(table, "--engine")
    preflight.check_runtime(settings, runtime, device)
    if runtime.determinism == "strict":  # cuBLAS reads it when it makes its first handle: before any row trains
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", engine.CUBLAS_WORKSPACE)
    return settings, runtime, engine.Pieces()


def run(
    x: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    repeats: int,
    out: Path,
    n_train: int,
    n_val: int,
    extra: dict[str, Way] | None = None,
    say=print,
) -> dict:
    x, y = x[: n_train + n_val], y[: n_train + n_val]
    images = n_train + n_val
    ways = {
        "tutorial": lambda: time_tutorial(x, y, device, n_train),
        "tutorial_augment": lambda: time_tutorial(x, y, device, n_train, True),
    }
    engine_rows = engine_ways(extra or {})
    floor_of = {name: floor_name(way, device) for name, way in engine_rows.items()}
    for name, way in engine_rows.items():
        ways[name] = lambda way=way: time_engine(x, y, device, n_train, way)
    for name, way in engine_rows.items():
        if floor_of[name] not in ways:
            ways[floor_of[name]] = lambda way=way: time_floor(
                x, y, device, n_train, engine.memory_format(way[1], device), way[0].precision
            )
    for name, fn in ways.items():  # one untimed epoch each: lazy imports, kernel choice, compilation
        fn()
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(repeats):  # interleaved, so drift in machine speed hits every way alike
        for name, fn in ways.items():
            seconds[name].append(fn())
            say(f"repeat {r + 1}/{repeats} {name:17s} {seconds[name][-1]:.3f} s/epoch")
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {
        **_machine(device),
        "images_per_epoch": images,
        "repeats": repeats,
        "seconds_per_epoch": seconds,
        "median_seconds": med,
        "images_per_second": {k: images / v for k, v in med.items()},
        "speedup_harness_vs_tutorial": med["tutorial"] / med["harness"],
        "harness_over_floor": med["harness"] / med["floor"],
        "augment_speedup_vs_tutorial": med["tutorial_augment"] / med["harness_augment"],
        "augment_cost_over_harness": med["harness_augment"] / med["harness"],
        "shuffled_over_unshuffled": med["harness_shuffled"] / med["harness"],
        "tutorial_over_shuffled": med["tutorial"] / med["harness_shuffled"],
        "floor_of": floor_of,
        "vs_tutorial": {k: med["tutorial"] / v for k, v in med.items()},
        "over_floor": {k: v / med[floor_of.get(k, "floor")] for k, v in med.items()},
    }
    say("")
    width = max(len(k) for k in ways)
    for name in ways:
        say(
            f"{name:{width}s} {result['images_per_second'][name]:10.0f} images/s  ({med[name]:.3f} s/epoch, median of {repeats}; "
            f"{result['vs_tutorial'][name]:.2f}x the tutorial's speed, {result['over_floor'][name]:.3f}x the time of {floor_of.get(name, 'floor')})"
        )
    say(f"b/a: harness is {result['speedup_harness_vs_tutorial']:.2f}x faster than the tutorial pipeline")
    say(
        f"b/c: harness takes {result['harness_over_floor']:.3f}x the time of its floor (same layout, precision and model, batches prebuilt)"
    )
    say(
        f"shuffled/unshuffled: {result['shuffled_over_unshuffled']:.3f}; tutorial/shuffled: {result['tutorial_over_shuffled']:.2f}"
    )
    say("")
    say("docs/performance.md rows (| way | s / epoch | images / s | vs tutorial | vs its floor |):")
    for name in ways:
        say(
            f"| {name} | {med[name]:.2f} | {result['images_per_second'][name]:,.0f} | {result['vs_tutorial'][name]:.2f}× | "
            f"{result['over_floor'][name]:.2f}× ({floor_of.get(name, 'floor')}) |"
        )
    say(
        f"augment: harness is {result['augment_speedup_vs_tutorial']:.2f}x faster than the tutorial's torchvision augmentation, "
        f"and augmenting costs {100 * (result['augment_cost_over_harness'] - 1):+.1f}% over the harness without it"
    )
    _write(out, result, say)
    return result


def _machine(device: torch.device) -> dict:
    """The card or CPU, versions and the float flags that decide what the rows measured (TF32 as each row set it: fp32 rows run without)."""
    env = provenance.determinism(device)
    return {
        "device": env["device"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": env["cuda"],
        "cudnn": env["cudnn"],
        "tf32": "off for fp32 rows, on for bf16 rows (engine.set_float_precision)",
    }


def _write(out: Path, result: dict, say) -> None:
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    say(f"json: {out}")


# ---------------------------------------------------------------- several runs per device


def _scaling_worker(
    data_dir: str, device: str, way: Way, threads: int, n_train: int, n_val: int, barrier, queue
) -> None:
    """One of K processes: load the data onto the device, train one untimed epoch (warm-up), wait
    for the others, then train the way's epochs and report when it started and ended."""
    torch.set_num_threads(threads)
    arrays = loading.read_source(datasets.get("cifar10"), Path(data_dir)).arrays
    dev = torch.device(device)
    xt, yt = (
        loading.image_tensor(arrays.x_train[: n_train + n_val], dev),
        loading.label_tensor(arrays.y_train[: n_train + n_val], dev),
    )
    build = registry.get("baseline").build
    settings, runtime, pieces = way
    engine.train(
        build,
        xt[:n_train],
        yt[:n_train],
        xt[n_train:],
        yt[n_train:],
        dataclasses.replace(settings, epochs=1),
        0,
        runtime=runtime,
        pieces=pieces,
    )
    _sync(dev)
    barrier.wait()
    start = time.monotonic()
    engine.train(
        build, xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:], settings, 0, runtime=runtime, pieces=pieces
    )
    _sync(dev)
    queue.put((start, time.monotonic()))


def _collect(procs, queue, k: int) -> list[tuple[float, float]]:
    """Each process's (start, end); if one dies, the others (maybe waiting at the barrier) are stopped."""
    import queue as queue_mod

    spans = []
    while len(spans) < k:
        try:
            spans.append(queue.get(timeout=1))
        except queue_mod.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.kill()
                raise RuntimeError(
                    f"a benchmark process for K={k} exited with code {dead[0]}; rerun with --debug for its traceback above"
                )
    for p in procs:
        p.join()
    return spans


def scaling(
    data_dir: Path,
    device: torch.device,
    ks: list[int],
    epochs: int,
    out: Path,
    n_train: int,
    n_val: int,
    extra: dict[str, Way] | None = None,
    say=print,
) -> dict:
    """Aggregate throughput of K training processes at once on one device, for each K in `ks`:
    K × epochs × 50,000 images over the wall time from the common start to the last finish. On the
    CPU each process gets cores/K threads; on a GPU all K share it. `extra`: at most one `--engine`
    (its text -> its parsed settings), used by every process."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    label, (settings, runtime, pieces) = (
        next(iter(extra.items()))
        if extra
        else ("defaults", (engine.TrainSettings(batch_size=BATCH), engine.Runtime(), engine.Pieces()))
    )
    way = (dataclasses.replace(settings, epochs=epochs), runtime, pieces)
    cores = os.cpu_count() or 1
    rows = {}
    for k in ks:
        threads = max(1, cores // k) if device.type == "cpu" else 1
        barrier, queue = ctx.Barrier(k), ctx.Queue()
        procs = [
            ctx.Process(
                target=_scaling_worker, args=(str(data_dir), str(device), way, threads, n_train, n_val, barrier, queue)
            )
            for _ in range(k)
        ]
        for p in procs:
            p.start()
        spans = _collect(procs, queue, k)
        wall = max(e for _, e in spans) - min(s for s, _ in spans)
        rows[k] = {
            "threads_per_process": threads,
            "wall_seconds": wall,
            "images_per_second": k * epochs * (n_train + n_val) / wall,
        }
        say(
            f"K={k}: {rows[k]['images_per_second']:10.0f} images/s in all ({wall:.2f} s for {k} × {epochs} epoch(s), {threads} thread(s) each)"
        )
    one = rows[ks[0]]["images_per_second"] / ks[0]
    for k in ks:
        rows[k]["efficiency"] = rows[k]["images_per_second"] / (k * one)
    say("efficiency (aggregate / (K × one process's)): " + ", ".join(f"K={k} {rows[k]['efficiency']:.2f}" for k in ks))
    result = {
        **_machine(device),
        "images_per_epoch": n_train + n_val,
        "epochs": epochs,
        "engine": label,
        "scaling": {str(k): v for k, v in rows.items()},
    }
    _write(out, result, say)
    return result
