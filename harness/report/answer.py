"""The report's opening: the question the reader asked, answered in one line per variant (and per
effect of a design) with the numbers that decide it, then a table of at most six columns.

Every number here is one the details below print too; this section only puts them first.
"""
from __future__ import annotations

import math

from harness.analysis import effects, sample_size, stats
from harness.report import effects_section
from harness.report.appendix import FAILURES_ANCHOR
from harness.report.comparisons import Comparison
from harness.report.glossary import link
from harness.report.stats_section import VERDICTS_ANCHOR, ci, fmt, p, pm, signed

ANCHOR = "r-answer"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _interval(c: Comparison, sequential_interval: str) -> str:
    t = c.test
    if sequential_interval:
        return sequential_interval
    return f"95% CI {ci(t.ci_low, t.ci_high)}"


def _need(c: Comparison, margin: str) -> str:
    """What more seeds would buy, from the same power calculation as the seeds column."""
    if not c.seeds_needed:
        return ""
    n = sample_size.shown(c.seeds_needed)
    if c.question == "equivalence":
        return f"; about {n} seeds would show equivalence within ±{margin} points if there is no difference"
    return f"; about {n} seeds would find a {margin}-point difference if there is one"


def line(v: str, c: Comparison, analysis: stats.Analysis, sequential_interval: str = "") -> str:
    """One variant's answer: Δ with the interval that decided it, the seeds, the verdict and why."""
    if c.test is None:
        return f"- **{v}**: **not comparable** with the baseline: {c.reason}."
    t, margin = c.test, fmt(analysis.margin)
    head = f"- **{v}**: {signed(t.diff_mean)} points"
    if t.n < stats.MIN_PAIRS:
        return f"{head} over {_seeds(t.n)}: no verdict, a verdict needs at least {stats.MIN_PAIRS} seeds on which both finished."
    head += f", {_interval(c, sequential_interval)}, over {_seeds(t.n)}: **{t.verdict}**"
    notes = []
    if t.decided_by.startswith("seeds-on-demand"):
        head += f" by the {link('rule', 'seeds-on-demand rule')}"
    elif t.verdict in ("better", "worse"):
        notes.append(f"Holm p {p(t.p_holm)}")
    elif t.verdict == "equivalent":
        head += f" within ±{margin} points"
        notes.append(f"TOST Holm p {p(t.tost_holm)}")
    if t.shape or t.disagreement:
        notes.append(f"see the [verdict notes](#{VERDICTS_ANCHOR})")
    return head + (f" ({'; '.join(notes)})" if notes else "") + _need(c, margin) * (t.verdict == "inconclusive") + "."


def effect_line(e: effects.Effect) -> str:
    t = e.test
    if t.n < stats.MIN_PAIRS:
        return f"- **{e.name}** ({e.kind}): {signed(t.diff_mean)} points over {_seeds(t.n)}: no verdict."
    return (f"- **{e.name}** ({e.kind}): {signed(t.diff_mean)} points, 95% CI {ci(t.ci_low, t.ci_high)}, over {_seeds(t.n)}: "
            f"**{t.verdict}**, {effects_section.words(e.kind, t.verdict)}.")


def section(order: list[str], baseline: str, comparisons: dict[str, Comparison], totals: dict[str, tuple[stats.Summary, int, int]],
            analysis: stats.Analysis, intervals: dict[str, str], found: list[effects.Effect], failed: int) -> list[str]:
    """`totals`: each variant's (test accuracy summary, finished runs, runs); `intervals`: the
    seeds-on-demand interval of the variants that rule decided; `found`: a design's effects."""
    lines = [f'## <a id="{ANCHOR}"></a>Answer', ""]
    if not totals.get(baseline, (stats.summarize([]), 0, 0))[1]:
        lines.append(f"- No finished run of the baseline `{baseline}`: nothing can be compared with it yet.")
    elif not comparisons:
        lines.append(f"- Only the baseline `{baseline}` was run: there is nothing to compare.")
    lines += [line(v, c, analysis, intervals.get(v, "")) for v, c in comparisons.items()]
    lines += [effect_line(e) for e in found]
    if failed:
        lines.append(f"- {failed} run{'s' if failed != 1 else ''} did not finish and {'are' if failed != 1 else 'is'} left out: "
                     f"see [the runs that did not finish](#{FAILURES_ANCHOR}).")
    lines += ["", f"| variant | seeds | {link('selected', 'test acc (%)')} | {link('delta', 'Δ vs baseline (pairs)')} | "
              f"interval | {link('verdict', 'verdict')} |", "|---|---|---|---|---|---|"]
    for v in order:
        summary, finished, total = totals[v]
        c = comparisons.get(v)
        if v == baseline:
            delta, interval, verdict = "(reference)", "", ""
        elif c is None or c.test is None:
            delta, interval, verdict = ("not comparable", "", "**not comparable**") if c is not None else ("–", "", "")
        else:
            t = c.test
            delta = f"{signed(t.diff_mean)} ({t.n})" if t.n else "–"
            interval = intervals.get(v) or (ci(t.ci_low, t.ci_high) if not math.isnan(t.ci_low) else "–")
            verdict = f"**{t.verdict}**" if t.verdict else "–"
        lines.append(f"| {v} | {finished}/{total} | {pm(summary)} | {delta} | {interval or '–'} | {verdict or '–'} |")
    return lines + [""]
