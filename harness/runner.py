"""Runs every (variant, seed) pair of an experiment: one engine, one split, one store.

One failing run does not stop the others. Each run is tracked as a child of its variant's parent
run; after the runs the report is rebuilt from the store.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import variants as registry
from harness import config as config_mod
from harness import data as data_mod
from harness import engine, evaluation, provenance
from harness.config import ExperimentConfig, RunSpec
from harness.console import Console, table
from harness.errors import UsageError


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


@dataclass(frozen=True)
class Prepared:
    """What every run of an invocation shares, made once before the first run."""

    cfg: ExperimentConfig
    uri: str
    device: torch.device
    split: data_mod.Split
    data: data_mod.DeviceData
    reports_dir: Path


def prepare(cfg: ExperimentConfig) -> Prepared:
    """Check everything that can be wrong before any run or file is created, then load the data."""
    from harness import tracking

    uri = tracking.resolve_uri(cfg.tracking_uri)
    device = provenance.resolve_device(cfg.train.device)
    reports_dir = Path(cfg.reports_dir) / cfg.name
    check_writable(reports_dir, "reports_dir")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    engine.set_determinism()  # before the first run records how deterministic it is
    arrays = data_mod.load(data_mod.data_dir(cfg.data.dir))
    split = data_mod.make_split(arrays.y_train, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed)
    return Prepared(cfg, uri, device, split, data_mod.to_device(arrays, split, device), reports_dir)


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


def variant_key(spec: RunSpec, split_fingerprint: str) -> str:
    """Identifies a variant's configuration: everything but the seed, plus the split."""
    payload = {k: v for k, v in spec.flat().items() if k != "seed"}
    payload["split"] = split_fingerprint
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_experiment(p: Prepared, console: Console) -> list[Outcome]:
    from harness import tracking

    tracker = tracking.Tracker(p.uri, p.cfg.name)
    common_tags = {
        "harness.experiment": p.cfg.name,
        "harness.baseline": p.cfg.baseline,
        "harness.config_hash": config_mod.config_hash(p.cfg),
        "harness.split_fingerprint": p.split.fingerprint,
        "harness.git_commit": provenance.git_commit(),
        "harness.command": provenance.command_line(),
        **{f"harness.version.{k}": v for k, v in provenance.versions().items()},
    }
    pairs = [(v, s) for v in p.cfg.variants for s in p.cfg.seeds]
    outcomes = []
    for i, (variant, seed) in enumerate(pairs, 1):
        console.header(f"{variant} seed {seed} ({i}/{len(pairs)})")
        outcomes.append(run_one(p, tracker, variant, seed, common_tags, console))
    return outcomes


def run_one(p: Prepared, tracker, variant: str, seed: int, common_tags: dict[str, str], console: Console) -> Outcome:
    spec = config_mod.resolve(p.cfg, variant, seed)
    env = provenance.determinism(p.device)
    tags = {**common_tags, **{f"harness.env.{k}": v for k, v in env.items()}, "harness.device": env["device"]}
    shared_params = {k: v for k, v in spec.flat().items() if k != "seed"}
    shared_params.update({"data.split": p.cfg.data.split, "data.train_ratio": p.cfg.data.train_ratio, "data.split_seed": p.cfg.data.split_seed})
    parent_id = tracker.parent(variant, variant_key(spec, p.split.fingerprint), tags, shared_params)
    run_id = tracker.start_seed_run(parent_id, variant, seed, tags, {**shared_params, "seed": seed})
    outcome = Outcome(variant, seed, "FAILED")
    start = time.perf_counter()
    try:
        result, metrics = train_and_evaluate(p, spec, tracker, run_id, console)
        outcome = Outcome(
            variant, seed, "FINISHED", metrics["best_val_acc"], result.selected_epoch,
            result.history[-1].val_acc, metrics["test_acc"], time.perf_counter() - start,
        )
        tracker.finish(run_id, "FINISHED")
        tracker.update_aggregates(parent_id)
    except KeyboardInterrupt:
        tracker.set_tags(run_id, {"harness.error": "interrupted by the user"})
        tracker.finish(run_id, "KILLED")
        raise
    except Exception as e:  # noqa: BLE001 - one failing run must not stop the others
        reason = f"{type(e).__name__}: {e}"
        if isinstance(e, engine.NonFiniteLoss):
            reason = f"non-finite loss in {variant} seed {seed}: {e}"
        console.line(f"FAILED {variant} seed {seed}: {reason}")
        tracker.set_tags(run_id, {"harness.error": reason[:5000]})
        tracker.finish(run_id, "FAILED")
        outcome = Outcome(variant, seed, "FAILED", seconds=time.perf_counter() - start, error=reason)
    return outcome


def train_and_evaluate(p: Prepared, spec: RunSpec, tracker, run_id: str, console: Console) -> tuple[engine.Result, dict[str, float]]:
    t = spec.train
    ecfg = engine.EngineConfig(
        epochs=t.epochs, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size, lr=t.lr,
        weight_decay=t.weight_decay, shuffle=t.shuffle, select=t.select, progress_every=console.progress_every,
    )
    pending: dict[str, float] = {}

    def on_progress(progress: engine.Progress) -> None:
        console.progress(progress)
        if progress.done and progress.phase == "train":
            pending.update(train_loss=progress.loss, train_acc=progress.acc)
        elif progress.done and progress.phase == "val":
            values = {**pending, "val_loss": progress.loss, "val_acc": progress.acc, "gap_acc": pending["train_acc"] - progress.acc}
            tracker.log_metrics(run_id, values, step=progress.epoch)

    v = registry.get(spec.variant)
    d = p.data
    model, result = engine.train(lambda: v.build(**spec.model_params), d.x_train, d.y_train, d.x_val, d.y_val, ecfg, spec.seed, on_progress)
    for stats in result.history:
        tracker.log_metrics(run_id, {"epoch_seconds": stats.seconds}, step=stats.epoch)

    # The test set is read only now, once for the selected weights and once for the last.
    selected = engine.copy_weights(model, result.selected_state)
    test_loss, test_acc, pred = engine.evaluate(selected, d.x_test, d.y_test, t.eval_batch_size)
    last_loss, last_acc, _ = engine.evaluate(model, d.x_test, d.y_test, t.eval_batch_size)
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
    tracker.log_metrics(run_id, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.toml").write_text(config_mod.to_toml(p.cfg) + run_section(spec))
        evaluation.write_confusion_csv(cm, data_mod.CLASSES, folder / "confusion_matrix.csv")
        evaluation.write_per_class_csv(scores, data_mod.CLASSES, folder / "per_class.csv")
        from harness import plots

        curves = {k: [getattr(s, k) for s in h] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
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
        [o.variant, str(o.seed), o.status, num(o.best_val_acc), str(o.selected_epoch or "-"), num(o.final_val_acc), num(o.test_acc), f"{o.seconds:.1f}s"]
        for o in outcomes
    ]
    text = table(["variant", "seed", "status", "best val acc", "epoch of best", "final val acc", "test acc", "time"], rows)
    failed = [o for o in outcomes if o.status != "FINISHED"]
    text += f"\n{len(outcomes) - len(failed)} of {len(outcomes)} runs finished"
    if failed:
        text += f"; {len(failed)} failed: " + "; ".join(f"{o.variant} seed {o.seed} ({o.error})" for o in failed)
    return text
