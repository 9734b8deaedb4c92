"""The report of an experiment, built from the MLflow store alone: the answer first (one line
per variant and a six-column table), one evidence figure per comparison, then the details (the
accuracy and cost tables, the statistics against the baseline, seeds on demand, a design's
effects, plots, per-class results, tuning, how it was made) and a glossary the tables link to.
`report.md` and its HTML twin `report.html` (figures embedded) are written side by side.

Building it twice from the same store gives the same files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis import effects, stats
from harness.base.escaping import code
from harness.base.files import atomic_write
from harness.report import (
    answer,
    appendix,
    effects_section,
    evidence,
    glossary,
    html,
    images_section,
    methods,
    sequential_section,
    setup_section,
    stats_section,
    variance_section,
)
from harness.report import comparisons as comparisons_mod
from harness.report.comparisons import Comparison
from harness.settings import designs
from harness.settings.designs import Design
from harness.tracking import experiment_tags, names, readback
from harness.tracking.readback import SeedRun

ENV_KEYS = appendix.ENV_KEYS


def build(uri: str, experiment: str, reports_dir: Path) -> Path:
    """Read the experiment (its runs, design and analysis settings) from the store and write
    `reports_dir/report.md`, `report.html` and the figures."""
    runs = readback.read_runs(uri, experiment)
    tags = readback.experiment_tags(uri, experiment)
    return write(
        runs, experiment, reports_dir, experiment_tags.design_of(tags), experiment_tags.analysis_of(tags), tags
    )


def test_accuracy(runs: list[SeedRun]) -> dict[str, dict[int, float]]:
    """Each variant's test accuracy by seed (points), from its finished runs' counts of correct images."""
    return comparisons_mod.accuracy(comparisons_mod.counts(runs))


_fmt, _pm, _text = stats_section.fmt, stats_section.pm, stats_section.text


def _order(runs: list[SeedRun], baseline: str, design: Design) -> list[str]:
    present = {r.variant for r in runs}
    named: tuple[str, ...] = ()
    if design.kind in designs.CELLS:
        named = designs.expand(design)
    elif design.kind == "variance":
        named = designs.by_source(designs.bases(sorted(present)), design.factors)
    names = [v for v in named if v in present] + sorted(present)
    names = list(dict.fromkeys(names))
    return ([baseline] if baseline in present else []) + [n for n in names if n != baseline]


@dataclasses.dataclass(frozen=True)
class Analysed:
    """The runs' analysis, made once for the report and for the parent runs' metrics: the baseline,
    the variants' order, each variant's comparison with the baseline, and the seeds-on-demand
    design replayed (None for fixed seeds)."""

    baseline: str
    order: list[str]
    comparisons: dict[str, Comparison]
    replayed: object = None


def analysed(
    runs: list[SeedRun],
    design: Design = Design(),
    analysis: stats.Analysis = stats.Analysis(),
    tags: dict[str, str] | None = None,
) -> Analysed:
    """These runs analysed; with seeds on demand recorded in the experiment's `tags`, its variants
    carry the sequential verdicts."""
    replayed = sequential_section.replay(tags or {}, runs, analysis)
    return Analysed(*_analyse(runs, design, analysis, replayed), replayed)


def analyse(
    runs: list[SeedRun],
    design: Design = Design(),
    analysis: stats.Analysis = stats.Analysis(),
    tags: dict[str, str] | None = None,
) -> tuple[str, list[str], dict[str, Comparison]]:
    """(baseline, variant order, each variant's comparison with the baseline) of these runs."""
    a = analysed(runs, design, analysis, tags)
    return a.baseline, a.order, a.comparisons


def _analyse(
    runs: list[SeedRun], design: Design, analysis: stats.Analysis, replayed
) -> tuple[str, list[str], dict[str, Comparison]]:
    """`analyse` with the seeds-on-demand design already replayed (None for fixed seeds)."""
    baseline = runs[-1].tags.get(names.BASELINE_TAG, "baseline") if runs else "baseline"
    order = _order(runs, baseline, design)
    if not any(r.variant == baseline and r.status == "FINISHED" for r in runs):
        return baseline, order, {}
    compared = comparisons_mod.compare(runs, baseline, order, analysis)
    return baseline, order, sequential_section.verdicts(compared, replayed[1]) if replayed else compared


def write(
    runs: list[SeedRun],
    experiment: str,
    folder: Path,
    design: Design = Design(),
    analysis: stats.Analysis = stats.Analysis(),
    tags: dict[str, str] | None = None,
    prior: Analysed | None = None,
) -> Path:
    """Write the report for these runs (as read from the store, with the experiment's `tags`) into
    `folder`: report.md, report.html and the figures; returns report.md's path. `prior`: these runs
    already `analysed` (the caller's, made with the same design, settings and tags)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not runs:
        _remove_unlinked(folder, "", PLOT_FIGURES + effects_section.FIGURES + (sequential_section.FIGURE,))
        return _save(
            folder, [f"# Ablation report: {experiment}", "", "No runs in the store yet.", ""] + appendix.tuning(folder)
        )
    from harness.report import plots

    prior = prior or analysed(runs, design, analysis, tags)  # once: the verdicts and the section both use its replay
    replayed, baseline, order, comparisons = prior.replayed, prior.baseline, prior.order, prior.comparisons
    done = [r for r in runs if r.status == "FINISHED"]
    by_variant = {v: [r for r in done if r.variant == v] for v in order}
    counts = comparisons_mod.counts(done)
    accuracy = comparisons_mod.accuracy(counts)
    test = {v: accuracy.get(v, {}) for v in order}
    found = effects.analyse(design, counts, analysis) if design.kind in designs.CELLS else []
    rules = {}  # what each seeds-on-demand verdict stands on
    for v, c in comparisons.items():
        if replayed is not None and c.test is not None and c.test.decided_by.startswith("seeds-on-demand"):
            decision = sequential_section.decision(replayed[1], v)
            if decision is not None:
                rules[v] = decision
    curves = _curves(done, order)

    sources = (
        variance_section.decompositions(design, counts, 1 - analysis.alpha, comparisons_mod.right(done))
        if design.kind == "variance"
        else None
    )
    lines = [f"# Ablation report: {experiment}", ""]
    lines += (
        answer.section(runs, order, baseline, test, comparisons, analysis, rules, found)
        if sources is None
        else variance_section.answer(sources)
    )
    epochs = sorted({r.params.get("train.epochs", "?") for r in runs})
    seeds = sorted({r.seed for r in runs})
    lines += [
        f"{len(order)} variant(s) × {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), {', '.join(epochs)} epoch(s); "
        f"{len(done)} of {len(runs)} runs finished. {'' if sources is not None else f'Baseline: {code(baseline)}. '}Test accuracy is measured once per run, "
        f"on the weights of the epoch chosen by {_selection(runs, order)}.",
        "",
    ]
    lines += _warnings(
        runs, splits_vary=sources is not None, tags=tags
    )  # a variance design varies the split on purpose
    lines += setup_section.section(runs, order, baseline)
    lines += variance_section.section(sources, folder, design, 1 - analysis.alpha) if sources is not None else []
    lines += evidence.section(comparisons, baseline, counts, curves, analysis, rules, folder)
    lines += ["## Details", ""] + _tables(order, runs, by_variant, counts)
    lines += stats_section.per_variant(order, by_variant)
    lines += (
        stats_section.against_baseline(comparisons, baseline, bool(test.get(baseline)), analysis)
        if sources is None
        else []
    )
    # as the runs stored them with their confusion matrices (a run whose matrix could not be read has none)
    classes = next((r.classes for r in done if r.classes and isinstance(r.confusion, np.ndarray)), ())
    compared = [v for v, c in comparisons.items() if c.test is not None] if sources is None else []
    lines += images_section.section(order, baseline, by_variant, compared, classes, folder)
    lines += sequential_section.section(replayed, folder, analysis)
    lines += effects_section.section(design, counts, folder, analysis, found)
    lines += _plots(folder, order, done, test, comparisons, baseline, plots, classes, curves)
    _remove_unlinked(
        folder,
        "\n".join(lines),
        PLOT_FIGURES + effects_section.FIGURES + (sequential_section.FIGURE,) + variance_section.figures(folder),
    )
    lines += methods.section(
        runs, order, baseline, design, analysis, (replayed[0].rule, len(replayed[0].variants)) if replayed else None
    )
    lines += appendix.per_class(order, by_variant, classes)
    lines += appendix.failures(runs)
    lines += appendix.tuning(folder)
    lines += appendix.provenance(runs) + [""]
    m = sum(1 for c in comparisons.values() if c.test is not None)
    lines += glossary.section(
        glossary.entries(
            analysis,
            m,
            comparisons_mod.sources_of_variation(done),
            design,
            (replayed[0].rule, len(replayed[0].variants)) if replayed else None,
        )
    )
    return _save(folder, lines)


def _save(folder: Path, lines: list[str]) -> Path:
    """report.md, then its HTML twin from the same text and figures."""
    text = "\n".join(lines).rstrip() + "\n"
    path = atomic_write(folder / "report.md", text)
    atomic_write(folder / "report.html", html.render(text, folder))
    return path


def _curves(done: list[SeedRun], order: list[str]) -> pd.DataFrame:
    """The learning curves of the finished runs: variant, seed, epoch, split, acc, loss, in the report's order."""
    rows = []
    for r in done:
        h = r.history
        for split in ("train", "val"):
            acc, loss = dict(h.get(f"{split}_acc", [])), dict(h.get(f"{split}_loss", []))
            rows += [
                {"variant": r.variant, "seed": r.seed, "epoch": e, "split": split, "acc": acc[e], "loss": loss[e]}
                for e in sorted(acc)
                if e in loss
            ]
    if not rows:
        return pd.DataFrame(columns=["variant", "seed", "epoch", "split", "acc", "loss"])
    curves = pd.DataFrame(rows)
    curves["variant"] = pd.Categorical(curves["variant"], [v for v in order if v in set(curves["variant"])])
    curves = curves.sort_values(["variant", "seed", "split", "epoch"])
    curves["variant"] = curves["variant"].astype(str)
    return curves


def _selection(runs: list[SeedRun], order: list[str]) -> str:
    """The selection rule (`train.select`), per variant where they differ."""
    rules = {v: comparisons_mod.setting([r for r in runs if r.variant == v], "train.select") for v in order}
    rules = {v: rule for v, rule in rules.items() if rule}
    if len(set(rules.values())) <= 1:
        return f"`train.select` = {next(iter(rules.values()), 'val_acc')}"
    return "`train.select`, which differs between variants: " + ", ".join(
        f"{code(v)} {rule}" for v, rule in rules.items()
    )


def chance_lines(runs: list[SeedRun]) -> list[str]:
    """One line per variant whose runs score at chance (comparisons.at_chance), for the report and the console."""
    return [
        f"{code(v)} scores {acc:.2f}% on the test set, indistinguishable from guessing among {classes} classes "
        f"({100 / classes:.2f}%): its runs learned nothing, so its comparison says nothing about what it changes "
        "(check the learning rate, the data and the epochs)"
        for v, (acc, classes) in sorted(comparisons_mod.at_chance([r for r in runs if r.status == "FINISHED"]).items())
    ]


def _warnings(runs: list[SeedRun], splits_vary: bool = False, tags: dict[str, str] | None = None) -> list[str]:
    out = []
    for key in ENV_KEYS:
        values = sorted({r.tags.get(names.ENV_PREFIX + key, "?") for r in runs})
        if len(values) > 1:
            out.append(
                f"> **Warning:** the runs compared here differ in {key} ({_text(', '.join(values))}); differences may come from that, not from the variants."
            )
    shared = (
        "train.epochs",
        "train.batch_size",
        "train.shuffle",
        "train.select",
        "data.split",
        "data.train_ratio",
        "data.split_seed",
    )
    for key in shared:
        values = sorted({r.params.get(key, "?") for r in runs})
        if len(values) > 1:
            out.append(f"> **Warning:** the variants were trained with different {key} ({_text(', '.join(values))}).")
    for line in chance_lines(runs):
        out.append(f"> **Warning:** {line}")
    fixed = experiment_tags.fixed_after(tags or {})
    if fixed:
        out.append(
            f"> **Warning:** this experiment was started with seeds on demand ({experiment_tags.started_sequential(tags or {})}); "
            f"its last `run --redesign` analysed it with fixed seeds ({_text(fixed)}). Those pairs include the ones the rule "
            "chose when to stop on, so these fixed-seed verdicts do not keep the stated α."
        )
    data = sorted({r.tags.get(names.DATASET_TAG, "?") for r in runs})
    if len(data) > 1:
        out.append(f"> **Warning:** the runs compared here trained on different data ({_text(', '.join(data))}).")
    per_seed = {
        s: sorted({r.tags.get(names.SPLIT_TAG, "?") for r in runs if r.seed == s}) for s in {r.seed for r in runs}
    }
    if any(r.params.get("data.split_seed") != "per_seed" for r in runs):
        per_seed = {"all": sorted({fp for fps in per_seed.values() for fp in fps})}  # one split for every seed
    for seed, fps in sorted(per_seed.items(), key=lambda kv: str(kv[0])):
        if len(fps) > 1 and not splits_vary:
            out.append(
                f"> **Warning:** the runs of {'seed ' + str(seed) if seed != 'all' else 'this report'} used different data splits ({_text(', '.join(fps))})."
            )
    return out + ([""] if out else [])


def _tables(order, runs, by_variant, counts) -> list[str]:
    """Accuracy (with each variant's test-set floor beside its seed spread), then loss and cost:
    mean ± std over each variant's finished seeds."""
    acc = [
        "### Accuracy",
        "",
        f"Mean ± std over seeds; {glossary.link('gap', 'gap')}: train minus validation accuracy at the last epoch; "
        f"{glossary.link('floor', 'test-set floor')}: the binomial sd of one run's test accuracy over new test sets of this many images.",
        "",
        f"| variant | seeds | {glossary.link('selected', 'test acc (%)')} | {glossary.link('floor', 'test-set floor (sd)')} | best val acc (%) | "
        f"final val acc (%) | {glossary.link('gap', 'train–val gap')} |",
        "|---|---|---|---|---|---|---|",
    ]
    within = []
    cost = [
        "### Loss and cost",
        "",
        "| variant | final val loss | min val loss @ epoch | parameters | s / epoch |",
        "|---|---|---|---|---|",
    ]
    for v in order:
        rs = by_variant[v]
        total = sum(1 for r in runs if r.variant == v)

        def col(key: str) -> stats.Summary:
            return stats.summarize([r.metrics[key] for r in rs if key in r.metrics])

        params = int(rs[0].metrics["n_params"]) if rs and "n_params" in rs[0].metrics else None
        sd, floor, _ = evidence.spread(counts.get(v, {}))
        if sd <= floor:  # False for nan: one seed has no spread to compare
            within.append(f"{code(v)} (seed sd {_fmt(sd)}, floor {_fmt(floor)})")
        acc.append(
            f"| {_text(v)} | {len(rs)}/{total} | {_pm(col('test_acc'))} | {_fmt(floor)} | {_pm(col('best_val_acc'))} | "
            f"{_pm(col('final_val_acc'))} | {_pm(col('final_gap_acc'))} |"
        )
        cost.append(
            f"| {_text(v)} | {_pm(col('final_val_loss'), 4)} | {_fmt(col('min_val_loss').mean, 4)} @ {_fmt(col('min_val_loss_epoch').median, 0)} | "
            f"{f'{params:,}' if params else '–'} | {_fmt(col('epoch_seconds_mean').mean)} |"
        )
    if within:
        acc += [
            "",
            f"> **Note:** the seed spread is within the test-set floor for {', '.join(within)}: the seeds differ by about as "
            "much as independent per-image flips would make them. More seeds still narrow the intervals here (as 1/√seeds, on "
            "this test set); how far an accuracy on these images is from one on new images is set by the floor, not the seeds.",
        ]
    return acc + [""] + cost + [""]


def _plots(folder, order, done, test, comparisons, baseline, plots, classes, curves: pd.DataFrame) -> list[str]:
    lines = ["## Plots", ""]
    if len(curves):
        plots.learning_curves(curves, folder / "learning_curves.png")
        lines += [
            "![learning curves](learning_curves.png)",
            "",
            "*Validation accuracy (left) and loss (right) per epoch for each variant: the line is the mean over seeds "
            "and the band its 95% t-interval; dashed lines are the training curves, so the space between the dashed and "
            "solid line of a colour is that variant's overfitting.*",
            "",
        ]
    points = pd.DataFrame(
        [{"variant": v, "seed": s, "test_acc": a} for v in order for s, a in sorted(test.get(v, {}).items())]
    )
    if len(points):
        plots.test_accuracy(points, folder / "test_accuracy.png")
        lines += [
            "![test accuracy per variant](test_accuracy.png)",
            "",
            "*Test accuracy of each variant at its selected epoch: every dot is one seed, the box spans the middle half of the seeds.*",
            "",
        ]
    diffs = pd.DataFrame(
        [
            {"variant": v, "diff": c.test.diff_mean, "ci_low": c.test.ci_low, "ci_high": c.test.ci_high}
            for v, c in comparisons.items()
            if c.test is not None and c.test.n >= 1
        ]
    )
    if len(diffs):
        plots.baseline_difference(diffs, folder / "baseline_difference.png")
        lines += [
            "![difference from the baseline](baseline_difference.png)",
            "",
            f"*Paired difference in test accuracy from {code(baseline)} (points, same seeds) with its unadjusted 95% confidence "
            "interval. An interval that crosses zero is inconclusive, not evidence that there is no difference; only the "
            "TOST in the statistics can show that a difference lies within the margin.*",
            "",
        ]
    matrices = {v: sum(r.confusion for r in done if r.variant == v and _has_matrix(r, classes)) for v in order}
    matrices = {v: m for v, m in matrices.items() if isinstance(m, np.ndarray)}
    if matrices:
        plots.confusion_matrices(matrices, classes, folder / "confusion_matrices.png")
        lines += [
            "![confusion matrices](confusion_matrices.png)",
            "",
            "*Test-set confusion matrix of each variant, summed over its seeds; each row is a true class and shows "
            "the percentage of its images predicted as each class.*",
            "",
        ]
    return lines


def _has_matrix(run, classes: tuple[str, ...]) -> bool:
    """Whether `run` has a readable confusion matrix over `classes` (the report sums those)."""
    return bool(classes) and run.classes == classes and isinstance(run.confusion, np.ndarray)


PLOT_FIGURES = ("learning_curves.png", "test_accuracy.png", "baseline_difference.png", "confusion_matrices.png")


def _remove_unlinked(folder: Path, text: str, figures: tuple[str, ...]) -> None:
    """Delete figures an earlier report wrote that this one no longer links."""
    found = [p.name for pattern in (evidence.PATTERN, images_section.PATTERN) for p in sorted(folder.glob(pattern))]
    for stale in [*figures, *found]:
        if f"({stale})" not in text and (folder / stale).exists():
            (folder / stale).unlink()
