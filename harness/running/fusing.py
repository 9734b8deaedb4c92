"""Which pairs of a `run` train as one fused group (`train.fuse`), how many to a group, and the
group size `auto` measures. Training a unit, one run or a group, is harness/running/units.py.

Fusing is a runtime setting, like the memory format: a fused run stands for its key
(tests/training/test_fused.py shows fused and separate runs agree within float noise;
tests/running/test_fused_runs.py that a fused run is recorded under its separate run's key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

import harness.variants as registry
from harness.running.assembly import assemble
from harness.running.claims import Claims
from harness.settings import config, designs
from harness.settings.config import RunSpec
from harness.training import checkpoint, engine, fused
from harness.variants.lenet import LeNet

SIZES = (2, 4, 8)  # the group sizes `auto` measures
MARGIN = 0.9  # `auto` fuses only where a member's share of a fused step is under 90% of a separate run's step


def signature(spec: RunSpec, dataset) -> tuple | None:
    """What members of one group must share, or None for a run that trains alone: a network other
    than LeNet, a component that says `fusable=False`, or an optimizer that is not elementwise.
    Runs of LeNet with the tutorial's pieces fuse across variants (dropout p, learning rate and
    weight decay are per member); a run with a component's own pieces fuses with the runs of its own variant."""
    change = registry.get(designs.split_source(spec.variant)[0]).change(spec.model_params)
    if change.architecture is not None or not change.fusable:
        return None
    _, pieces = assemble(spec, dataset)
    try:
        probe = pieces.optimizer([nn.Parameter(torch.zeros(1))], spec.train)
    except Exception:  # noqa: BLE001 - an optimizer that needs more than a list of parameters trains alone
        return None
    if not isinstance(probe, fused.ELEMENTWISE) or len(probe.param_groups) != 1:
        return None
    own = any(getattr(change, f) is not None for f in ("transform", "loss", "optimizer", "schedule"))
    model = tuple(sorted((k, v) for k, v in change.model.items() if k != "dropout"))
    if own:  # only the weight decay may differ: a schedule of its own need not scale every member's rate alike
        return (
            (spec.variant, tuple(sorted(spec.model_params.items()))),
            model,
            dataclasses.replace(spec.train, weight_decay=0.0),
            spec.sources,
            spec.split_seed,
            tuple(sorted(spec.code.items())),
        )
    # LeNet with the tutorial's pieces is all such a run trains, whoever's component set its values
    # (a user component's source is in its key, not in what it trains): the learning rate may differ too.
    return ("lenet", model, fused.shared_settings(spec.train), spec.sources, spec.split_seed)


def plan(
    pairs: list[tuple[str, int]], limit: int, signs: dict, pinned: list[list[tuple[str, int]]] = ()
) -> list[list[tuple[str, int]]]:
    """The pairs as the runner trains them: first the `pinned` groups (a group checkpoint's members),
    then the others in groups of at most `limit` that share a signature (`signs`), in the order of
    their first pairs; a pair without a signature (or with None) is a group of its own."""
    units = [list(u) for u in pinned]
    taken = {p for u in pinned for p in u}
    buckets: dict = {}
    for pair in pairs:
        if pair in taken:
            continue
        key = signs.get(pair) if limit > 1 else None
        if key is None:
            units.append([pair])
            continue
        unit = buckets.get(key)
        if unit is None or len(unit) >= limit:
            unit = buckets[key] = []
            units.append(unit)
        unit.append(pair)
    return units


def decide(
    fuse: int | str,
    device: torch.device,
    image_shape: tuple[int, int, int],
    classes: int,
    settings: engine.TrainSettings,
    runtime: engine.Runtime,
) -> tuple[int, str]:
    """The most members a group takes: 1 with `off`, K with a number. With `auto`: 1 on a CPU, where
    `bench --fused` measured that fusing does not pay (docs/performance.md); on a GPU the size
    `measure` finds fastest there with the run's settings, or 1 where no size beats separate runs
    by 10% (or the measurement itself fails); with why `auto` chose it."""
    if fuse == "off":
        return 1, "off"
    if fuse != "auto":
        return int(fuse), "asked for"
    seconds, why = probe(device, image_shape, classes, settings, runtime)
    return (choose(seconds), "measured on this device") if seconds else (1, why)


def probe(
    device: torch.device,
    image_shape: tuple[int, int, int],
    classes: int,
    settings: engine.TrainSettings,
    runtime: engine.Runtime,
) -> tuple[dict[int, float] | None, str]:
    """What `auto` measures on `device` for runs of these settings (`measure`, once per process) and
    '', or (None, why): on a CPU (not measured: `bench --fused` showed fusing does not pay there) and
    where the measurement raised (an odd image shape, memory, a kernel that fails on this card: the
    error, so that a crash never reads as "fusing does not pay")."""
    if device.type != "cuda":
        return None, "not on a CPU"
    try:
        return measure(
            str(device),
            image_shape,
            classes,
            dataclasses.replace(settings, epochs=1),
            dataclasses.replace(runtime, fuse="off", progress_every=0),
        ), ""
    except Exception as e:  # noqa: BLE001 - a probe that cannot run fuses nothing, and says why
        return (
            None,
            f"its probe failed on this device ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}), so no fusing",
        )


def choose(seconds: dict[int, float]) -> int:
    """The group size with the least time per member-step, if under MARGIN of a separate step (size 1)."""
    best = min(SIZES, key=lambda k: seconds[k] / k)
    return best if seconds[best] / best < MARGIN * seconds[1] else 1


@lru_cache(maxsize=None)
def measure(
    device: str,
    image_shape: tuple[int, int, int],
    classes: int,
    settings: engine.TrainSettings,
    runtime: engine.Runtime,
    steps: int = 24,
) -> dict[int, float]:
    """Seconds of one epoch of `steps` training steps (and one validation batch) of LeNet with the
    run's settings (batch size, precision, memory format, compile, determinism): a separate run
    (size 1) and a fused group of each size in SIZES, on random images on `device`, each timed
    after an untimed warm-up, best of two. Measured once per process."""
    dev = torch.device(device)
    batch = settings.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch * steps, *image_shape), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, classes, (batch * steps,), generator=g).to(dev)

    def build() -> nn.Module:
        return LeNet(image_shape, classes)

    def timed(fn) -> float:
        fn()
        best = float("inf")
        for _ in range(2):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            best = min(best, time.perf_counter() - start)
        return best

    rng_state = torch.get_rng_state()
    out = {1: timed(lambda: engine.train(build, x, y, x[:batch], y[:batch], settings, 0, runtime=runtime))}
    for k in SIZES:
        members = [fused.Member(build, x, y, x[:batch], y[:batch], settings, s) for s in range(k)]
        out[k] = timed(lambda members=members: fused.train_group(members, runtime=runtime))
    torch.set_rng_state(rng_state)
    return out


def saved_groups(folder, by_key: dict[str, tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """The groups whose checkpoints are in `folder` and whose members are all among these pairs
    (`by_key`: run key -> pair), in their checkpoints' order: they resume as they were, whatever
    `train.fuse` says now."""
    units, taken = [], set()
    for path in sorted(folder.glob("group-*.pt")) if folder.is_dir() else []:
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile by the runner that finished it
            continue
        keys = _saved_keys(str(path), stat.st_mtime_ns, stat.st_size)
        if keys and all(k in by_key for k in keys) and not taken & set(keys):
            units.append([by_key[k] for k in keys])
            taken |= set(keys)
    return units


@lru_cache(maxsize=256)
def _saved_keys(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """The member keys a group checkpoint names, read once per version of the file (the runner
    plans again every second while it waits for another runner's pairs)."""
    saved = checkpoint.load_snapshot(Path(path))
    keys = saved.get("keys") if isinstance(saved, dict) else None
    return tuple(keys) if isinstance(keys, list) and len(keys) > 1 else ()


def units(runner, pairs: list[tuple[str, int]]) -> list[list[tuple[tuple[str, int], RunSpec]]]:
    """The runner's pairs as it trains them: alone, or in fused groups as `train.fuse` allows. A
    group with a checkpoint resumes as that group; a pair with a checkpoint of its own (a separate
    run interrupted) resumes alone."""
    specs = {p: config.resolve(runner.cfg, *p) for p in pairs}
    ds = runner.data.source.dataset
    folder = runner.cfg.checkpoint_folder
    pinned = saved_groups(folder, {runner.key(s): p for p, s in specs.items()})
    taken = {p for u in pinned for p in u}
    signs = {}
    if runner.cfg.runtime.fuse != "off":
        signs = {
            p: signature(s, ds)
            for p, s in specs.items()
            if p not in taken and not (folder / f"{runner.key(s)}.pt").exists()
        }
    counts = Counter(v for v in signs.values() if v is not None)
    could_fuse = bool(counts) and max(counts.values()) > 1  # two runs at least share a signature
    most, why = (
        decide(
            runner.cfg.runtime.fuse, runner.device, ds.image_shape, ds.num_classes, runner.cfg.train, runner.cfg.runtime
        )
        if could_fuse
        else (1, "")
    )
    if runner.cfg.runtime.fuse == "auto" and could_fuse:
        runner.console.line(f"train.fuse = auto: groups of up to {most} ({why})")
    return [[(p, specs[p]) for p in unit] for unit in plan(pairs, most, signs, pinned)]


def claim_all(runner, claims: Claims, unit: list) -> list:
    """Claim every pair of `unit` or none (a group never trains a part of itself): the unit, or []."""
    held = []
    for pair, spec in unit:
        if not claims.acquire(runner.key(spec)):
            for _, s in held:
                claims.release(runner.key(s))
            return []
        held.append((pair, spec))
    return held


def title(held: list, pairs: list) -> str:
    """The console's header of a pair or a group: what trains, and where it is in the command's pairs."""
    places = [pairs.index(p) + 1 for p, _ in held]
    if len(held) == 1:
        (variant, seed), _ = held[0]
        return f"{variant} seed {seed} ({places[0]}/{len(pairs)})"
    names = ", ".join(f"{spec.variant} seed {spec.seed}" for _, spec in held)
    return f"fused group of {len(held)}: {names} ({', '.join(map(str, places))}/{len(pairs)})"


def group_name(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
