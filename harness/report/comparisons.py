"""Each variant against the baseline, as the report and the MLflow parents state it.

Test accuracy is taken as counts of correctly classified test images (the trace of the run's
confusion matrix over its sum), so a paired difference is an integer difference scaled once, and
equal counts give equal differences. A variant is compared only when it shares the baseline's
settings that decide what `test_acc` means (SHARED: epochs, the selection rule, the data and the
split) and, seed by seed, the same split; otherwise it is "not comparable", with the reason, and
stays out of the Holm family. Every comparable variant is in the family, testable or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.analysis import crossed, sample_size, stats
from harness.tracking import names
from harness.tracking.readback import SHARED, SeedRun

NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Comparison:
    variant: str
    test: stats.Paired | None  # None when not comparable
    seeds_images: crossed.Crossed = crossed.NONE  # the interval over new seeds and new test sets (sensitivity)
    seeds_needed: int = 0  # for 80% power at Holm's first level (α/m); 0 when not estimable (fewer than 3 pairs)
    question: str = "difference"  # what seeds_needed is for: "difference" (|Δ| beyond the margin) or "equivalence"
    reason: str = ""  # why it is not comparable

    @property
    def verdict(self) -> str:
        return NOT_COMPARABLE if self.test is None else self.test.verdict


def counts(runs: list[SeedRun]) -> dict[str, dict[int, tuple[int, int]]]:
    """(correct, images) on the test set by variant and seed, from each finished run's confusion matrix."""
    out: dict[str, dict[int, tuple[int, int]]] = {}
    for r in runs:
        # an emptied file counts nothing
        if r.status == "FINISHED" and isinstance(r.confusion, np.ndarray) and r.confusion.sum() > 0:
            out.setdefault(r.variant, {})[r.seed] = (int(np.trace(r.confusion)), int(r.confusion.sum()))
    return out


def right(runs: list[SeedRun]) -> dict[str, dict[int, np.ndarray]]:
    """Right (True) or wrong per test image, by variant and seed, for each finished run that stored
    its predictions (`predictions.npz`)."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for r in runs:
        if r.status == "FINISHED" and r.predictions is not None:
            out.setdefault(r.variant, {})[r.seed] = _right(r)
    return out


def _right(r: SeedRun) -> np.ndarray:
    """One run's right (True) or wrong per test image, at its selected epoch."""
    return r.predictions["selected"] == r.predictions["labels"]


def accuracy(by_count: dict[str, dict[int, tuple[int, int]]]) -> dict[str, dict[int, float]]:
    return {v: {s: 100.0 * k / n for s, (k, n) in seeds.items()} for v, seeds in by_count.items()}


def setting(runs: list[SeedRun], key: str) -> str:
    """One shared setting of a variant's finished runs ('a, b' when they differ)."""
    return ", ".join(sorted({r.params.get(key, "?") for r in runs if r.status == "FINISHED"}))


def why_not_comparable(base: list[SeedRun], other: list[SeedRun]) -> str:
    """Empty when `other` shares the baseline's settings and splits; else the reason."""
    for key in SHARED:
        a, b = setting(base, key), setting(other, key)
        if a != b:
            return f"{key} is {b} here but {a} for the baseline"
    splits = {r.seed: r.tags.get(names.SPLIT_TAG) for r in base if r.status == "FINISHED"}
    data = {r.tags.get(names.DATASET_TAG) for r in base + other if r.status == "FINISHED"}
    if len(data) > 1:
        return f"trained on different data ({', '.join(sorted(map(str, data)))})"
    for r in other:
        if r.status == "FINISHED" and r.seed in splits and r.tags.get(names.SPLIT_TAG) != splits[r.seed]:
            return f"seed {r.seed} used another split than the baseline's seed {r.seed}"
    return ""


def compare(runs: list[SeedRun], baseline: str, order: list[str], analysis: stats.Analysis) -> dict[str, Comparison]:
    """Every variant but the baseline, in `order`: its paired test, seeds × images interval and verdict."""
    done = [r for r in runs if r.status == "FINISHED"]
    by_variant = {v: [r for r in done if r.variant == v] for v in order}
    by_count = counts(done)
    base_counts = by_count.get(baseline, {})
    reasons = {v: why_not_comparable(by_variant[baseline], by_variant[v]) for v in order if v != baseline}
    raw = {
        v: stats.differences(stats.count_differences(base_counts, by_count.get(v, {})), analysis)
        for v, why in reasons.items()
        if not why
    }
    tested = stats.family(raw, analysis) if raw else {}
    level = analysis.alpha / max(1, len(tested))
    out = {}
    for v, why in reasons.items():
        if why:
            out[v] = Comparison(v, None, reason=why)
            continue
        t = tested[v]
        needed, question = seeds_for(t, analysis, level)
        out[v] = Comparison(v, t, seeds_images(by_variant[baseline], by_variant[v], analysis.alpha), needed, question)
    return out


def seeds_for(t: stats.Paired, analysis: stats.Analysis, level: float) -> tuple[int, str]:
    """The seeds the question at hand needs, at Holm's strictest level: to show equivalence within
    ±margin (by TOST, no true difference) when |Δ| is within the margin, else to find a difference
    of the margin (paired t-test power); 0 when fewer than 3 pairs leave the spread unestimable."""
    if t.n < stats.MIN_PAIRS:
        return 0, "difference"
    exact = analysis.test == "permutation"
    if abs(t.diff_mean) <= analysis.margin:
        return sample_size.seeds_for_equivalence(t.sd, analysis.margin, level, exact=exact), "equivalence"
    return sample_size.seeds_needed(t.sd, analysis.margin, level, exact=exact), "difference"


def seeds_images(base: list[SeedRun], other: list[SeedRun], alpha: float) -> crossed.Crossed:
    """The crossed seeds × images interval over the seeds where both runs stored per-image predictions."""
    base_right = {r.seed: _right(r) for r in base if r.predictions is not None}
    rows = [
        crossed.scores(base_right[r.seed], _right(r))
        for r in sorted(other, key=lambda r: r.seed)
        if r.predictions is not None and r.seed in base_right
    ]
    return crossed.interval(rows, alpha)


def parent_metrics(c: Comparison) -> dict[str, float]:
    """What a variant's parent run carries of its comparison (MLflow metrics, points)."""
    if c.test is None:
        return {}
    t = c.test
    return {
        "paired_delta_test_acc": t.diff_mean,
        "paired_delta_ci_low": t.ci_low,
        "paired_delta_ci_high": t.ci_high,
        "paired_delta_sim_low": t.sim_low,
        "paired_delta_sim_high": t.sim_high,
        "paired_n": float(t.n),
        "paired_p_holm": t.p_holm,
        "paired_tost_p_holm": t.tost_holm,
        "seeds_images_ci_low": c.seeds_images.low,
        "seeds_images_ci_high": c.seeds_images.high,
        "seed_win_rate": t.wins / t.n if t.n else float("nan"),
    }


def sources_of_variation(runs: list[SeedRun]) -> str:
    """Which sources of randomness the seeds vary, hence what the intervals cover."""
    per_seed = any(r.params.get("data.split_seed") == "per_seed" for r in runs)
    varied = (
        "initial weights, the batch order and the train/validation split (a new split per seed)"
        if per_seed
        else "initial weights and the batch order"
    )
    fixed = "the test set" if per_seed else "the train/validation split (`data.split_seed`) and the test set"
    return (
        f"The seeds vary the {varied}; {fixed} stay fixed, so the seed-level intervals cover only that variation. "
        "The seeds × images interval also counts the noise of a finite test set."
    )


CHANCE_Z = 2.576  # two-sided 99% normal band of a binomial count around chance


def at_chance(runs: list[SeedRun]) -> dict[str, tuple[float, int]]:
    """The variants whose finished runs, pooled, score indistinguishably from guessing: their test
    accuracy (%) lies within CHANCE_Z binomial standard errors of 1/classes (the classes read from
    the confusion matrices): {variant: (accuracy, classes)}. Such runs learned nothing, whatever their
    comparison says."""
    out = {}
    for variant, seeds in counts(runs).items():
        classes = next((len(r.classes) for r in runs if r.variant == variant and r.classes), 0)
        correct = sum(c for c, _ in seeds.values())
        total = sum(n for _, n in seeds.values())
        if classes < 2 or not total:
            continue
        chance = 1 / classes
        if abs(correct / total - chance) <= CHANCE_Z * math.sqrt(chance * (1 - chance) / total):
            out[variant] = (100 * correct / total, classes)
    return out
