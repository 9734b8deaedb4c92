"""Runs every (variant, seed) pair of an experiment: one engine, one split, one store.

One failing run does not stop the others. Each run is tracked as a child of its variant's parent
run; after the runs the report is rebuilt from the store.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import variants as registry
from harness import config as config_mod
from harness import data as data_mod
from harness import checkpoint, engine, evaluation, faults, provenance
from harness.config import ExperimentConfig, RunSpec
from harness.console import Console, table
from harness.errors import Terminated, UsageError


@dataclass
class Outcome:
    variant: str
    seed: int
    status: str  # FINISHED, FAILED or KILLED
    best_val_acc: float = math.nan
    selected_epoch: int = 0
    final_val_acc: float = math.nan
    test_acc: float = math.nan
    seconds: float = 0.0
    error: str = ""
    note: str = ""
    parent_id: str = ""


@dataclass(frozen=True)
class Prepared:
    """What every run of an invocation shares, made once before the first run."""

    cfg: ExperimentConfig
    uri: str
    device: torch.device
    split: data_mod.Split
    data: data_mod.DeviceData
    reports_dir: Path
    checkpoint_dir: Path
    rerun: bool = False
    arrays: data_mod.Arrays | None = None  # the dataset as loaded (numpy), for executors that ship it


def prepare(cfg: ExperimentConfig, rerun: bool = False, with_test: bool = True, arrays: data_mod.Arrays | None = None) -> Prepared:
    """Check everything that can be wrong before any run or file is created, then load the data
    (or take `arrays` already loaded, as a Ray worker does)."""
    from harness import tracking

    uri = tracking.resolve_uri(cfg.tracking_uri)
    device = provenance.resolve_device(cfg.train.device)
    reports_dir = Path(cfg.reports_dir) / cfg.name
    check_writable(reports_dir, "reports_dir")
    checkpoint_dir = Path(cfg.checkpoint_dir) / cfg.name
    check_writable(checkpoint_dir, "checkpoint_dir")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    check_engine_settings(cfg.train, device)
    engine.set_determinism(cfg.train.determinism)  # before the first run records how deterministic it is
    if arrays is None:
        arrays = data_mod.load(data_mod.data_dir(cfg.data.dir))
    split = data_mod.make_split(arrays.y_train, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed)
    return Prepared(cfg, uri, device, split, data_mod.to_device(arrays, split, device, with_test), reports_dir, checkpoint_dir, rerun, arrays)


def check_writable(folder: Path, field: str) -> None:
    """The nearest existing ancestor of `folder` must be a writable directory."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not _writable(probe):
        raise UsageError(f"{field}: cannot create or write {str(folder)!r} ({str(probe)!r} is not a writable directory)")


def _writable(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def check_engine_settings(t: config_mod.TrainConfig, device: torch.device) -> None:
    """Settings that are valid values but not on this device or machine."""
    if t.compile == "reduce-overhead" and device.type != "cuda":
        raise UsageError(f"train.compile: 'reduce-overhead' captures CUDA graphs and needs a CUDA device, not {device}; use off or default")
    if t.compile != "off" and device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        raise UsageError(f"train.compile: {t.compile!r} on the CPU needs a C++ compiler (g++ or $CXX) and none was found; use off")
    if t.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"train.precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp32")


# How a run is executed, not what it trains: these change speed and float rounding only, so a run
# may resume on another device or with other kernels under the same key.
EXECUTION_ONLY = ("seed", "train.threads", "train.device", "train.memory_format", "train.compile", "train.determinism")


def variant_key(spec: RunSpec, split_fingerprint: str) -> str:
    """Identifies a variant's configuration: everything it trains with but the seed, plus the split."""
    payload = {k: v for k, v in spec.flat().items() if k not in EXECUTION_ONLY}
    payload["split"] = split_fingerprint
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_key(vkey: str, seed: int) -> str:
    """Identifies one run: experiment, variant, configuration and split (in `vkey`), and the seed."""
    return f"{vkey}-{seed}"


class LostClaim(RuntimeError):
    pass


def run_experiment(p: Prepared, console: Console) -> list[Outcome]:
    """Run every (variant, seed) pair once. Pairs another live runner holds are waited for; pairs
    whose holder died are taken over when its lease runs out."""
    from harness import tracking
    from harness.claims import Claims

    tracker = tracking.Tracker(p.uri, p.cfg.name, p.checkpoint_dir)
    claims = Claims(p.checkpoint_dir / "claims.sqlite")
    try:
        _sweep_dangling(tracker, claims, console)
        tags = common_tags(p)
        pairs = [(v, s) for v in p.cfg.variants for s in p.cfg.seeds]
        outcomes: dict[tuple[str, int], Outcome] = {}
        pending, waited = pairs, False
        while pending:
            deferred = []
            for variant, seed in pending:
                spec = config_mod.resolve(p.cfg, variant, seed)
                key = run_key(variant_key(spec, p.split.fingerprint), seed)
                if not claims.acquire(key):
                    deferred.append((variant, seed))
                    continue
                try:
                    console.header(f"{variant} seed {seed} ({pairs.index((variant, seed)) + 1}/{len(pairs)})")
                    outcomes[(variant, seed)] = run_one(p, tracker, claims, spec, key, tags, console)
                finally:
                    claims.release(key)
            if deferred and not waited:
                console.line(f"waiting for {len(deferred)} run(s) that another runner is training")
                waited = True
            if deferred:
                time.sleep(1.0)
            pending = deferred
        return [outcomes[pair] for pair in pairs]
    finally:
        claims.close()


def common_tags(p: Prepared) -> dict[str, str]:
    """The tags every run of this invocation carries."""
    return {
        "harness.experiment": p.cfg.name,
        "harness.baseline": p.cfg.baseline,
        "harness.config_hash": config_mod.config_hash(p.cfg),
        "harness.split_fingerprint": p.split.fingerprint,
        "harness.git_commit": provenance.git_commit(),
        "harness.command": provenance.command_line(),
        **{f"harness.version.{k}": v for k, v in provenance.versions().items()},
    }


def run_in_processes(p: Prepared, argv: list[str], per_device: int, console: Console) -> list[Outcome]:
    """Run the same command in several processes at once: `per_device` per GPU, each pinned to its
    GPU, or `per_device` on the CPU, sharing its cores. The claims hand every key to exactly one
    of them; the outcomes are then read from the store."""
    import os
    import signal
    import subprocess
    import sys

    if p.device.type == "cuda":
        gpus = torch.cuda.device_count() if p.device.index is None else 1
        first = p.device.index or 0
        slots = [{"CUDA_VISIBLE_DEVICES": str(first + i % gpus)} for i in range(gpus * per_device)]
        extra = ["--device", "cuda"]
    else:
        threads = max(1, (os.cpu_count() or 1) // per_device)
        slots = [{} for _ in range(per_device)]
        extra = ["--set", f"train.threads={threads}"]
    console.line(f"{len(slots)} processes, {per_device} per device")
    child_args = _without_flag(argv, "--jobs-per-device")
    procs = [subprocess.Popen([sys.executable, "-m", "harness", *child_args, *extra], env={**os.environ, **slot}) for slot in slots]
    try:
        for proc in procs:
            proc.wait()
    except (KeyboardInterrupt, Terminated):
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        raise
    return collect(p)


def _without_flag(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def collect(p: Prepared) -> list[Outcome]:
    """The outcome of every (variant, seed) pair as the store has it, without training anything."""
    from harness import tracking

    tracker = tracking.Tracker(p.uri, p.cfg.name, p.checkpoint_dir)
    outcomes = []
    for variant in p.cfg.variants:
        for seed in p.cfg.seeds:
            key = run_key(variant_key(config_mod.resolve(p.cfg, variant, seed), p.split.fingerprint), seed)
            runs = tracker.runs_with_key(key)
            done = [r for r in runs if r.status == "FINISHED"]
            if done:
                outcomes.append(_finished_outcome(variant, seed, done[-1]))
            else:
                status = runs[-1].status if runs else "FAILED"
                outcomes.append(Outcome(variant, seed, status if status != "RUNNING" else "KILLED",
                                        error="see its run in the store" if runs else "never started",
                                        parent_id=runs[-1].parent_id if runs else ""))
    return outcomes


def _finished_outcome(variant: str, seed: int, r, note: str = "") -> Outcome:
    """The outcome of a finished run as the store holds it (a tracking.KeyedRun)."""
    m = r.metrics
    return Outcome(variant, seed, "FINISHED", m.get("best_val_acc", math.nan), int(m.get("selected_epoch", 0)),
                   m.get("final_val_acc", math.nan), m.get("test_acc", math.nan), 0.0, note=note, parent_id=r.parent_id)


def _sweep_dangling(tracker, claims, console: Console) -> None:
    """A run the store says is RUNNING but whose key no live runner holds was left by a process
    that died: mark it KILLED now (a later pair with its key resumes it from its checkpoint)."""
    for run_id, key in tracker.running_seed_runs():
        if key and claims.acquire(key):
            try:
                tracker.set_tags(run_id, {"harness.error": "its process died without closing it (found by a later runner)"})
                tracker.finish(run_id, "KILLED")
                console.line(f"marked run {run_id} KILLED: its process had died while it was RUNNING")
            finally:
                claims.release(key)


def variant_parent(p: Prepared, tracker, spec: RunSpec, common_tags: dict[str, str]) -> tuple[str, dict, dict]:
    """The variant's parent run (created on first use), and the tags and params its runs share."""
    env = provenance.determinism(p.device)
    tags = {**common_tags, **{f"harness.env.{k}": v for k, v in env.items()}, "harness.device": env["device"]}
    shared_params = {k: v for k, v in spec.flat().items() if k != "seed"}
    shared_params.update({"data.split": p.cfg.data.split, "data.train_ratio": p.cfg.data.train_ratio, "data.split_seed": p.cfg.data.split_seed})
    parent_id = tracker.parent(spec.variant, variant_key(spec, p.split.fingerprint), tags, shared_params)
    return parent_id, tags, shared_params


def run_one(p: Prepared, tracker, claims, spec: RunSpec, key: str, common_tags: dict[str, str], console: Console) -> Outcome:
    """Skip a finished key, resume an interrupted one from its checkpoint, or start a new run."""
    variant, seed = spec.variant, spec.seed
    ckpt_path = p.checkpoint_dir / f"{key}.pt"
    existing = tracker.runs_with_key(key)
    finished = [r for r in existing if r.status == "FINISHED"]
    if finished and not p.rerun:
        r = finished[-1]
        checkpoint.remove(ckpt_path)  # left behind if a process died right after finishing
        console.line(f"skip {variant} seed {seed}: already finished (run {r.run_id}); --rerun trains it again")
        return _finished_outcome(variant, seed, r, note="skipped: already finished")

    parent_id, tags, shared_params = variant_parent(p, tracker, spec, common_tags)

    snapshot, run_id = None, None
    unfinished = [r for r in existing if r.status != "FINISHED"]
    if unfinished and not p.rerun:
        candidate = unfinished[-1]
        saved = checkpoint.load(ckpt_path)
        if saved is not None and saved.get("run_id") == candidate.run_id:
            run_id, snapshot = candidate.run_id, saved
        elif not tracker.logged_epochs(candidate.run_id):
            run_id = candidate.run_id  # died before its first checkpoint: start over in the same run
        for stale in unfinished:
            if stale.run_id != run_id and stale.status == "RUNNING":
                tracker.finish(stale.run_id, "KILLED")
    if run_id is None:
        checkpoint.remove(ckpt_path)
        run_id = tracker.start_seed_run(parent_id, variant, seed, {**tags, "harness.run_key": key}, {**shared_params, "seed": seed})
    else:
        tracker.reopen(run_id)
        tracker.set_tags(run_id, {"harness.error": ""})
        where = f"after epoch {snapshot['epoch']}" if snapshot else "from the start"
        console.line(f"resume {variant} seed {seed} {where} in run {run_id}")

    start = time.perf_counter()
    try:
        result, metrics = train_and_evaluate(p, spec, tracker, claims, key, run_id, ckpt_path, snapshot, console)
        tracker.finish(run_id, "FINISHED")
        checkpoint.remove(ckpt_path)
        if p.rerun:
            for old in finished:
                tracker.delete(old.run_id)  # one finished run per key, the newest
        tracker.update_aggregates(parent_id)
        return Outcome(variant, seed, "FINISHED", metrics["best_val_acc"], result.selected_epoch,
                       result.history[-1].val_acc, metrics["test_acc"], time.perf_counter() - start, parent_id=parent_id)
    except (KeyboardInterrupt, Terminated) as e:
        tracker.set_tags(run_id, {"harness.error": f"interrupted ({type(e).__name__}); resumes from its last checkpoint"})
        tracker.finish(run_id, "KILLED")
        raise
    except Exception as e:  # noqa: BLE001 - one failing run must not stop the others
        reason = f"{type(e).__name__}: {e}"
        if isinstance(e, engine.NonFiniteLoss):
            reason = f"non-finite loss in {variant} seed {seed}: {e}"
        console.line(f"FAILED {variant} seed {seed}: {reason}")
        tracker.set_tags(run_id, {"harness.error": reason[:5000]})
        tracker.finish(run_id, "FAILED")
        return Outcome(variant, seed, "FAILED", seconds=time.perf_counter() - start, error=reason, parent_id=parent_id)


EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


def engine_config(t: config_mod.TrainConfig, progress_every: int = 0) -> engine.EngineConfig:
    """Every training setting the engine has a field for (device and threads are applied by `prepare`)."""
    shared = {f.name for f in dataclasses.fields(engine.EngineConfig)} & {f.name for f in dataclasses.fields(t)}
    return engine.EngineConfig(**{k: getattr(t, k) for k in shared}, progress_every=progress_every)


def epoch_metrics(s: engine.EpochStats) -> dict[str, float]:
    return {"train_loss": s.train_loss, "train_acc": s.train_acc, "val_loss": s.val_loss, "val_acc": s.val_acc,
            "gap_acc": s.train_acc - s.val_acc, "epoch_seconds": s.seconds}


def train_and_evaluate(p: Prepared, spec: RunSpec, tracker, claims, key: str, run_id: str, ckpt_path: Path,
                       snapshot: dict | None, console: Console) -> tuple[engine.Result, dict[str, float]]:
    t = spec.train
    ecfg = engine_config(t, 1 if faults.wants("step") else console.progress_every)
    if snapshot is not None:  # epochs checkpointed but not yet logged when the last process died
        logged = tracker.logged_epochs(run_id)
        for h in snapshot["history"]:
            if h["epoch"] not in logged:
                tracker.log_metrics(run_id, epoch_metrics(engine.EpochStats(**h)), step=h["epoch"])

    def on_progress(progress: engine.Progress) -> None:
        if progress.phase != "epoch":
            console.progress(progress)
            faults.point("step")
            return
        # Checkpoint first, then log: an epoch's metrics are in the store only once its checkpoint
        # is durable, so a restart never logs an epoch twice.
        if not claims.holds(key):
            raise LostClaim(f"another runner took over {spec.variant} seed {spec.seed}; this one stops")
        checkpoint.save(ckpt_path, {**progress.snapshot, "run_id": run_id, "key": key})
        faults.point("checkpointed")
        tracker.log_metrics(run_id, epoch_metrics(progress.stats), step=progress.epoch)
        faults.point("logged")

    v = registry.get(spec.variant)
    d = p.data
    model, result = engine.train(lambda: v.build(**spec.model_params), d.x_train, d.y_train, d.x_val, d.y_val,
                                 ecfg, spec.seed, on_progress, resume=snapshot)

    # The test set is read only now, once for the selected weights and once for the last.
    selected = engine.copy_weights(model, result.selected_state)
    test_loss, test_acc, pred = engine.evaluate(selected, d.x_test, d.y_test, ecfg)
    last_loss, last_acc, _ = engine.evaluate(model, d.x_test, d.y_test, ecfg)
    cm = evaluation.confusion_matrix(d.y_test.cpu().numpy(), pred.cpu().numpy(), data_mod.NUM_CLASSES)
    scores = evaluation.per_class(cm)
    h = result.history
    best = h[result.selected_epoch - 1]
    metrics = {
        "selected_epoch": float(result.selected_epoch),
        "best_val_acc": max(s.val_acc for s in h),
        "best_val_acc_epoch": float(max(h, key=lambda s: s.val_acc).epoch),
        "min_val_loss": min(s.val_loss for s in h),
        "min_val_loss_epoch": float(min(h, key=lambda s: s.val_loss).epoch),
        "selected_val_acc": best.val_acc,
        "final_val_acc": h[-1].val_acc,
        "final_val_loss": h[-1].val_loss,
        "final_train_acc": h[-1].train_acc,
        "final_gap_acc": h[-1].train_acc - h[-1].val_acc,
        "epoch_seconds_mean": float(np.mean([s.seconds for s in h])),
        "test_acc": test_acc,
        "test_loss": test_loss,
        "test_acc_last": last_acc,
        "test_loss_last": last_loss,
        "n_params": float(sum(p.numel() for p in model.parameters())),
        **{f"test_f1_{name}": float(scores["f1"][i]) for i, name in enumerate(data_mod.CLASSES)},
    }
    if "test_acc" not in tracker.runs_metrics(run_id):  # a restart after the final log logs nothing twice
        tracker.log_metrics(run_id, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.toml").write_text(config_mod.to_toml(p.cfg) + run_section(spec))
        evaluation.write_confusion_csv(cm, data_mod.CLASSES, folder / "confusion_matrix.csv")
        evaluation.write_per_class_csv(scores, data_mod.CLASSES, folder / "per_class.csv")
        torch.save({"last": model.state_dict(), "selected": result.selected_state, "selected_epoch": result.selected_epoch}, folder / "model.pt")
        from harness import plots

        curves = {k: [getattr(s, k) for s in h] for k in EPOCH_KEYS}
        plots.run_curves(curves, f"{spec.variant}, seed {spec.seed}", folder / "learning_curves.png")
        plots.confusion_matrices({f"{spec.variant} seed {spec.seed}": cm}, data_mod.CLASSES, folder / "confusion_matrix.png")
        tracker.log_artifacts(run_id, folder)
    return result, metrics


def run_section(spec: RunSpec) -> str:
    lines = ["", "# What this run used, after the variant's and [params] overrides", "[run]"]
    lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in spec.flat().items()]
    return "\n".join(lines) + "\n"


def summary(outcomes: list[Outcome]) -> str:
    def num(x: float, fmt: str = "{:.2f}") -> str:
        return fmt.format(x) if math.isfinite(x) else "-"

    rows = [
        [o.variant, str(o.seed), o.status + (" (skipped)" if o.note else ""), num(o.best_val_acc), str(o.selected_epoch or "-"), num(o.final_val_acc), num(o.test_acc), f"{o.seconds:.1f}s"]
        for o in outcomes
    ]
    text = table(["variant", "seed", "status", "best val acc", "epoch of best", "final val acc", "test acc", "time"], rows)
    failed = [o for o in outcomes if o.status != "FINISHED"]
    text += f"\n{len(outcomes) - len(failed)} of {len(outcomes)} runs finished"
    if failed:
        text += f"; {len(failed)} failed: " + "; ".join(f"{o.variant} seed {o.seed} ({o.error})" for o in failed)
    return text
