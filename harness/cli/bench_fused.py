"""`python -m harness bench --fused 1,2,4,8`: K runs trained as one fused group (train.fuse)
against the same K runs trained one after another, on the same device and data, in one command.

Each row is one epoch of K members (seeds 2021, 2022, ...; shuffled batches, as runs train) on
the bench's images. It reports the aggregate images per second of the K members, each member's
share of the time, and the ratio of the separate runs' time to the fused group's. Each way first
runs one untimed epoch; then the ways take turns for `--repeats` epochs and medians are reported.
Last, on a GPU, it prints the group size `train.fuse = "auto"` measures and picks there.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import harness.variants as registry
from harness.cli.bench import BASE, _machine, _sync, _write
from harness.data import loading
from harness.running import fusing
from harness.training import engine, fused

SEED = 2021


def _time(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def run(
    x: np.ndarray,
    y: np.ndarray,
    device: torch.device,
    ks: list[int],
    repeats: int,
    out: Path,
    n_train: int,
    n_val: int,
    say=print,
) -> dict:
    xt, yt = loading.image_tensor(x[: n_train + n_val], device), loading.label_tensor(y[: n_train + n_val], device)
    data = (xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:])
    settings = dataclasses.replace(engine.TrainSettings(**BASE), shuffle=True)
    build = registry.get("baseline").build
    images = n_train + n_val

    def separate(k: int):
        return lambda: [engine.train(build, *data, settings, SEED + i) for i in range(k)]

    def group(k: int):
        return lambda: fused.train_group([fused.Member(build, *data, settings, SEED + i) for i in range(k)])

    ways = {}
    for k in ks:
        ways[f"separate[{k}]"] = separate(k)
        ways[f"fused[{k}]"] = group(k)
    for fn in ways.values():  # one untimed epoch each: lazy imports, kernel choice
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(repeats):  # interleaved, so drift in machine speed hits every way alike
        for name, fn in ways.items():
            seconds[name].append(_time(fn, device))
            say(f"repeat {r + 1}/{repeats} {name:12s} {seconds[name][-1]:.3f} s")
    med = {name: statistics.median(v) for name, v in seconds.items()}
    rows = {
        k: {
            "separate_seconds": med[f"separate[{k}]"],
            "fused_seconds": med[f"fused[{k}]"],
            "separate_images_per_second": k * images / med[f"separate[{k}]"],
            "fused_images_per_second": k * images / med[f"fused[{k}]"],
            "fused_seconds_per_member": med[f"fused[{k}]"] / k,
            "separate_seconds_per_member": med[f"separate[{k}]"] / k,
            "speedup": med[f"separate[{k}]"] / med[f"fused[{k}]"],
        }
        for k in ks
    }
    shape, runtime = (x.shape[3], x.shape[1], x.shape[2]), engine.Runtime()  # N×H×W×C images
    # the rule a run with `--fuse auto` applies here
    chosen, why = fusing.decide("auto", device, shape, 10, settings, runtime)
    # the measurement behind it (cached), none on a CPU
    probe = fusing.probe(device, shape, 10, settings, runtime)[0] or {}
    result = {
        **_machine(device),
        "images_per_epoch": images,
        "repeats": repeats,
        "seconds": seconds,
        "rows": rows,
        "auto_probe_seconds": probe,
        "auto_chooses": chosen,
        "auto_why": why,
    }
    say("")
    say(
        "docs/performance.md rows (| K | K separate runs: s, images/s | fused group: s, images/s | s per member | fused speedup |):"
    )
    for k, row in rows.items():
        say(
            f"| {k} | {row['separate_seconds']:.2f} s, {row['separate_images_per_second']:,.0f} | {row['fused_seconds']:.2f} s, "
            f"{row['fused_images_per_second']:,.0f} | {row['fused_seconds_per_member']:.3f} (separate {row['separate_seconds_per_member']:.3f}) | "
            f"{row['speedup']:.2f}× |"
        )
    if probe:
        say(
            f"train.fuse = auto measures {', '.join(f'K={k}: {v / k * 1000:.1f} ms a member' for k, v in probe.items())} "
            f"against a threshold of {fusing.MARGIN:.0%} of a separate run's, and chooses {chosen} here"
        )
    elif device.type == "cuda":
        say("train.fuse = auto could not measure here (its probe failed), so it does not fuse")
    else:
        say("train.fuse = auto does not fuse on a CPU (these rows are why; docs/performance.md)")
    _write(out, result, say)
    return result
