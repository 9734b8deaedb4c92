"""Fused groups in the runner (`train.fuse`): which pairs may train as one program, how many to a
group, and training a group (harness/training/fused.py) so that each member is recorded exactly
as a separate run is: its own run key and claim, its own MLflow child run with every epoch's
metrics, its test set, artifacts and model.

A group shares one checkpoint, named by its members' keys, holding every member; a group killed at
any point resumes from it with the same bits as one never interrupted. Fusing is a runtime setting,
like the memory format: a fused run stands for its key (tests/test_fused.py shows fused and
separate runs agree within float noise) and carries the tags `harness.fused` (its group's size)
and `harness.fused_group`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from functools import lru_cache

import torch
from torch import nn

import variants as registry
from harness.base import faults
from harness.base.errors import Terminated
from harness.running.assembly import assemble
from harness.running.claims import Claims
from harness.running.outcomes import Outcome
from harness.settings import config, designs
from harness.settings.config import RunSpec
from harness.tracking import names, store
from harness.training import checkpoint, engine, fused
from variants.lenet import LeNet

SIZES = (2, 4, 8)  # the group sizes `auto` measures
MARGIN = 0.9  # `auto` fuses only where a member's share of a fused step is under 90% of a separate run's step


def signature(spec: RunSpec, dataset) -> tuple | None:
    """What members of one group must share, or None for a run that trains alone: a network other
    than LeNet, a component that says `fusable=False`, or an optimizer that is not elementwise.
    Runs of LeNet with the tutorial's pieces fuse across variants (dropout p and weight decay are
    per member); a run with a component's own pieces fuses with the runs of its own variant."""
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
    return ((spec.variant, tuple(sorted(spec.model_params.items()))) if own else "lenet", model,
            dataclasses.replace(spec.train, weight_decay=0.0), spec.sources, spec.split_seed, tuple(sorted(spec.code.items())))


def plan(pairs: list[tuple[str, int]], specs: dict, limit: int, sign, alone) -> list[list[tuple[str, int]]]:
    """The pairs in groups of at most `limit` that share a signature (`sign(spec)`), in the order of
    their first pairs; a pair whose signature is None, or `alone(spec)`, is a group of its own."""
    if limit <= 1:
        return [[p] for p in pairs]
    buckets: dict = {}
    units: list[list[tuple[str, int]]] = []
    for pair in pairs:
        spec = specs[pair]
        key = None if alone(spec) else sign(spec)
        if key is None:
            units.append([pair])
            continue
        unit = buckets.get(key)
        if unit is None or len(unit) >= limit:
            unit = buckets[key] = []
            units.append(unit)
        unit.append(pair)
    return units


def limit(fuse: int | str, device: torch.device, image_shape: tuple[int, int, int], classes: int, batch: int) -> int:
    """The most members a group takes: 1 with `off`, K with a number. With `auto`: 1 on a CPU, where
    `bench --fused` measured that fusing does not pay (docs/performance.md); on a GPU the size
    `measure` finds fastest there, or 1 where no size beats separate runs by 10%."""
    if fuse == "off":
        return 1
    if fuse != "auto":
        return int(fuse)
    if device.type != "cuda":
        return 1
    return choose(measure(str(device), image_shape, classes, batch))


def choose(seconds: dict[int, float]) -> int:
    """The group size with the least time per member-step, if under MARGIN of a separate step (size 1)."""
    best = min(SIZES, key=lambda k: seconds[k] / k)
    return best if seconds[best] / best < MARGIN * seconds[1] else 1


@lru_cache(maxsize=None)
def measure(device: str, image_shape: tuple[int, int, int], classes: int, batch: int, steps: int = 24) -> dict[int, float]:
    """Seconds of one epoch of `steps` training steps (and one validation batch) of LeNet: a
    separate run (size 1) and a fused group of each size in SIZES, on random images on `device`,
    each timed after an untimed warm-up, best of two. Measured once per process."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch * steps, *image_shape), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, classes, (batch * steps,), generator=g).to(dev)
    settings = engine.TrainSettings(epochs=1, batch_size=batch, eval_batch_size=batch)

    def build() -> nn.Module:
        return LeNet(image_shape, classes)

    def timed(fn) -> float:
        fn()
        best = float("inf")
        for _ in range(2):
            engine.seed_everything(0)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            best = min(best, time.perf_counter() - start)
        return best

    rng_state = torch.get_rng_state()
    out = {1: timed(lambda: engine.train(build, x, y, x[:batch], y[:batch], settings, 0))}
    for k in SIZES:
        members = [fused.Member(build, x, y, x[:batch], y[:batch], settings, s) for s in range(k)]
        out[k] = timed(lambda members=members: fused.train_group(members))
    torch.set_rng_state(rng_state)
    return out


def units(runner, pairs: list[tuple[str, int]]) -> list[list[tuple[tuple[str, int], RunSpec]]]:
    """The runner's pairs as it trains them: alone, or in fused groups as `train.fuse` allows. A
    pair with a checkpoint of its own (a separate run interrupted) resumes alone."""
    specs = {p: config.resolve(runner.cfg, *p) for p in pairs}
    ds = runner.data.source.dataset
    most = limit(runner.cfg.runtime.fuse, runner.device, ds.image_shape, ds.num_classes, runner.cfg.train.batch_size) if len(pairs) > 1 else 1
    units = plan(pairs, specs, most, lambda s: signature(s, ds), lambda s: (runner.cfg.checkpoint_folder / f"{runner.key(s)}.pt").exists())
    return [[(p, specs[p]) for p in unit] for unit in units]


def title(held: list, pairs: list) -> str:
    """The console's header of a pair or a group: what trains, and where it is in the command's pairs."""
    places = [pairs.index(p) + 1 for p, _ in held]
    if len(held) == 1:
        (variant, seed), _ = held[0]
        return f"{variant} seed {seed} ({places[0]}/{len(pairs)})"
    return f"fused group of {len(held)}: {_names(held)} ({', '.join(map(str, places))}/{len(pairs)})"


def group_name(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def run_group(runner, held: list[tuple[tuple[str, int], RunSpec]], claims: Claims) -> dict[tuple[str, int], Outcome]:
    """Train these claimed pairs as one fused group; a finished one is skipped. With fewer than two
    left the pair trains as a separate run. Returns each pair's outcome."""
    out: dict[tuple[str, int], Outcome] = {}
    folder = runner.cfg.checkpoint_folder
    members = []  # (pair, spec, key, existing runs, finished runs)
    for pair, spec in held:
        key = runner.key(spec)
        existing = runner.tracker.runs_with_key(key)
        done = [r for r in existing if r.status == "FINISHED"]
        members.append((pair, spec, key, existing, done))
    live = [m for m in members if not (m[4] and not runner.rerun)]
    whole = folder / f"group-{group_name([m[2] for m in members])}.pt"
    trained = members if len(live) < len(members) and live and whole.exists() else live  # a group killed while recording resumes whole
    live_pairs = {m[0] for m in live}
    for pair, spec, *_ in members:
        if pair not in live_pairs or len(trained) < 2:  # finished (skipped), or the one left to train
            out[pair] = runner.run_one(spec, claims)
    if len(trained) < 2:
        return out
    return {**out, **_train(runner, trained, live_pairs, claims)}


def _open(runner, trained: list, live_pairs: set, ckpt) -> tuple[list[str], list[str], dict | None]:
    """Each member's parent and run, and the group's snapshot when its checkpoint matches the
    members' interrupted runs (else every member opens as a separate run would: a new run, or
    its interrupted run started over; `open_run` sees the group's checkpoint as none of its own)."""
    parents = [runner.parent(spec) for _, spec, *_ in trained]
    saved = checkpoint.load_snapshot(ckpt)
    if saved is not None and saved.get("keys") == [m[2] for m in trained]:
        candidates = {}
        for pair, spec, key, existing, done in trained:
            since = done[-1].start_time if done else -1
            unfinished = [r for r in existing if r.status != "FINISHED" and r.start_time > since]
            candidates[key] = unfinished[-1].run_id if unfinished else None
        if all(candidates[m[2]] == saved["run_ids"][i] for i, m in enumerate(trained) if m[0] in live_pairs):
            for m in trained:
                if m[0] in live_pairs:
                    runner.tracker.reopen(candidates[m[2]])
                    runner.tracker.set_tags(candidates[m[2]], {"harness.error": ""})
            runner.console.line(f"resume the fused group of {_names(trained)} after epoch {saved['epoch']}")
            return [p for p, _ in parents], list(saved["run_ids"]), saved
    run_ids = []
    for (pair, spec, key, existing, done), (parent_id, shared) in zip(trained, parents):
        run_ids.append(runner.open_run(spec, key, ckpt, existing, done, parent_id, shared)[0] if pair in live_pairs else "")
    return [p for p, _ in parents], run_ids, None


def _names(trained: list) -> str:
    return ", ".join(f"{spec.variant} seed {spec.seed}" for _, spec, *_ in trained)


def _train(runner, trained: list, live_pairs: set, claims: Claims) -> dict[tuple[str, int], Outcome]:
    keys = [m[2] for m in trained]
    name = group_name(keys)
    ckpt = runner.cfg.checkpoint_folder / f"group-{name}.pt"
    parents, run_ids, snapshot = _open(runner, trained, live_pairs, ckpt)
    live_ids = {run_ids[i] for i, m in enumerate(trained) if m[0] in live_pairs}
    for run_id in live_ids:
        runner.tracker.set_tags(run_id, {"harness.fused": str(len(trained)), "harness.fused_group": name})
    logged = {rid: runner.tracker.logged_epochs(rid) if snapshot is not None else set() for rid in live_ids}
    if snapshot is not None:  # epochs checkpointed but not yet logged when the last process died
        for rid, saved in zip(run_ids, snapshot["members"]):
            for h in saved["history"] if rid in live_ids else []:
                if h["epoch"] not in logged[rid]:
                    runner.tracker.log_metrics(rid, names.epoch_metrics(engine.EpochStats(**h)), step=h["epoch"])
    specs = [m[1] for m in trained]
    datas = [runner.splits.data_for(s.seed, s.split_seed) for s in specs]
    runner.console.start_run(f"fused group of {len(trained)}", sum(len(d.tensors.y_train) + len(d.tensors.y_val) for d in datas),
                             snapshot["epoch"] if snapshot else 0)

    def on_progress(progress: engine.Progress) -> None:
        if progress.phase != "epoch":
            runner.console.progress(progress)
            faults.point("step")
            return
        if not all(claims.holds(m[2]) for m in trained if m[0] in live_pairs):
            raise RuntimeError(f"another runner took over a member of the fused group of {_names(trained)}; this one stops")
        runner.console.epoch_done(progress.epoch, progress.epochs, next((s.seconds for s in progress.members if s), 0.0))
        checkpoint.save(ckpt, {**progress.snapshot, "run_ids": run_ids, "keys": keys})
        faults.point("checkpointed")
        for rid, stats in zip(run_ids, progress.members):
            if stats is not None and rid in live_ids and progress.epoch not in logged[rid]:
                runner.tracker.log_metrics(rid, names.epoch_metrics(stats), step=progress.epoch)
        faults.point("logged")

    build_pieces = [assemble(s, d.source.dataset) for s, d in zip(specs, datas)]
    group = [fused.Member(b, d.tensors.x_train, d.tensors.y_train, d.tensors.x_val, d.tensors.y_val, s.train, s.seed, s.sources)
             for (b, _), d, s in zip(build_pieces, datas, specs)]
    runtime = dataclasses.replace(runner.cfg.runtime, progress_every=1 if faults.wants("step") else runner.console.progress_every)
    start = time.perf_counter()
    try:
        results = fused.train_group(group, on_progress, snapshot, runtime, build_pieces[0][1])
    except (KeyboardInterrupt, Terminated, SystemExit) as e:
        for i in range(len(trained)):
            if run_ids[i] in live_ids:
                runner.tracker.set_tags(run_ids[i], {"harness.error": f"interrupted ({type(e).__name__}); its fused group resumes from its last checkpoint"})
                runner.tracker.finish(run_ids[i], "KILLED")
        for parent_id in set(parents):
            try:
                runner.tracker.update_aggregates(parent_id)
            except store.StoreError:
                pass
        raise
    except store.StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - a failing group must not stop the others
        results = [e] * len(trained)
    out = {}
    for (pair, spec, key, existing, done), rid, parent_id, result in zip(trained, run_ids, parents, results):
        if rid not in live_ids:
            continue
        if isinstance(result, Exception):
            reason = f"non-finite loss in {spec.variant} seed {spec.seed}: {result}" if isinstance(result, engine.NonFiniteLoss) \
                else f"{type(result).__name__}: {result}"
            runner.console.run_done(f"FAILED {spec.variant} seed {spec.seed}: {reason}")
            runner.tracker.set_tags(rid, {"harness.error": reason[:5000]})
            runner.tracker.finish(rid, "FAILED")
            out[pair] = Outcome(spec.variant, spec.seed, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=parent_id)
        else:
            out[pair] = runner.record(spec, rid, parent_id, runner.cfg.checkpoint_folder / f"{key}.pt", done, *result, start)
            faults.point("recorded")
    checkpoint.remove(ckpt)  # only once every member is recorded: a kill before this resumes the whole group
    return out
