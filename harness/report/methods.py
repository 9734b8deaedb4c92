"""The report's *Methods* paragraph: what a paper's reproducibility checklist asks for, written from
the runs themselves. The factors of variability (what a seed varies, what is pinned, the split),
how each interval and test is computed, what ± means and over how many seeds, the assumptions, and
the compute per run and in all (tests/report/test_report.py::test_the_methods_paragraph_states_the_factors_tests_assumptions_and_compute)."""

from __future__ import annotations

import math

from harness.analysis import sequential as sequential_rule
from harness.analysis import stats
from harness.base.escaping import code
from harness.report.stats_section import text
from harness.settings.designs import CELLS, Design
from harness.tracking import names
from harness.tracking.readback import SeedRun

_PINNED = {"init": "initial weights", "order": "batch order", "dropout": "dropout masks", "augment": "augmentation"}


def section(
    runs: list[SeedRun],
    order: list[str],
    baseline: str,
    design: Design,
    analysis: stats.Analysis,
    sequential: tuple[int, int] | None = None,
) -> list[str]:
    """The Methods paragraph; `sequential`: (the rule, the number of variants compared) of a
    seeds-on-demand design, None for fixed seeds."""
    done = [r for r in runs if r.status == "FINISHED"]
    if not done:
        return []
    seeds = sorted({r.seed for r in done})
    images = {int(r.confusion.sum()) for r in done if r.confusion is not None and hasattr(r.confusion, "sum")}
    out = [
        f"{len(order)} variant(s) were trained on {len(seeds)} seed(s) each ({len(done)} finished runs). {_factors(done, design)}"
        f" Test accuracy was measured once per run on {_images(images)}, on the weights of the epoch chosen by "
        f"`train.select` = {text(', '.join(sorted({r.params.get('train.select', 'val_acc') for r in done})))}.",
        _tests(design, analysis, baseline, sequential),
        f"In the tables, mean ± sd is the sample standard deviation (n − 1) over a variant's finished seeds (n = "
        f"{_range(done, order)}), not a standard error; intervals are 95% unless labelled otherwise.",
        "Assumptions: runs of different seeds are independent; the paired t-test and the seeds-on-demand rule assume "
        "roughly normal paired differences (the sign-flip test only symmetric ones; skewed differences are warned about); "
        "every interval over seeds is about this one test set, and the test-set floor and the seeds × images interval say "
        "how far a result can move on new images.",
        _compute(done),
    ]
    return ["## Methods", "", "*Written from the runs, to adapt for a paper's methods section.*", "", " ".join(out), ""]


def _factors(done: list[SeedRun], design: Design) -> str:
    pinned = sorted(
        {k.removeprefix("seeds.") for r in done for k in r.params if k.startswith("seeds.") and k != "seeds.split"}
    )
    per_seed_split = any(r.params.get("data.split_seed") == "per_seed" for r in done)
    split = (
        "a new stratified train/validation split per seed"
        if per_seed_split
        else f"one train/validation split for every seed (`data.split`, `data.split_seed` = "
        f"{text(done[0].params.get('data.split_seed', '0'))})"
    )
    if design.kind == "variance":
        return (
            "A variance design varied each source of randomness alone over the seeds (the others pinned to one seed no run "
            "varies) and all together; " + split + " for `@all` and `@split`."
        )
    fixed = f"; pinned for every run: {', '.join(_PINNED.get(p, p) for p in pinned)}" if pinned else ""
    return (
        "A seed sets the initial weights, the batch order, and the dropout masks and augmentation of the variants that have "
        f"them{fixed}; {split}; the test set is fixed. Variants on the same seed share its split and batch order, so "
        "comparisons are paired by seed."
    )


def _images(images: set[int]) -> str:
    return f"{next(iter(images)):,} test images" if len(images) == 1 else "the test images"


def _tests(design: Design, analysis: stats.Analysis, baseline: str, sequential: tuple[int, int] | None) -> str:
    if design.kind == "variance":
        return (
            "Each source's variance is the sample variance of its runs' test accuracies with an exact chi-square interval "
            "(assuming normal effects); the largest is called dominant only when a two-sided F test of the two largest "
            f"variances rejects at α = {analysis.alpha:g}; the additivity ratio has a Satterthwaite interval."
        )
    test = "the paired t-test" if analysis.test == "t" else "the exact sign-flip permutation test"
    what = (
        "each factorial or leave-one-out effect (a per-seed contrast of cells) against zero"
        if design.kind in CELLS
        else f"each variant's per-seed difference from {code(baseline)}"
    )
    if sequential:
        budget = sequential_rule.budget(analysis.alpha, sequential[1], sequential[0])
        return (
            f"We tested {what} with {test} (two-sided), and equivalence within ±{analysis.margin:g} points by TOST. Seeds "
            "were added in rounds by a group-sequential rule until each comparison was decided or the most seeds allowed "
            "were spent; its boundaries hold the error rate over the looks, with the difference tests and the equivalence "
            f"tests as two Holm families at {budget} (*Seeds on demand*). The fixed-seed tests and "
            "intervals in the tables ignore the looks."
        )
    return (
        f"We tested {what} with {test} (two-sided), and equivalence within ±{analysis.margin:g} points by TOST; the "
        f"difference and equivalence tests of all comparisons were corrected together by Holm's method with Shaffer's "
        f"refinement at α = {analysis.alpha:g}. Intervals of a difference are t intervals (or the sign-flip test's), an "
        f"equivalent verdict's the TOST's at 1 − 2α/k"
        + (
            " (an interaction's margin is half the analysis margin, on its contrast)."
            if design.kind == "factorial"
            else "."
        )
    )


def _range(done: list[SeedRun], order: list[str]) -> str:
    counts = sorted({sum(1 for r in done if r.variant == v) for v in order} - {0})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _compute(done: list[SeedRun]) -> str:
    seconds = [
        r.metrics["epoch_seconds_mean"] * float(r.params.get("train.epochs", "nan"))
        for r in done
        if "epoch_seconds_mean" in r.metrics
    ]
    seconds = [s for s in seconds if math.isfinite(s)]
    devices = sorted({r.tags.get(names.DEVICE_TAG, "") for r in done} - {""})
    where = f" on {text(', '.join(devices))}" if devices else ""
    if not seconds:
        return f"Compute: {len(done)} runs{where}; their training time was not recorded."
    total = sum(seconds)
    return (
        f"Compute: {total / len(seconds):.1f} s of training per run on average, {_hours(total)} for the "
        f"{len(seconds)} runs{where} (training epochs only)."
    )


def _hours(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.1f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )
