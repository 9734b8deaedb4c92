"""The report's opening: the question the reader asked, answered in one line per variant (and per
effect of a design) with the numbers that decide it, then a table of at most six columns.

Every number here is one the details below print too; this section only puts them first.
"""

from __future__ import annotations

import math

from harness.analysis import effects, sample_size, stats
from harness.base.escaping import code
from harness.report import effects_section
from harness.report.appendix import FAILURES_ANCHOR
from harness.report.comparisons import Comparison
from harness.report.glossary import link
from harness.report.sequential_section import Decision
from harness.report.stats_section import VERDICTS_ANCHOR, ci, fmt, p, pm, signed, text
from harness.tracking.readback import SeedRun

ANCHOR = "r-answer"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _interval(t: stats.Paired) -> str:
    """The fixed-seed interval that decided the verdict as the answer names it: for an equivalent
    one the equivalence test's, at the level Holm tested it (inside ±margin); else the 95% t
    interval or the sign-flip test's."""
    if t.verdict == "equivalent" and math.isfinite(t.eq_low):
        level = f"{100 * t.eq_confidence:.3g}%"
        return f"{link('tost', f'{level} equivalence interval')} {ci(t.eq_low, t.eq_high)}"
    name = "95% CI" if t.interval == "t" else link("intervals", "95% sign-flip interval")
    return f"{name} {ci(t.ci_low, t.ci_high)}"


def _need(c: Comparison, margin: str) -> str:
    """What more seeds would buy, from the same power calculation as the seeds column."""
    if not c.seeds_needed:
        return ""
    n = sample_size.shown(c.seeds_needed)
    if c.question == "equivalence":
        return f"; about {n} seeds would show equivalence within ±{margin} points if there is no difference"
    return f"; about {n} seeds would find a {margin}-point difference if there is one"


def line(v: str, c: Comparison, analysis: stats.Analysis, rule: Decision | None = None) -> str:
    """One variant's answer: Δ with the interval that decided it, the seeds, the verdict and why;
    `rule`: the seeds-on-demand decision, when that rule decided the variant."""
    name, margin = f"- **{text(v)}**", fmt(analysis.margin)
    if c.test is None:
        return f"{name}: **not comparable** with the baseline: {text(c.reason)}."
    t = c.test
    if rule is not None:
        head = f"{name}: {signed(rule.mean)} points, {rule.text}, over {_seeds(rule.n)}"
        if rule.still_open:
            return (
                f"{head}: **open**: the {link('rule', 'seeds-on-demand')} design is not finished; `run` again to go on."
            )
        within = f" within ±{margin} points" if rule.verdict == "equivalent" else ""
        warn = f" (see the [verdict notes](#{VERDICTS_ANCHOR}))" if t.shape or t.disagreement else ""
        return f"{head}: **{t.verdict}**{within} by the {link('rule', 'seeds-on-demand rule')}{warn}."
    if t.n < stats.MIN_PAIRS:
        return (
            f"{name}: {signed(t.diff_mean)} points over {_seeds(t.n)}: **{t.verdict}**: no test can decide on fewer than "
            f"{stats.MIN_PAIRS} seeds on which both finished. Next: the same command with `--seeds {max(stats.MIN_PAIRS, 5)}` "
            "(the runs already finished are kept), or `--seeds auto` to add seeds until each comparison is decided."
        )
    notes = []
    if t.verdict in ("better", "worse"):
        notes.append(f"Holm p {p(t.p_holm)}")
    elif t.verdict == "equivalent":
        notes.append(f"TOST Holm p {p(t.tost_holm)}")
    alone = _normality_alone(t)
    if alone:
        notes.append(alone)
    if t.shape or t.disagreement:
        notes.append(f"see the [verdict notes](#{VERDICTS_ANCHOR})")
    within = f" within ±{fmt(t.margin)} points" if t.verdict == "equivalent" else ""
    need = _need(c, margin) if t.verdict == "inconclusive" else ""
    return (
        f"{name}: {signed(t.diff_mean)} points, {_interval(t)}, over {_seeds(t.n)}: **{t.verdict}**{within}"
        + (f" ({'; '.join(notes)})" if notes else "")
        + need
        + "."
    )


def _normality_alone(t: stats.Paired) -> str:
    """A t verdict the sign-flip test could not have reached at the level Holm tested it at: it
    rests on normal differences alone. For a difference the sign-flip floor is 2 / 2^k (k non-zero
    differences); for equivalence each one-sided test's is 1 / 2^n."""
    if t.interval != "t" or t.verdict == "inconclusive":
        return ""
    if t.verdict == "equivalent":
        level, floor, what = (1 - t.eq_confidence) / 2, 0.5**t.n, f"{t.n} pairs"
        need = math.ceil(math.log2(1 / level))
    else:
        level, floor, what = t.p_level, t.perm_min_p, f"{t.n - t.ties} non-zero differences"
        need = math.ceil(math.log2(2 / level))
    if not floor > level:
        return ""
    return (
        f"on the t-test's normality alone: with {what} the sign-flip test cannot go below {p(floor)}, above the "
        f"level {level:.3g} it was tested at ({need} can reach it)"
    )


def effect_line(e: effects.Effect) -> str:
    t = e.test
    if t.n < stats.MIN_PAIRS:
        return f"- **{text(e.name)}** ({e.kind}): {signed(t.diff_mean)} points over {_seeds(t.n)}: **{t.verdict}**, too few seeds to decide."
    said = effects_section.words(e.kind, t.verdict)
    return (
        f"- **{text(e.name)}** ({e.kind}): {signed(t.diff_mean)} points, {_interval(t)}, over {_seeds(t.n)}: "
        f"**{t.verdict}**" + (f", {said}" if said != t.verdict else "") + "."
    )


def _row(v: str, baseline: str, c: Comparison | None, rule: Decision | None) -> tuple[str, str, str]:
    """(Δ with its pairs, interval, verdict) cells of one variant."""
    if v == baseline:
        return "(reference)", "–", "–"
    if c is None:
        return "–", "–", "–"
    if c.test is None:
        return "not comparable", "–", "**not comparable**"
    if rule is not None:
        return f"{signed(rule.mean)} ({rule.n})", rule.text, "**open**" if rule.still_open else f"**{c.test.verdict}**"
    t = c.test
    return (
        f"{signed(t.diff_mean)} ({t.n})" if t.n else "–",
        ci(t.ci_low, t.ci_high) if not math.isnan(t.ci_low) else "–",
        f"**{t.verdict}**" if t.n else "–",
    )


def section(
    runs: list[SeedRun],
    order: list[str],
    baseline: str,
    test: dict[str, dict[int, float]],
    comparisons: dict[str, Comparison],
    analysis: stats.Analysis,
    rules: dict[str, Decision],
    found: list[effects.Effect],
) -> list[str]:
    """The answer for these runs; `test`: each variant's test accuracy by seed; `rules`: the
    seeds-on-demand decision of each variant that rule decided; `found`: a design's effects."""
    lines = [f'## <a id="{ANCHOR}"></a>Answer', ""]
    if not test.get(baseline):
        lines.append(f"- No finished run of the baseline {code(baseline)}: nothing can be compared with it yet.")
    elif not comparisons:
        lines.append(f"- Only the baseline {code(baseline)} was run: there is nothing to compare.")
    lines += [line(v, c, analysis, rules.get(v)) for v, c in comparisons.items()]
    lines += [effect_line(e) for e in found]
    failed = sum(1 for r in runs if r.status != "FINISHED")
    if failed:
        lines.append(
            f"- {failed} run{'s' if failed != 1 else ''} did not finish and {'are' if failed != 1 else 'is'} left out: "
            f"see [the runs that did not finish](#{FAILURES_ANCHOR})."
        )
    lines += [
        "",
        f"| variant | seeds | {link('selected', 'test acc (%)')} | {link('delta', 'Δ vs baseline (pairs)')} | "
        f"interval | {link('verdict', 'verdict')} |",
        "|---|---|---|---|---|---|",
    ]
    for v in order:
        finished = sum(1 for r in runs if r.variant == v and r.status == "FINISHED")
        total = sum(1 for r in runs if r.variant == v)
        delta, interval, verdict = _row(v, baseline, comparisons.get(v), rules.get(v))
        lines.append(
            f"| {text(v)} | {finished}/{total} | {pm(stats.summarize(list(test.get(v, {}).values())))} | {delta} | {interval} | {verdict} |"
        )
    return lines + [""]
