"""`python -m harness bench`: one epoch of the tutorial's LeNet (40,000 training and 10,000
validation images) three ways, side by side on the same device and model:

  (a) tutorial: a torchvision-style dataset (PIL image -> ToTensor per sample) and DataLoader(256)
  (b) harness:  the harness engine on uint8 tensors resident on the device
  (c) floor:    the same training steps on float batches already built in device memory

It prints images per second (median over repeats), the ratios b/a and b/c, and writes JSON.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import variants as registry
from harness import engine, provenance

TRAIN, VAL, BATCH = 40_000, 10_000, 256


class TutorialDataset(torch.utils.data.Dataset):
    """What the tutorial gets from torchvision's CIFAR10: a PIL image per sample, then ToTensor()."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        from torchvision import transforms

        self.x, self.y, self.to_tensor = x, y, transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.to_tensor(Image.fromarray(self.x[i])), int(self.y[i])


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


def time_tutorial(x, y, device) -> float:
    ds_train, ds_val = TutorialDataset(x[:TRAIN], y[:TRAIN]), TutorialDataset(x[TRAIN:], y[TRAIN:])
    train = torch.utils.data.DataLoader(ds_train, batch_size=BATCH, shuffle=False)
    val = torch.utils.data.DataLoader(ds_val, batch_size=BATCH, shuffle=False)
    model, opt, loss_fn = _fresh(device)
    start = time.perf_counter()
    _step_loop(model, opt, loss_fn, train, val, device)
    _sync(device)
    return time.perf_counter() - start


def time_floor(x, y, device) -> float:
    xf = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device).float().div_(255)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    train = [(xf[i : i + BATCH], yt[i : i + BATCH]) for i in range(0, TRAIN, BATCH)]
    val = [(xf[i : i + BATCH], yt[i : i + BATCH]) for i in range(TRAIN, TRAIN + VAL, BATCH)]
    model, opt, loss_fn = _fresh(device)
    _sync(device)
    start = time.perf_counter()
    _step_loop(model, opt, loss_fn, train, val, device)
    _sync(device)
    return time.perf_counter() - start


def time_engine(x, y, device, shuffle: bool) -> float:
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    cfg = engine.EngineConfig(epochs=1, batch_size=BATCH, shuffle=shuffle)
    _sync(device)
    start = time.perf_counter()
    engine.train(registry.get("baseline").build, xt[:TRAIN], yt[:TRAIN], xt[TRAIN:], yt[TRAIN:], cfg, 2021)
    _sync(device)
    return time.perf_counter() - start


def _warm_up(device: torch.device) -> None:
    """Pay the one-off costs (torch's lazy imports on the first optimizer step, CUDA context and
    kernel selection) before anything is timed."""
    model, opt, loss_fn = _fresh(device)
    xb = torch.rand(BATCH, 3, 32, 32, device=device)
    yb = torch.zeros(BATCH, dtype=torch.long, device=device)
    for _ in range(3):
        _step_loop(model, opt, loss_fn, [(xb, yb)], [(xb, yb)], device)
    _sync(device)


def run(x: np.ndarray, y: np.ndarray, device: torch.device, repeats: int, out: Path, say=print) -> dict:
    x, y = x[: TRAIN + VAL], y[: TRAIN + VAL]
    images = TRAIN + VAL
    ways = {
        "tutorial": lambda: time_tutorial(x, y, device),
        "harness": lambda: time_engine(x, y, device, shuffle=False),
        "harness_shuffled": lambda: time_engine(x, y, device, shuffle=True),
        "floor": lambda: time_floor(x, y, device),
    }
    _warm_up(device)
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(repeats):  # interleaved, so drift in machine speed hits every way alike
        for name, fn in ways.items():
            seconds[name].append(fn())
            say(f"repeat {r + 1}/{repeats} {name:17s} {seconds[name][-1]:.3f} s/epoch")
    med = {k: statistics.median(v) for k, v in seconds.items()}
    result = {
        "device": provenance.determinism(device)["device"],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "images_per_epoch": images,
        "repeats": repeats,
        "seconds_per_epoch": seconds,
        "median_seconds": med,
        "images_per_second": {k: images / v for k, v in med.items()},
        "speedup_harness_vs_tutorial": med["tutorial"] / med["harness"],
        "harness_over_floor": med["harness"] / med["floor"],
    }
    say("")
    for name in ways:
        say(f"{name:17s} {result['images_per_second'][name]:10.0f} images/s  ({med[name]:.3f} s/epoch, median of {repeats})")
    say(f"b/a: harness is {result['speedup_harness_vs_tutorial']:.2f}x faster than the tutorial pipeline")
    say(f"b/c: harness takes {result['harness_over_floor']:.3f}x the floor's time")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"json: {out}")
    return result
