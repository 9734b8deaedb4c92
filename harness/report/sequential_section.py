"""The report's account of seeds on demand: the rounds as replayed from the store, each variant's
seeds and the round it was decided in, the interval narrowing round by round, and the verdicts
the sequential rule gives (they replace the fixed-seed verdicts of the variants it decided)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from harness.analysis import sequential, stats
from harness.analysis.sequential import Walk
from harness.base.escaping import code
from harness.report import stats_section
from harness.report.comparisons import Comparison, counts
from harness.report.glossary import link
from harness.tracking import experiment_tags
from harness.tracking.experiment_tags import SeedsOnDemand
from harness.tracking.readback import SeedRun

FIGURE = "sequential_intervals.png"


def replay(tags: dict[str, str], runs: list[SeedRun], analysis: stats.Analysis) -> tuple[SeedsOnDemand, Walk] | None:
    """The design the last `run` recorded, replayed on the store's runs: (the design, the walk); None for fixed seeds."""
    s = experiment_tags.sequential_of(tags)
    if s is None:
        return None
    tried = {(r.variant, r.seed) for r in runs if r.status in ("FINISHED", "FAILED")}
    return s, sequential.decide(counts(runs), tried, s.baseline, list(s.variants), s.seeds, s.plan, analysis, s.rule)


def verdicts(comparisons: dict[str, Comparison], walk: Walk) -> dict[str, Comparison]:
    """The comparisons with the sequential rule's verdicts for the variants it covers."""
    out = dict(comparisons)
    for v, track in walk.tracks.items():
        c = out.get(v)
        if c is not None and c.test is not None:
            verdict = track.verdict if track.verdict in stats.VERDICTS else "inconclusive"
            why = track.by or f"still open after round {len(walk.rounds)}"
            out[v] = replace(c, test=replace(c.test, verdict=verdict, decided_by=f"seeds-on-demand rule ({why})"))
    return out


def _deciding(t: sequential.Track) -> sequential.Look | None:
    """The look a verdict stands on: the one that decided an equivalence, else the last."""
    if t.verdict == "equivalent":
        found = [lk for lk in t.looks if math.isfinite(lk.eq_low)]
        if found:
            return found[-1]
    return t.looks[-1] if t.looks else None


@dataclass(frozen=True)
class Decision:
    """What a seeds-on-demand verdict stands on: the deciding look's Δ, pairs and interval."""

    verdict: str  # the rule's: better | worse | equivalent | inconclusive (budget spent) | open
    n: int
    mean: float
    low: float
    high: float
    text: str  # the interval as printed, with its level
    still_open: bool  # the design is not finished and this variant is not decided yet


def decision(walk: Walk, variant: str) -> Decision | None:
    """The rule's decision for `variant`; None when it has no look for it."""
    t = walk.tracks.get(variant)
    lk = _deciding(t) if t is not None else None
    if lk is None:
        return None
    equivalence = t.verdict == "equivalent" and math.isfinite(lk.eq_low)
    low, high = (lk.eq_low, lk.eq_high) if equivalence else (lk.low, lk.high)
    return Decision(
        t.verdict,
        lk.n,
        lk.mean,
        low,
        high,
        sequential.interval_text(lk, t.verdict),
        t.verdict == sequential.OPEN and bool(walk.next),
    )


def seeds_of(walk: Walk, variant: str) -> int:
    return max((len(r.seeds) for r in walk.rounds if variant in r.trained), default=0)


def _last_nominal(plan, alpha: float) -> str:
    """The nominal two-sided p of the last t boundary of a one-variant design with no failures."""
    ns = tuple(range(max(plan.min_seeds, sequential.MIN_PAIRS), plan.max_seeds + 1))
    c = sequential.boundaries(ns, tuple(n / plan.max_seeds for n in ns), alpha, True)[-1]
    return f"{sequential.p_value(c, plan.max_seeds, True):.3f}"


def _cell(text: str) -> str:
    """Text for a markdown table cell (|t| would end the cell)."""
    return text.replace("|", "\\|")


def section(replayed: tuple[SeedsOnDemand, Walk] | None, folder: Path, analysis: stats.Analysis) -> list[str]:
    if replayed is None:
        return []
    from harness.report import plots

    s, walk = replayed
    plan, baseline = s.plan, s.baseline
    fixed = (len(s.variants) + 1) * plan.max_seeds
    used = sequential.runs_used(walk.rounds)
    state = (
        "finished"
        if not walk.next
        else f"not finished: round {len(walk.rounds) + 1} still needs {', '.join(f'{v} seed {x}' for v, x in walk.next)}"
    )
    lines = [
        "## Seeds on demand",
        "",
        f"Seeds were added in rounds until each comparison with {code(baseline)} was decided: round 1 trained {plan.min_seeds} seeds "
        f"of every variant, each later round one more seed of the baseline and of every variant still open, up to "
        f"{plan.max_seeds} seeds. A decided variant stops; one still open after the last round is inconclusive. The design is {state}.",
        "",
        f"The {link('rule', 'rule')} decides each look; the {link('sequential-interval', 'interval')} column shows what each "
        "verdict stands on.",
        "",
        *(
            [
                f"**The design was changed after it started** (`--redesign`): {'; '.join(s.changes)}. The rounds are replayed under "
                "the changed design, and its error rates do not hold for a design changed after seeing results (raising max_seeds "
                "after an inconclusive end, for one, lifts the false-verdict rate above α).",
                "",
            ]
            if s.changes
            else []
        ),
        "| variant | seeds | decided in round | verdict | Δ at the look (pairs) | interval (level) | decided by |",
        "|---|---|---|---|---|---|---|",
    ]
    warnings = []
    for v, t in walk.tracks.items():
        lk = _deciding(t)
        delta = f"{stats_section.signed(lk.mean)} ({lk.n})" if lk else "–"
        interval = sequential.interval_text(lk, t.verdict) if lk else "–"
        lines.append(
            f"| {stats_section.text(v)} | {seeds_of(walk, v)} | {t.decided_in or '–'} | **{t.verdict}** | {delta} | {interval} | {_cell(t.by or '–')} |"
        )
        if t.shape:
            warnings.append(
                f"- {code(v)}: warning: {t.shape}. The rule's error rates assume roughly normal paired differences; "
                'under skew they rise (see *What it assumes*); `[analysis] test = "permutation"` needs only symmetry.'
            )
    lines += ["", *warnings] if warnings else []
    saved = 100 * (1 - used / fixed) if fixed else 0.0
    lines += [
        "",
        f"{used} runs trained (the baseline included) where a fixed {plan.max_seeds} seeds would train {fixed}: "
        f"{saved:.0f}% of the compute saved.",
        "",
        "Rounds:",
        "",
    ]
    lines += [f"- {sequential.describe(r, walk.tracks)}" for r in walk.rounds] + [""]
    lines += [
        "The statistics above treat each variant's seeds as if fixed in advance; after stopping early their p-values and "
        "intervals are optimistic. The verdicts of the variants listed here come from the sequential rule, whose repeated "
        "confidence intervals hold at every round at once.",
        "",
        "What it assumes: the t route's boundaries are exact for roughly normal paired differences; skewed differences raise "
        "its false-verdict rate (simulated in tests/analysis/test_sequential.py and quoted in docs/seeds-on-demand.md), and the report "
        "warns where a variant's differences look skewed. A look decides nothing below 3 pairs, and a look without spread "
        "between seeds is decided by the sign-flip test or not at all. The last boundary is stricter than a fixed test's "
        f"(nominal p {_last_nominal(s.plan, analysis.alpha)} at α = {analysis.alpha} for one variant), the price of "
        "looking after every round.",
        "",
    ]
    rows = [
        {
            "variant": v,
            "seeds": lk.n,
            "diff": lk.mean,
            "low": lk.eq_low if math.isfinite(lk.eq_low) else lk.low,
            "high": lk.eq_high if math.isfinite(lk.eq_low) else lk.high,
        }
        for v, t in walk.tracks.items()
        for lk in t.looks
        if math.isfinite(lk.mean)
    ]
    if rows:
        plots.sequential_intervals(rows, analysis.margin, folder / FIGURE)
        lines += [
            f"![interval narrowing]({FIGURE})",
            "",
            f"*Each variant's paired difference from {code(baseline)} after each round (points, x: pairs so far) with its repeated "
            "confidence interval at its Holm level (the TOST's interval at the look that decided an equivalence); "
            f"the dashed lines are ±{stats_section.fmt(analysis.margin)} (equivalence) and the solid one "
            "zero. A variant is decided when its boundary is crossed; early rounds' intervals are wide because little error is "
            "spent there.*",
            "",
        ]
    lines += ["References:", ""] + [f"- {ref}" for ref in sequential.REFERENCES] + [""]
    return lines
