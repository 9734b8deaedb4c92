"""The report's "Statistics" section: per-variant summaries over seeds, then each variant against
the baseline paired by seed, with every number harness/report/comparisons.py computes and one verdict
line per variant that says which test decided it."""
from __future__ import annotations

import math

from harness.analysis import resampling, sample_size, signflip, stats
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
    if low == -math.inf and high == math.inf:
        return "(−∞, +∞)"
    return f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "–"


def win_rate(t: stats.Paired, alpha: float) -> str:
    """k/n seeds won, with the Clopper–Pearson interval of the rate."""
    if t.n == 0:
        return "–"
    low, high = stats.win_interval(t.wins, t.n, alpha)
    return f"{t.wins}/{t.n}{f' ({t.ties} tied)' if t.ties else ''} [{fmt(low)}, {fmt(high)}]"


def seeds_cell(needed: int, question: str) -> str:
    return f"{sample_size.shown(needed)} ({question})" if needed else "– (fewer than 3 pairs)"


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
        f"Intervals: the unadjusted 95% interval, and the simultaneous one (Bonferroni, level 1 − {a}/{m}), which holds for all "
        f"{m} at once, both of the deciding test: t intervals, or where the sign-flip test decides (`[analysis] test = "
        "\"permutation\"`, or no spread between seeds) the shifts that test does not reject, (−∞, +∞) when its smallest p is "
        "above the level. A simultaneous interval that excludes zero therefore always comes with better or worse; the reverse "
        "can fail at Holm's later steps, and the verdict line then says so. "
        f"t: paired t-test; permutation: exact sign-flip test over all 2^n sign patterns (seeded Monte-Carlo above "
        f"{signflip.EXACT_UP_TO} pairs), with the smallest p these pairs can reach in brackets (2 / 2^k for the k non-zero "
        f"differences). TOST: paired equivalence test against ±{fmt(margin)} points (`[analysis] margin`). Bootstrap: a "
        f"t-based interval of Δ whose standard error comes from a crossed bootstrap ({resampling.DRAWS} replicates: seeds "
        "resampled, and one resample of the shared test images per replicate), so it also counts the noise of a finite test "
        "set. Seeds won: on how many seeds the variant scored higher, with the Clopper–Pearson 95% interval of that rate "
        "(a tie is no win). g_z: Hedges-corrected standardized mean difference (Δ over the sd of the differences, "
        f"times the small-sample correction). Seeds for ±{fmt(margin)}: at Holm's strictest level α/m = {a}/{max(m, 1)}, "
        f"given this spread, the pairs for {int(sample_size.POWER * 100)}% power to show equivalence within ±{fmt(margin)} (paired "
        f"TOST, no true difference) where |Δ| is within the margin, else to find a true difference of {fmt(margin)} points "
        "(paired t-test); not estimable below 3 pairs.",
        "",
        f"Verdict, decided by the `{analysis.test}` test (`[analysis] test`): **better** / **worse** when its Holm p < {a}; "
        f"else **equivalent** when the TOST's Holm p < {a} (the difference is within ±{fmt(margin)}); else **inconclusive**: "
        f"these seeds cannot tell, which is not evidence of no effect. Fewer than {stats.MIN_PAIRS} pairs give no verdict. "
        "The t-test assumes roughly normal paired differences; a verdict line warns where they look skewed or a seed is an "
        "outlier.",
        "",
        f"| variant | pairs | Δ (points) | 95% CI unadjusted | 95% CI simultaneous | t-test p Holm (raw) | permutation p Holm (raw) [min] | "
        f"TOST ±{fmt(margin)} p Holm | bootstrap 95% seeds × images | seeds won | g_z | seeds for ±{fmt(margin)} | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for v, c in comparisons.items():
        if c.test is None:
            lines.append(f"| {v} | – | – | – | – | – | – | – | – | – | – | – | **not comparable** |")
            notes.append(f"- `{v}`: **not comparable**: {c.reason}.")
            continue
        t, b = c.test, c.boot
        lines.append(
            f"| {v} | {t.n} | {signed(t.diff_mean)} | {ci(t.ci_low, t.ci_high)} | {ci(t.sim_low, t.sim_high)} | "
            f"{p(t.t_holm) if math.isfinite(t.t_p) else '–'} ({p(t.t_p)}) | {p(t.perm_holm)} ({p(t.perm_p)}) [{p(t.perm_min_p)}] | "
            f"{p(t.tost_holm)} | {ci(b.low, b.high) if b.n else '–'} | {win_rate(t, a)} | {fmt(t.hedges_g)} | "
            f"{seeds_cell(c.seeds_needed, c.question)} | **{t.verdict}** |")
        notes.append(f"- `{v}`: **{t.verdict}**, decided by the {t.decided_by}: {_reason(t, a)}."
                     + (f" Note: the {t.disagreement}" + (f" (with {t.n} pairs the permutation test cannot go below {p(t.perm_min_p)} "
                        "before correction, and its p is there)" if t.perm_p <= t.perm_min_p * (1 + 1e-9) else "") + "." if t.disagreement else "")
                     + (f" Warning: {t.shape}; the t-test's error rates assume roughly normal differences, the sign-flip test "
                        "(`[analysis] test = \"permutation\"`) only their symmetry." if t.shape else ""))
    return lines + ["", *notes, ""]


def _reason(t: stats.Paired, alpha: float) -> str:
    if t.decided_by.startswith("seeds-on-demand"):  # a sequential verdict: the fixed-seed p is context, not the reason
        return (f"Δ {signed(t.diff_mean)} over {t.n} pair(s), see *Seeds on demand*; the fixed-seed tests, which ignore the "
                f"looks after each round, would give Holm p {p(t.p_holm)} (difference) and {p(t.tost_holm)} (equivalence), and their "
                "intervals in the table are fixed-sample too: they may exclude zero where the sequential rule, whose boundaries "
                "are stricter, is not decided (its repeated intervals are in *Seeds on demand*)")
    if t.verdict in ("better", "worse"):
        return f"Holm p {p(t.p_holm)} < {alpha}, Δ {signed(t.diff_mean)} over {t.n} pair(s)"
    if t.verdict == "equivalent":
        return f"Holm p {p(t.p_holm)} ≥ {alpha} for a difference, TOST Holm p {p(t.tost_holm)} < {alpha} for equivalence"
    return f"Holm p {p(t.p_holm)} ≥ {alpha} for a difference and TOST Holm p {p(t.tost_holm)} ≥ {alpha} for equivalence, over {t.n} pair(s)"
