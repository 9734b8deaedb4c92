"""What became of each (variant, seed) pair of a command: the outcome records, reading them back
from the store, and the summary table printed at the end."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Iterable

from harness.running.console import table
from harness.settings import config as config_mod
from harness.settings.config import ExperimentConfig, RunSpec


@dataclass
class Outcome:
    variant: str
    seed: int
    status: str  # FINISHED, FAILED or KILLED
    best_val_acc: float = math.nan
    selected_epoch: int = 0
    final_val_acc: float = math.nan
    test_acc: float = math.nan
    seconds: float = 0.0  # wall time in this command: training, testing and recording
    error: str = ""
    note: str = ""
    parent_id: str = ""
    train_seconds: float = 0.0  # of `seconds`, the epochs this command trained (their epoch_seconds)


def finished(variant: str, seed: int, run, note: str = "") -> Outcome:
    """The outcome of a finished run as the store holds it (a harness.tracking.store.KeyedRun)."""
    m = run.metrics
    return Outcome(
        variant,
        seed,
        "FINISHED",
        m.get("best_val_acc", math.nan),
        int(m.get("selected_epoch", 0)),
        m.get("final_val_acc", math.nan),
        m.get("test_acc", math.nan),
        0.0,
        note=note,
        parent_id=run.parent_id,
    )


def collect(cfg: ExperimentConfig, tracker, key: Callable[[RunSpec], str]) -> list[Outcome]:
    """The outcome of every (variant, seed) pair as the store has it (runs found by `key`), without training anything."""
    outcomes = []
    for variant in cfg.variants:
        for seed in cfg.seeds:
            runs = tracker.runs_with_key(key(config_mod.resolve(cfg, variant, seed)))
            done = [r for r in runs if r.status == "FINISHED"]
            if done:
                outcomes.append(finished(variant, seed, done[-1]))
            else:
                status = runs[-1].status if runs else "FAILED"
                outcomes.append(
                    Outcome(
                        variant,
                        seed,
                        status if status != "RUNNING" else "KILLED",
                        error="see its run in the store" if runs else "never started",
                        parent_id=runs[-1].parent_id if runs else "",
                    )
                )
    return outcomes


def with_errors(outcomes: list[Outcome], errors: dict[tuple[str, int], str]) -> list[Outcome]:
    """The outcomes, each unfinished one with what its executor said went wrong (a task's log, a node that died)."""
    return [
        dataclasses.replace(o, error=errors[(o.variant, o.seed)])
        if o.status != "FINISHED" and (o.variant, o.seed) in errors
        else o
        for o in outcomes
    ]


def correct_counts(outcomes: Iterable[Outcome], images: int) -> dict[str, dict[int, tuple[int, int]]]:
    """(correct, images) of the test set per variant and seed, from the finished outcomes' test accuracy."""
    out: dict[str, dict[int, tuple[int, int]]] = {}
    for o in outcomes:
        if o.status == "FINISHED":
            out.setdefault(o.variant, {})[o.seed] = (round(o.test_acc * images / 100), images)
    return out


def summary(outcomes: list[Outcome]) -> str:
    def num(x: float, fmt: str = "{:.2f}") -> str:
        return fmt.format(x) if math.isfinite(x) else "-"

    rows = [
        [
            o.variant,
            str(o.seed),
            o.status + (" (skipped)" if o.note else ""),
            num(o.best_val_acc),
            str(o.selected_epoch or "-"),
            num(o.final_val_acc),
            num(o.test_acc),
            f"{o.seconds:.1f}s ({o.train_seconds:.1f}s)",
        ]
        for o in outcomes
    ]
    text = table(
        ["variant", "seed", "status", "best val acc", "epoch of best", "final val acc", "test acc", "wall (training)"],
        rows,
    )
    failed = [o for o in outcomes if o.status != "FINISHED"]
    wall, trained = sum(o.seconds for o in outcomes), sum(o.train_seconds for o in outcomes)
    text += f"\n{len(outcomes) - len(failed)} of {len(outcomes)} runs finished"
    if failed:
        text += f"; {len(failed)} failed: " + "; ".join(f"{o.variant} seed {o.seed} ({o.error})" for o in failed)
    if wall > 0:
        text += f"\ntraining: {trained:.1f}s of the runs' {wall:.1f}s wall time (the rest: testing and recording)"
    return text
