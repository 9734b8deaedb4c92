"""The report's "Statistics" section: per-variant summaries over seeds, then each variant against
the baseline paired by seed, with every number harness/report/comparisons.py computes and one verdict
line per variant that says which test decided it."""

from __future__ import annotations

import math

from harness.analysis import sample_size, stats
from harness.base.escaping import code
from harness.base.escaping import markdown as text  # noqa: F401 - the report's modules take it from here
from harness.report.comparisons import Comparison
from harness.report.glossary import link


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
    lines = [
        "### Per variant",
        "",
        f"| variant | metric | n | {link('summary', 'mean ± std')} | 95% CI | median | range |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in order:
        for key, label in (("test_acc", "test acc (selected epoch)"), ("best_val_acc", "best val acc")):
            s = stats.summarize([r.metrics[key] for r in by_variant[v] if key in r.metrics])
            rng = f"{fmt(s.min)} – {fmt(s.max)}" if s.n else "–"
            lines.append(
                f"| {text(v)} | {label} | {s.n} | {pm(s)} | {ci(s.ci_low, s.ci_high)} | {fmt(s.median)} | {rng} |"
            )
    return lines + [""]


def against_baseline(
    comparisons: dict[str, Comparison], baseline: str, has_baseline: bool, analysis: stats.Analysis
) -> list[str]:
    """Two tables of at most 7 columns (the intervals, then the tests) and one verdict line per
    variant; the definitions are in the glossary the headers link to."""
    lines = [f"### Against the baseline ({code(baseline)}), paired by seed", ""]
    if not has_baseline:
        return lines + [f"No finished run of the baseline {code(baseline)}: no comparison is possible.", ""]
    if not comparisons:
        return lines + ["Only the baseline was run: there is nothing to compare.", ""]
    a, margin = analysis.alpha, fmt(analysis.margin)
    lines += [
        f"What the intervals cover: see {link('sources', 'what the seeds vary')}. Every p is {link('holm', 'Holm')}-corrected "
        f"over the comparable variants, raw p in parentheses; the {code(analysis.test)} test decides the {link('verdict', 'verdict')}.",
        "",
        "#### Intervals",
        "",
        f"| variant | pairs | {link('delta', 'Δ (points)')} | {link('intervals', '95% CI unadjusted')} | "
        f"{link('intervals', '95% CI simultaneous')} | {link('seeds-images', '95% seeds × images (sensitivity)')} | {link('verdict', 'verdict')} |",
        "|---|---|---|---|---|---|---|",
    ]
    tests = [
        "#### Tests",
        "",
        f"| variant | {link('t', 't-test p Holm (raw)')} | {link('permutation', 'permutation p')} Holm (raw) [min] | "
        f"{link('tost', f'TOST ±{margin} p Holm')} | {link('won', 'seeds won')} | {link('gz', 'g_z')} | {link('seeds', f'seeds for ±{margin}')} |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for v, c in comparisons.items():
        if c.test is None:
            lines.append(f"| {text(v)} | – | – | – | – | – | **not comparable** |")
            tests.append(f"| {text(v)} | – | – | – | – | – | – |")
            notes.append(f"- {code(v)}: **not comparable**: {text(c.reason)}.")
            continue
        t, b = c.test, c.seeds_images
        lines.append(
            f"| {text(v)} | {t.n} | {signed(t.diff_mean)} | {ci(t.ci_low, t.ci_high)} | {ci(t.sim_low, t.sim_high)} | "
            f"{ci(b.low, b.high) if b.n else '–'} | **{t.verdict}** |"
        )
        tests.append(
            f"| {text(v)} | {p(t.t_holm) if math.isfinite(t.t_p) else '–'} ({p(t.t_p)}) | {p(t.perm_holm)} ({p(t.perm_p)}) [{p(t.perm_min_p)}] | "
            f"{p(t.tost_holm)} | {win_rate(t, a)} | {fmt(t.hedges_g)} | {seeds_cell(c.seeds_needed, c.question)} |"
        )
        notes.append(
            f"- {code(v)}: **{t.verdict}**, decided by the {t.decided_by}: {_reason(t, a)}."
            + (
                f" Note: the {t.disagreement}"
                + (
                    f" (with {t.n} pairs the permutation test cannot go below {p(t.perm_min_p)} "
                    "before correction, and its p is there)"
                    if t.perm_p <= t.perm_min_p * (1 + 1e-9)
                    else ""
                )
                + "."
                if t.disagreement
                else ""
            )
            + (
                f" Warning: {t.shape}; the t-test's error rates assume roughly normal differences, the sign-flip test "
                '(`[analysis] test = "permutation"`) only their symmetry.'
                if t.shape
                else ""
            )
        )
    return lines + [""] + tests + ["", f'#### <a id="{VERDICTS_ANCHOR}"></a>Verdicts', "", *notes, ""]


VERDICTS_ANCHOR = "r-verdicts"


def _reason(t: stats.Paired, alpha: float) -> str:
    if t.decided_by.startswith("seeds-on-demand"):  # a sequential verdict: the fixed-seed p is context, not the reason
        return (
            f"Δ {signed(t.diff_mean)} over {t.n} pair(s), see *Seeds on demand*; the fixed-seed tests, which ignore the "
            f"looks after each round, would give Holm p {p(t.p_holm)} (difference) and {p(t.tost_holm)} (equivalence), and their "
            "intervals in the table are fixed-sample too: they may exclude zero where the sequential rule, whose boundaries "
            "are stricter, is not decided (its repeated intervals are in *Seeds on demand*)"
        )
    if t.verdict in ("better", "worse"):
        return f"Holm p {p(t.p_holm)} < {alpha}, Δ {signed(t.diff_mean)} over {t.n} pair(s)"
    if t.verdict == "equivalent":
        return (
            f"Holm p {p(t.p_holm)} ≥ {alpha} for a difference, TOST Holm p {p(t.tost_holm)} < {alpha} for equivalence"
        )
    return f"Holm p {p(t.p_holm)} ≥ {alpha} for a difference and TOST Holm p {p(t.tost_holm)} ≥ {alpha} for equivalence, over {t.n} pair(s)"
