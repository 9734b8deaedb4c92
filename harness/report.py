"""The markdown report of an experiment, built from the MLflow store alone: comparison table,
statistics against the baseline, plots with captions, per-class results and how it was made.

Building it twice from the same store gives the same files.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness import designs, report_effects, stats
from harness.designs import Design
from harness.files import atomic_write
from harness.tracking import SeedRun

ENV_KEYS = ("torch", "cuda", "cudnn", "device", "threads", "cudnn_deterministic", "deterministic_algorithms")


def build(uri: str, experiment: str, reports_dir: Path) -> Path:
    """Read the experiment (its runs and its design) from the store and write `reports_dir/report.md` with its plots."""
    from harness import tracking

    runs = tracking.read_runs(uri, experiment)
    return write(runs, experiment, reports_dir, design_of(tracking.experiment_tags(uri, experiment)))


def design_of(tags: dict[str, str]) -> Design:
    """The design the last `run` recorded on the experiment (a list design when none)."""
    from harness.tracking import DESIGN_TAG

    return designs.from_tag(tags.get(DESIGN_TAG, ""))


def test_accuracy(runs: list[SeedRun]) -> dict[str, dict[int, float]]:
    """Each variant's test accuracy by seed, from its finished runs."""
    out: dict[str, dict[int, float]] = {}
    for r in runs:
        if r.status == "FINISHED" and "test_acc" in r.metrics:
            out.setdefault(r.variant, {})[r.seed] = r.metrics["test_acc"]
    return out


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _p(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _pm(s: stats.Summary, digits: int = 2) -> str:
    if s.n == 0:
        return "–"
    return _fmt(s.mean, digits) if s.n < 2 else f"{_fmt(s.mean, digits)} ± {_fmt(s.std, digits)}"


def _ci(low: float, high: float) -> str:
    return f"[{_fmt(low)}, {_fmt(high)}]" if math.isfinite(low) else "–"


def _order(runs: list[SeedRun], baseline: str, design: Design) -> list[str]:
    present = {r.variant for r in runs}
    names = [v for v in (designs.expand(design) if design.kind != "list" else ()) if v in present] + sorted(present)
    names = list(dict.fromkeys(names))
    return ([baseline] if baseline in present else []) + [n for n in names if n != baseline]


def write(runs: list[SeedRun], experiment: str, folder: Path, design: Design = Design()) -> Path:
    """Write the report for these runs (as read from the store) into `folder`."""
    from harness import plots

    folder.mkdir(parents=True, exist_ok=True)
    if not runs:
        text = "\n".join([f"# Ablation report: {experiment}", "", "No runs in the store yet.", ""] + _tuning(folder))
        return atomic_write(folder / "report.md", text.rstrip() + "\n")
    baseline = runs[-1].tags.get("harness.baseline", "baseline")
    order = _order(runs, baseline, design)
    done = [r for r in runs if r.status == "FINISHED"]
    by_variant = {v: [r for r in done if r.variant == v] for v in order}
    accuracy = test_accuracy(runs)
    test = {v: accuracy.get(v, {}) for v in order}
    has_baseline = bool(test.get(baseline))
    comparisons = stats.compare_all(test[baseline], {v: test[v] for v in order if v != baseline}) if has_baseline else {}

    lines = [f"# Ablation report: {experiment}", ""]
    epochs = sorted({r.params.get("train.epochs", "?") for r in runs})
    seeds = sorted({r.seed for r in runs})
    lines += [
        f"{len(order)} variant(s) × {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), {', '.join(epochs)} epoch(s); "
        f"{len(done)} of {len(runs)} runs finished. Baseline: `{baseline}`. Test accuracy is measured once per run, "
        f"on the weights of the epoch selected on validation (`train.select` = {runs[0].params.get('train.select', 'val_acc')}).",
        "",
    ]
    lines += _warnings(runs)
    lines += _comparison_table(order, runs, by_variant, test, baseline)
    lines += _statistics(order, by_variant, comparisons, baseline, has_baseline)
    classes = next((r.classes for r in done if r.classes), ())  # as the runs stored them with their confusion matrices
    lines += _plots(folder, order, runs, done, test, comparisons, baseline, plots, classes)
    lines += report_effects.section(design, test, folder, _fmt, _p)
    _remove_unlinked(folder, "\n".join(lines), PLOT_FIGURES + report_effects.FIGURES)
    lines += _per_class(order, by_variant, classes)
    lines += _failures(runs)
    lines += _tuning(folder)
    lines += _provenance(runs)
    return atomic_write(folder / "report.md", "\n".join(lines).rstrip() + "\n")


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
    fps = sorted({r.tags.get("harness.split_fingerprint", "?") for r in runs})
    if len(fps) > 1:
        out.append(f"> **Warning:** the runs used different data splits ({', '.join(fps)}).")
    return out + ([""] if out else [])


def _comparison_table(order, runs, by_variant, test, baseline) -> list[str]:
    lines = [
        "## Comparison",
        "",
        "Mean ± std over seeds. Gap: train minus validation accuracy at the last epoch. "
        "Δ test: difference of mean test accuracy from the baseline, in points.",
        "",
        "| variant | seeds | test acc (%) | best val acc (%) | final val acc (%) | final val loss | min val loss @ epoch | train–val gap | parameters | s / epoch | Δ test vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base_mean = stats.summarize(list(test.get(baseline, {}).values())).mean
    for v in order:
        rs = by_variant[v]
        total = sum(1 for r in runs if r.variant == v)

        def col(key: str) -> stats.Summary:
            return stats.summarize([r.metrics[key] for r in rs if key in r.metrics])

        t = col("test_acc")
        delta = "(reference)" if v == baseline else (f"{t.mean - base_mean:+.2f}" if t.n and math.isfinite(base_mean) else "–")
        params = int(rs[0].metrics["n_params"]) if rs and "n_params" in rs[0].metrics else None
        min_loss_epoch = col("min_val_loss_epoch")
        lines.append(
            f"| {v} | {len(rs)}/{total} | {_pm(t)} | {_pm(col('best_val_acc'))} | {_pm(col('final_val_acc'))} | "
            f"{_pm(col('final_val_loss'), 4)} | "
            f"{_fmt(col('min_val_loss').mean, 4)} @ {_fmt(min_loss_epoch.median, 0)} | {_pm(col('final_gap_acc'))} | "
            f"{f'{params:,}' if params else '–'} | {_fmt(col('epoch_seconds_mean').mean)} | {delta} |"
        )
    return lines + [""]


def _statistics(order, by_variant, comparisons, baseline, has_baseline) -> list[str]:
    lines = [
        "## Statistics",
        "",
        "### Per variant",
        "",
        "n seeds; mean ± sample std; 95% confidence interval of the mean (t distribution); median; range.",
        "",
        "| variant | metric | n | mean ± std | 95% CI | median | range |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in order:
        for key, label in (("test_acc", "test acc (selected epoch)"), ("best_val_acc", "best val acc")):
            s = stats.summarize([r.metrics[key] for r in by_variant[v] if key in r.metrics])
            rng = f"{_fmt(s.min)} – {_fmt(s.max)}" if s.n else "–"
            lines.append(f"| {v} | {label} | {s.n} | {_pm(s)} | {_ci(s.ci_low, s.ci_high)} | {_fmt(s.median)} | {rng} |")
    lines += ["", f"### Against the baseline (`{baseline}`), paired by seed", ""]
    if not has_baseline:
        return lines + [f"No finished run of the baseline `{baseline}`: no comparison is possible.", ""]
    if not comparisons:
        return lines + ["Only the baseline was run: there is nothing to compare.", ""]
    lines += [
        "Difference = variant minus baseline test accuracy on the same seed (same split, same batch order), in points. "
        "p-values: paired t-test and Wilcoxon signed-rank test, two-sided; Holm: the t-test's p corrected for "
        f"{len(comparisons)} comparison(s). Effect size: Cohen's d_z (mean difference / std of differences). "
        f"Detectable: the smallest true difference a paired t-test at α = {stats.ALPHA} would find with {int(stats.POWER * 100)}% power "
        "given the observed spread and number of seeds; a \"no detectable difference\" next to a large detectable value means too few seeds, not no effect.",
        "",
        "| variant | n pairs | difference | 95% CI | t-test p | Wilcoxon p | Holm p | effect size d_z | detectable | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, c in comparisons.items():
        if c.n < 2:
            lines.append(f"| {v} | {c.n} | {_signed(c.diff_mean)} | – | – | – | – | – | – | {c.verdict} |")
            continue
        lines.append(
            f"| {v} | {c.n} | {_signed(c.diff_mean)} | {_ci(c.ci_low, c.ci_high)} | {_p(c.t_p)} | {_p(c.wilcoxon_p)} | "
            f"{_p(c.p_holm)} | {_fmt(c.effect_size)} | ±{_fmt(c.detectable)} | **{c.verdict}** |"
        )
    if any(2 <= c.n < 6 for c in comparisons.values()):
        lines += ["", "With fewer than 6 pairs the two-sided Wilcoxon test cannot reach p < 0.05 whatever the data; the t-test decides the verdict."]
    return lines + [""]


def _signed(x: float) -> str:
    return f"{x:+.2f}" if math.isfinite(x) else "–"


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
        {"variant": v, "diff": c.diff_mean, "ci_low": c.ci_low, "ci_high": c.ci_high} for v, c in comparisons.items() if c.n >= 1
    ])
    if len(diffs):
        plots.baseline_difference(diffs, folder / "baseline_difference.png")
        lines += ["![difference from the baseline](baseline_difference.png)", "",
                  f"*Paired difference in test accuracy from `{baseline}` (points, same seeds) with its 95% confidence interval: "
                  "an interval that crosses zero is no evidence of a difference.*", ""]
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
    from harness.evaluation import per_class

    lines = ["## Per-class results (test set)", "",
             "Precision / recall / F1 (%) per class, from each variant's confusion matrix summed over its seeds.", ""]
    variants = [v for v in order if any(r.classes == classes and classes for r in by_variant[v])]
    if not variants:
        return lines + ["No finished run has a confusion matrix.", ""]
    lines += ["| class | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    scores = {v: per_class(sum(r.confusion for r in by_variant[v] if r.classes == classes)) for v in variants}
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
    lines.append(f"- split fingerprint: {', '.join(sorted({r.tags.get('harness.split_fingerprint', '?') for r in runs}))}")
    lines.append(f"- device: {', '.join(sorted({r.tags.get('harness.device', '?') for r in runs}))}")
    env = ", ".join(f"{k} {', '.join(sorted({r.tags.get(f'harness.env.{k}', '?') for r in runs}))}" for k in ENV_KEYS if k != "device")
    lines.append(f"- determinism: {env}")
    versions = sorted(k for k in t if k.startswith("harness.version."))
    lines.append("- packages: " + ", ".join(f"{k.split('.')[-1]} {t[k]}" for k in versions))
    lines.append(f"- rebuild: `python -m harness report --experiment {t.get('harness.experiment', '?')}` (reads the MLflow store only)")
    return lines
