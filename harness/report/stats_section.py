"""The report's "Statistics" section: per-variant summaries over seeds, then each variant against
the baseline paired by seed, with every number harness/report/comparisons.py computes and one verdict
line per variant that says which test decided it."""
from __future__ import annotations

import math

from harness.analysis import resampling, stats
from harness.report.comparisons import Comparison


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def p(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def signed(x: float) -> str:
    return f"{x:+.2f}" if math.isfinite(x) else "–"


def ci(low: float, high: float) -> str:
    return f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "–"


def pm(s: stats.Summary, digits: int = 2) -> str:
    if s.n == 0:
        return "–"
    return fmt(s.mean, digits) if s.n < 2 else f"{fmt(s.mean, digits)} ± {fmt(s.std, digits)}"


def per_variant(order, by_variant) -> list[str]:
    lines = ["## Statistics", "", "### Per variant", "",
             "n seeds; mean ± sample std; 95% confidence interval of the mean (t distribution); median; range.", "",
             "| variant | metric | n | mean ± std | 95% CI | median | range |", "|---|---|---|---|---|---|---|"]
    for v in order:
        for key, label in (("test_acc", "test acc (selected epoch)"), ("best_val_acc", "best val acc")):
            s = stats.summarize([r.metrics[key] for r in by_variant[v] if key in r.metrics])
            rng = f"{fmt(s.min)} – {fmt(s.max)}" if s.n else "–"
            lines.append(f"| {v} | {label} | {s.n} | {pm(s)} | {ci(s.ci_low, s.ci_high)} | {fmt(s.median)} | {rng} |")
    return lines + [""]


def against_baseline(comparisons: dict[str, Comparison], baseline: str, has_baseline: bool, analysis: stats.Analysis,
                     sources: str) -> list[str]:
    lines = [f"### Against the baseline (`{baseline}`), paired by seed", ""]
    if not has_baseline:
        return lines + [f"No finished run of the baseline `{baseline}`: no comparison is possible.", ""]
    if not comparisons:
        return lines + ["Only the baseline was run: there is nothing to compare.", ""]
    tested = {v: c for v, c in comparisons.items() if c.test is not None}
    m, a, margin = len(tested), analysis.alpha, analysis.margin
    lines += [
        sources, "",
        f"Δ: the mean over seeds of the paired difference (variant minus baseline on the same seed, in points, from counts of "
        f"correctly classified test images); pairs: seeds on which both finished. The family is the {m} comparable variant(s): "
        f"every p is Holm-corrected over all {m} (a variant that cannot be tested counts with p = 1), raw p in parentheses. "
        f"Intervals: the unadjusted 95% t interval, and the simultaneous one (Bonferroni, level 1 − {a}/{m}), which holds for all "
        f"{m} at once. t: paired t-test; permutation: exact sign-flip test over all 2^n sign patterns (seeded Monte-Carlo above "
        f"{stats.EXACT_UP_TO} pairs), with the smallest p n pairs can reach in brackets. TOST: paired equivalence test against "
        f"±{fmt(margin)} points (`[analysis] margin`). Bootstrap: 95% percentile interval of Δ resampling seeds and then test "
        f"images ({resampling.DRAWS} replicates), so it also counts the noise of a finite test set. P(improvement): the share "
        "of seeds on which the variant scored higher (ties count half), an estimate of the chance it wins on a fresh seed, with "
        "its bootstrap interval. g_z: Hedges-corrected standardized mean difference (Δ over the sd of the differences, "
        f"times the small-sample correction). Seeds for ±{fmt(margin)}: pairs a paired t-test needs for {int(stats.POWER * 100)}% "
        f"power against a true difference of {fmt(margin)} points at α/m = {a}/{max(m, 1)} (Holm's strictest step), given this "
        "spread.",
        "",
        f"Verdict, decided by the `{analysis.test}` test (`[analysis] test`): **better** / **worse** when its Holm p < {a}; "
        f"else **equivalent** when the TOST's Holm p < {a} (the difference is within ±{fmt(margin)}); else **inconclusive**: "
        "these seeds cannot tell, which is not evidence of no effect.",
        "",
        f"| variant | pairs | Δ (points) | 95% CI unadjusted | 95% CI simultaneous | t-test p Holm (raw) | permutation p Holm (raw) [min] | "
        f"TOST ±{fmt(margin)} p Holm | bootstrap 95% seeds × images | P(improvement) | g_z | seeds for ±{fmt(margin)} | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for v, c in comparisons.items():
        if c.test is None:
            lines.append(f"| {v} | – | – | – | – | – | – | – | – | – | – | – | **not comparable** |")
            notes.append(f"- `{v}`: **not comparable**: {c.reason}.")
            continue
        t, b = c.test, c.boot
        improve = f"{fmt(b.p_improve)} {ci(b.p_improve_low, b.p_improve_high)}" if b.n else "–"
        lines.append(
            f"| {v} | {t.n} | {signed(t.diff_mean)} | {ci(t.ci_low, t.ci_high)} | {ci(t.sim_low, t.sim_high)} | "
            f"{p(t.t_holm) if math.isfinite(t.t_p) else '–'} ({p(t.t_p)}) | {p(t.perm_holm)} ({p(t.perm_p)}) [{p(t.perm_min_p)}] | "
            f"{p(t.tost_holm)} | {ci(b.low, b.high)} | {improve} | {fmt(t.hedges_g)} | {c.seeds_needed or '–'} | **{t.verdict}** |")
        notes.append(f"- `{v}`: **{t.verdict}**, decided by the {t.decided_by}: {_reason(t, a)}."
                     + (f" Note: the {t.disagreement}" + (f" (with {t.n} pairs the permutation test cannot go below {p(t.perm_min_p)} "
                        "before correction, and its p is there)" if t.perm_p <= t.perm_min_p * (1 + 1e-9) else "") + "." if t.disagreement else ""))
    return lines + ["", *notes, ""]


def _reason(t: stats.Paired, alpha: float) -> str:
    if t.decided_by.startswith("seeds-on-demand"):  # a sequential verdict: the fixed-seed p is context, not the reason
        return (f"Δ {signed(t.diff_mean)} over {t.n} pair(s), see *Seeds on demand*; the fixed-seed tests, which ignore the "
                f"looks after each round, would give Holm p {p(t.p_holm)} (difference) and {p(t.tost_holm)} (equivalence)")
    if t.verdict in ("better", "worse"):
        return f"Holm p {p(t.p_holm)} < {alpha}, Δ {signed(t.diff_mean)} over {t.n} pair(s)"
    if t.verdict == "equivalent":
        return f"Holm p {p(t.p_holm)} ≥ {alpha} for a difference, TOST Holm p {p(t.tost_holm)} < {alpha} for equivalence"
    return f"Holm p {p(t.p_holm)} ≥ {alpha} for a difference and TOST Holm p {p(t.tost_holm)} ≥ {alpha} for equivalence, over {t.n} pair(s)"
