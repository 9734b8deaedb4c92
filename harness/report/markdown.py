"""The markdown report of an experiment, built from the MLflow store alone: comparison table,
statistics against the baseline, plots with captions, per-class results and how it was made.

Building it twice from the same store gives the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis import stats
from harness.base.files import atomic_write
from harness.report import comparisons as comparisons_mod
from harness.report import effects_section, sequential_section, stats_section
from harness.report.comparisons import Comparison
from harness.settings import checks, designs
from harness.settings.designs import Design
from harness.tracking import experiment_tags, readback
from harness.tracking.readback import SeedRun

ENV_KEYS = ("torch", "cuda", "cudnn", "device", "threads", "cudnn_deterministic", "deterministic_algorithms")


def build(uri: str, experiment: str, reports_dir: Path) -> Path:
    """Read the experiment (its runs, design and analysis settings) from the store and write
    `reports_dir/report.md` with its plots."""
    runs = readback.read_runs(uri, experiment)
    tags = readback.experiment_tags(uri, experiment)
    return write(runs, experiment, reports_dir, experiment_tags.design_of(tags), experiment_tags.analysis_of(tags), tags)


def test_accuracy(runs: list[SeedRun]) -> dict[str, dict[int, float]]:
    """Each variant's test accuracy by seed (points), from its finished runs' counts of correct images."""
    return comparisons_mod.accuracy(comparisons_mod.counts(runs))


_fmt, _p, _pm, _ci = stats_section.fmt, stats_section.p, stats_section.pm, stats_section.ci


def _order(runs: list[SeedRun], baseline: str, design: Design) -> list[str]:
    present = {r.variant for r in runs}
    names = [v for v in (designs.expand(design) if design.kind != "list" else ()) if v in present] + sorted(present)
    names = list(dict.fromkeys(names))
    return ([baseline] if baseline in present else []) + [n for n in names if n != baseline]


def analyse(runs: list[SeedRun], design: Design = Design(), analysis: stats.Analysis = stats.Analysis(),
            tags: dict[str, str] | None = None) -> tuple[str, list[str], dict[str, Comparison]]:
    """(baseline, variant order, each variant's comparison with the baseline) of these runs; with
    seeds on demand recorded in the experiment's `tags`, its variants carry the sequential verdicts."""
    return _analyse(runs, design, analysis, sequential_section.replay(tags or {}, runs, analysis))


def _analyse(runs: list[SeedRun], design: Design, analysis: stats.Analysis, replayed) -> tuple[str, list[str], dict[str, Comparison]]:
    """`analyse` with the seeds-on-demand design already replayed (None for fixed seeds)."""
    baseline = runs[-1].tags.get("harness.baseline", "baseline") if runs else "baseline"
    order = _order(runs, baseline, design)
    if not any(r.variant == baseline and r.status == "FINISHED" for r in runs):
        return baseline, order, {}
    compared = comparisons_mod.compare(runs, baseline, order, analysis)
    return baseline, order, sequential_section.verdicts(compared, replayed[1]) if replayed else compared


def write(runs: list[SeedRun], experiment: str, folder: Path, design: Design = Design(), analysis: stats.Analysis = stats.Analysis(),
          tags: dict[str, str] | None = None) -> Path:
    """Write the report for these runs (as read from the store, with the experiment's `tags`) into `folder`."""
    from harness.report import plots

    folder.mkdir(parents=True, exist_ok=True)
    if not runs:
        text = "\n".join([f"# Ablation report: {experiment}", "", "No runs in the store yet.", ""] + _tuning(folder))
        return atomic_write(folder / "report.md", text.rstrip() + "\n")
    replayed = sequential_section.replay(tags or {}, runs, analysis)  # once: the verdicts and the section both use it
    baseline, order, comparisons = _analyse(runs, design, analysis, replayed)
    done = [r for r in runs if r.status == "FINISHED"]
    by_variant = {v: [r for r in done if r.variant == v] for v in order}
    accuracy = test_accuracy(runs)
    test = {v: accuracy.get(v, {}) for v in order}
    has_baseline = bool(test.get(baseline))

    lines = [f"# Ablation report: {experiment}", ""]
    epochs = sorted({r.params.get("train.epochs", "?") for r in runs})
    seeds = sorted({r.seed for r in runs})
    lines += [
        f"{len(order)} variant(s) × {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), {', '.join(epochs)} epoch(s); "
        f"{len(done)} of {len(runs)} runs finished. Baseline: `{baseline}`. Test accuracy is measured once per run, "
        f"on the weights of the epoch chosen by {_selection(runs, order)}.",
        "",
    ]
    lines += _warnings(runs)
    lines += _comparison_table(order, runs, by_variant, comparisons, baseline)
    lines += stats_section.per_variant(order, by_variant)
    lines += stats_section.against_baseline(comparisons, baseline, has_baseline, analysis, comparisons_mod.sources_of_variation(done))
    lines += sequential_section.section(replayed, folder, analysis)
    classes = next((r.classes for r in done if r.classes), ())  # as the runs stored them with their confusion matrices
    lines += _plots(folder, order, runs, done, test, comparisons, baseline, plots, classes)
    lines += effects_section.section(design, comparisons_mod.counts(done), folder, analysis)
    _remove_unlinked(folder, "\n".join(lines), PLOT_FIGURES + effects_section.FIGURES + (sequential_section.FIGURE,))
    lines += _per_class(order, by_variant, classes)
    lines += _failures(runs)
    lines += _tuning(folder)
    lines += _provenance(runs)
    return atomic_write(folder / "report.md", "\n".join(lines).rstrip() + "\n")


def _selection(runs: list[SeedRun], order: list[str]) -> str:
    """The selection rule (`train.select`), per variant where they differ."""
    rules = {v: comparisons_mod.setting([r for r in runs if r.variant == v], "train.select") for v in order}
    rules = {v: rule for v, rule in rules.items() if rule}
    if len(set(rules.values())) <= 1:
        return f"`train.select` = {next(iter(rules.values()), 'val_acc')}"
    return "`train.select`, which differs between variants: " + ", ".join(f"`{v}` {rule}" for v, rule in rules.items())


def _warnings(runs: list[SeedRun]) -> list[str]:
    out = []
    for key in ENV_KEYS:
        values = sorted({r.tags.get(f"harness.env.{key}", "?") for r in runs})
        if len(values) > 1:
            out.append(f"> **Warning:** the runs compared here differ in {key} ({', '.join(values)}); differences may come from that, not from the variants.")
    shared = ("train.epochs", "train.batch_size", "train.shuffle", "train.select", "data.split", "data.train_ratio", "data.split_seed")
    for key in shared:
        values = sorted({r.params.get(key, "?") for r in runs})
        if len(values) > 1:
            out.append(f"> **Warning:** the variants were trained with different {key} ({', '.join(values)}).")
    data = sorted({r.tags.get("harness.dataset", "?") for r in runs})
    if len(data) > 1:
        out.append(f"> **Warning:** the runs compared here trained on different data ({', '.join(data)}).")
    per_seed = {s: sorted({r.tags.get("harness.split_fingerprint", "?") for r in runs if r.seed == s}) for s in {r.seed for r in runs}}
    if any(r.params.get("data.split_seed") != "per_seed" for r in runs):
        per_seed = {"all": sorted({fp for fps in per_seed.values() for fp in fps})}  # one split for every seed
    for seed, fps in sorted(per_seed.items(), key=lambda kv: str(kv[0])):
        if len(fps) > 1:
            out.append(f"> **Warning:** the runs of {'seed ' + str(seed) if seed != 'all' else 'this report'} used different data splits ({', '.join(fps)}).")
    return out + ([""] if out else [])


def _comparison_table(order, runs, by_variant, comparisons: dict[str, Comparison], baseline) -> list[str]:
    lines = [
        "## Comparison",
        "",
        "Mean ± std over seeds. Gap: train minus validation accuracy at the last epoch. "
        "Δ test: the mean of the paired differences in test accuracy from the baseline (same seeds), in points, with the "
        "number of pairs; the statistics below test it.",
        "",
        "| variant | seeds | test acc (%) | best val acc (%) | final val acc (%) | final val loss | min val loss @ epoch | train–val gap | parameters | s / epoch | Δ test vs baseline (pairs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in order:
        rs = by_variant[v]
        total = sum(1 for r in runs if r.variant == v)

        def col(key: str) -> stats.Summary:
            return stats.summarize([r.metrics[key] for r in rs if key in r.metrics])

        c = comparisons.get(v)
        delta = ("(reference)" if v == baseline else "not comparable" if c is not None and c.test is None
                 else f"{stats_section.signed(c.test.diff_mean)} ({c.test.n})" if c is not None and c.test.n else "–")
        params = int(rs[0].metrics["n_params"]) if rs and "n_params" in rs[0].metrics else None
        min_loss_epoch = col("min_val_loss_epoch")
        lines.append(
            f"| {v} | {len(rs)}/{total} | {_pm(col('test_acc'))} | {_pm(col('best_val_acc'))} | {_pm(col('final_val_acc'))} | "
            f"{_pm(col('final_val_loss'), 4)} | "
            f"{_fmt(col('min_val_loss').mean, 4)} @ {_fmt(min_loss_epoch.median, 0)} | {_pm(col('final_gap_acc'))} | "
            f"{f'{params:,}' if params else '–'} | {_fmt(col('epoch_seconds_mean').mean)} | {delta} |"
        )
    return lines + [""]


def _plots(folder, order, runs, done, test, comparisons, baseline, plots, classes) -> list[str]:
    lines = ["## Plots", ""]
    rows = []
    for r in done:
        h = r.history
        for split in ("train", "val"):
            acc, loss = dict(h.get(f"{split}_acc", [])), dict(h.get(f"{split}_loss", []))
            rows += [{"variant": r.variant, "seed": r.seed, "epoch": e, "split": split, "acc": acc[e], "loss": loss[e]} for e in sorted(acc) if e in loss]
    if rows:
        curves = pd.DataFrame(rows)
        curves["variant"] = pd.Categorical(curves["variant"], [v for v in order if v in set(curves["variant"])])
        curves = curves.sort_values(["variant", "seed", "split", "epoch"])
        curves["variant"] = curves["variant"].astype(str)
        plots.learning_curves(curves, folder / "learning_curves.png")
        lines += ["![learning curves](learning_curves.png)", "",
                  "*Validation accuracy (left) and loss (right) per epoch for each variant: the line is the mean over seeds "
                  "and the band its 95% t-interval; dashed lines are the training curves, so the space between the dashed and "
                  "solid line of a colour is that variant's overfitting.*", ""]
    points = pd.DataFrame([{"variant": v, "seed": s, "test_acc": a} for v in order for s, a in sorted(test.get(v, {}).items())])
    if len(points):
        plots.test_accuracy(points, folder / "test_accuracy.png")
        lines += ["![test accuracy per variant](test_accuracy.png)", "",
                  "*Test accuracy of each variant at its selected epoch: every dot is one seed, the box spans the middle half of the seeds.*", ""]
    diffs = pd.DataFrame([
        {"variant": v, "diff": c.test.diff_mean, "ci_low": c.test.ci_low, "ci_high": c.test.ci_high}
        for v, c in comparisons.items() if c.test is not None and c.test.n >= 1
    ])
    if len(diffs):
        plots.baseline_difference(diffs, folder / "baseline_difference.png")
        lines += ["![difference from the baseline](baseline_difference.png)", "",
                  f"*Paired difference in test accuracy from `{baseline}` (points, same seeds) with its unadjusted 95% confidence "
                  "interval. An interval that crosses zero is inconclusive, not evidence that there is no difference; only the "
                  "TOST in the statistics can show that a difference lies within the margin.*", ""]
    matrices = {v: sum(r.confusion for r in done if r.variant == v and r.classes == classes) for v in order}
    matrices = {v: m for v, m in matrices.items() if isinstance(m, np.ndarray)}
    if matrices:
        plots.confusion_matrices(matrices, classes, folder / "confusion_matrices.png")
        lines += ["![confusion matrices](confusion_matrices.png)", "",
                  "*Test-set confusion matrix of each variant, summed over its seeds; each row is a true class and shows "
                  "the percentage of its images predicted as each class.*", ""]
    return lines


PLOT_FIGURES = ("learning_curves.png", "test_accuracy.png", "baseline_difference.png", "confusion_matrices.png")


def _remove_unlinked(folder: Path, text: str, figures: tuple[str, ...]) -> None:
    """Delete figures an earlier report wrote that this one no longer links."""
    for stale in figures:
        if f"({stale})" not in text and (folder / stale).exists():
            (folder / stale).unlink()


def _per_class(order, by_variant, classes) -> list[str]:
    from harness.training.evaluation import per_class

    lines = ["## Per-class results (test set)", "",
             "Precision / recall / F1 (%) per class, from each variant's confusion matrix summed over its seeds.", ""]
    variants = [v for v in order if any(r.classes == classes and classes for r in by_variant[v])]
    if not variants:
        return lines + ["No finished run has a confusion matrix.", ""]
    lines += ["| class | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    scores = {v: per_class(sum(r.confusion for r in by_variant[v] if r.classes == classes)) for v in variants}
    summed = {v: sum(1 for r in by_variant[v] if r.classes == classes) for v in variants}
    short = [f"`{v}` from {summed[v]} of its {len(by_variant[v])} finished seeds" for v in variants if summed[v] < len(by_variant[v])]
    if short:
        lines[-1:-1] = [f"> **Note:** confusion matrices are missing from the store for some runs, so these are summed over fewer seeds: "
                        f"{'; '.join(short)}.", ""]
    for i, name in enumerate(classes):
        cells = [f"{100 * s['precision'][i]:.1f} / {100 * s['recall'][i]:.1f} / {100 * s['f1'][i]:.1f}" for s in scores.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _failures(runs: list[SeedRun]) -> list[str]:
    bad = [r for r in runs if r.status != "FINISHED"]
    if not bad:
        return []
    lines = ["## Runs that did not finish", "", "They are left out of every number above.", "", "| variant | seed | state | reason |", "|---|---|---|---|"]
    for r in bad:
        reason = r.tags.get("harness.error", "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.variant} | {r.seed} | {r.status} | {reason or '–'} |")
    return lines + [""]


def _tuning(folder: Path) -> list[str]:
    """The sections `tune` wrote into `tuning/`, one per tuned variant."""
    sections = sorted((folder / "tuning").glob("*.md"))
    if not sections:
        return []
    lines = ["## Tuning", "", "Each variant's search used validation accuracy only; "
             "`python -m harness run --tuned` reruns the tuned variants over several seeds for the comparison above.", ""]
    for path in sections:
        lines += path.read_text(encoding="utf-8").rstrip().splitlines() + [""]
    return lines


def _provenance(runs: list[SeedRun]) -> list[str]:
    latest = max(runs, key=lambda r: r.start_time)
    t = latest.tags
    lines = ["## How it was made", ""]
    commands = sorted({r.tags.get("harness.command", "") for r in runs} - {""})
    lines += ["Command(s):", ""] + [f"    {c}" for c in commands] + [""]
    commits = sorted({r.tags.get("harness.git_commit", "") or "not in git" for r in runs})
    lines.append(f"- git commit: {', '.join(commits)}")
    lines.append(f"- data (dataset:content hash): {', '.join(sorted({r.tags.get('harness.dataset', '?') for r in runs}))}")
    fingerprints = sorted({r.tags.get('harness.split_fingerprint', '?') for r in runs})
    per_seed = any(r.params.get("data.split_seed") == "per_seed" for r in runs)
    lines.append(f"- split fingerprint: {', '.join(fingerprints)}" + (" (a split per seed, the same for every variant of a seed)" if per_seed else ""))
    lines.append(f"- device: {', '.join(sorted({r.tags.get('harness.device', '?') for r in runs}))}")
    env = ", ".join(f"{k} {', '.join(sorted({r.tags.get(f'harness.env.{k}', '?') for r in runs}))}" for k in ENV_KEYS if k != "device")
    lines.append(f"- determinism: {env}")
    versions = sorted(k for k in t if k.startswith("harness.version."))
    lines.append("- packages: " + ", ".join(f"{k.split('.')[-1]} {t[k]}" for k in versions))
    lines.append(f"- rebuild: `python -m harness report {checks.experiment_flag(t.get('harness.experiment', '?'))}` (reads the MLflow store only)")
    return lines
