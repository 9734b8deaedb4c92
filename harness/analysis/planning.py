"""Seed planning: how many seeds each comparison with the baseline needs for a chance `power` of
finding a true difference of `effect` points (and of showing equivalence within ±effect by TOST), at the level Holm's correction applies to its
strictest step (α/m for m comparisons), from the spread of the paired differences the store holds
(each comparison's own, and pooled over them) or a given standard deviation.

When the store holds a variance design, the spread comes from its decomposition instead: a run
whose sources S follow the seed (the others pinned) varies by σ²_S, the all-sources variance when S
is every source (`@all` varies all five, whatever sources the design chose), else the sum of
the chosen sources' one-at-a-time variances (which assumes they add, as the report's additivity
ratio checks). Two variants then differ by sd √(2·σ²_S) (assumed: both vary alike, and their runs
share nothing; runs paired by seed share the order, split and augmentation draws, so the plan is
conservative where those move both variants alike). The compute is seeds × variants × the mean training time of the design's runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.analysis import sample_size
from harness.base.errors import UsageError
from harness.settings.designs import ALL, VARIANCE_SOURCES

if TYPE_CHECKING:  # SciPy's statistics load with the functions that compute: `check` answers without them
    from harness.analysis import stats
    from harness.analysis.variance import Decomposition


@dataclass(frozen=True)
class Request:
    effect: float | None = None  # points; None: the experiment's [analysis] margin
    sd: float | None = None  # points; None: pooled from the store
    comparisons: int | None = None  # m; None: as many as the store compares
    power: float = sample_size.POWER
    vary: tuple[str, ...] = ()  # sources a variance design's plan varies; () = each on its own, and all


def check(req: Request) -> None:
    if req.effect is not None and not (math.isfinite(req.effect) and 0 < req.effect < 100):
        raise UsageError(f"--effect: {req.effect} is not allowed; expected a number of points > 0 and < 100")
    if req.sd is not None and not (math.isfinite(req.sd) and req.sd > 0):
        raise UsageError(f"--sd: {req.sd} is not allowed; expected a standard deviation in points > 0")
    if req.comparisons is not None and not 1 <= req.comparisons <= 10_000:
        raise UsageError(f"--comparisons: {req.comparisons} is not allowed; expected an integer from 1 to 10000")
    if not 0.5 <= req.power < 1:
        raise UsageError(f"--power: {req.power} is not allowed; expected a number from 0.5 to below 1")
    allowed = (ALL, *VARIANCE_SOURCES)
    bad = [s for s in req.vary if s not in allowed]
    if bad:
        raise UsageError(
            f"--vary: {', '.join(map(repr, bad))} is not allowed; expected sources from {', '.join(allowed)}"
        )
    twice = sorted({s for s in req.vary if req.vary.count(s) > 1})
    if twice:
        raise UsageError(f"--vary: {', '.join(twice)} listed twice; name each source once")
    if ALL in req.vary and len(req.vary) > 1:
        raise UsageError(f"--vary: {ALL} already varies every source; give {ALL} alone or a list of sources")
    if req.vary and req.sd is not None:
        raise UsageError("--vary: not with --sd; --vary takes the spread from a variance design's runs, --sd gives it")


def lines(req: Request, analysis: stats.Analysis, baseline: str, tested: dict[str, stats.Paired]) -> list[str]:
    """The plan as printed: one row per comparison in the store, and the pooled (or given) spread."""
    from harness.analysis import stats

    m = req.comparisons or max(1, len(tested))
    effect = req.effect if req.effect is not None else analysis.margin
    level = analysis.alpha / m
    exact = analysis.test == "permutation"
    out = [
        f"{m} comparison(s) with `{baseline}`; Holm's strictest level α/m = {analysis.alpha}/{m} = {level:.4g}; "
        f"{int(round(req.power * 100))}% power to find a true difference of {effect:g} point(s); the {analysis.test} test decides"
        + (" (so at least the seeds the exact test needs to reach α/m)" if exact else ""),
        "",
        f"| comparison | pairs now | sd of paired differences (points) | seeds to find ±{effect:g} | seeds to show equivalence "
        f"within ±{effect:g} |",
        "|---|---|---|---|---|",
    ]

    def both(sd: float) -> str:
        return (
            f"{sample_size.shown(sample_size.seeds_needed(sd, effect, level, req.power, exact))} | "
            f"{sample_size.shown(sample_size.seeds_for_equivalence(sd, effect, level, req.power, exact))}"
        )

    for name, t in tested.items():
        cells = both(t.sd) if t.n >= stats.MIN_PAIRS else "– (not estimable below 3 pairs) | –"
        out.append(f"| {name} | {t.n} | {_fmt(t.sd) if t.n >= stats.MIN_PAIRS else '–'} | {cells} |")
    usable = [(t.n, t.sd) for t in tested.values() if t.n >= stats.MIN_PAIRS and math.isfinite(t.sd)]
    if req.sd is not None:
        out.append(f"| given --sd | – | {_fmt(req.sd)} | {both(req.sd)} |")
    elif usable:
        sd = sample_size.pooled_sd(usable)
        out.append(f"| pooled ({sum(n - 1 for n, _ in usable)} degrees of freedom) | – | {_fmt(sd)} | {both(sd)} |")
    else:
        raise UsageError(
            "plan: the store has no comparison with 3 or more paired seeds to estimate the spread from; give --sd"
        )
    out += [
        "",
        "Equivalence: the paired TOST at the same level with no true difference. A spread from few pairs is itself "
        "uncertain; below 3 pairs it is not used.",
    ]
    return out


def _fmt(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "–"


def variance_lines(req: Request, analysis: stats.Analysis, found: list[Decomposition], run_seconds: float) -> list[str]:
    """The plan from a variance design: per decomposed variant, the seeds and compute a comparison
    needs with all sources varied, with each alone, and with `req.vary` together."""
    if not found:
        raise UsageError(
            "plan: the variance design has no variant with finished runs varying all its sources yet; "
            "finish its runs or give --sd"
        )
    sources = tuple(c.source for c in found[0].components)
    unknown = [s for s in req.vary if s != ALL and s not in sources]
    if unknown:
        raise UsageError(
            f"--vary: {', '.join(unknown)} not varied by this variance design; allowed: {', '.join((ALL,) + sources)}"
        )
    m = req.comparisons or 1
    effect = req.effect if req.effect is not None else analysis.margin
    level = analysis.alpha / m
    exact = analysis.test == "permutation"
    chosen = tuple(s for s in sources if s in req.vary)
    mark = " (--vary)"
    out = [
        f"from the variance design's decomposition: {m} comparison(s) at Holm's strictest level α/m = {analysis.alpha}/{m} = "
        f"{level:.4g}; {int(round(req.power * 100))}% power to find a true difference of {effect:g} point(s); the {analysis.test} "
        f"test decides; compute for {m + 1} variant(s) at {_hours(run_seconds)} of training a run (the mean of the design's runs)",
        "",
        "| variant | sources varied with the seed | variance of a run (points²) | sd of a paired difference | "
        f"seeds to find ±{effect:g} | at the variance's upper {1 - analysis.alpha:.0%} limit | compute |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in found:
        rows = [("all (`@all`)" + mark * (ALL in req.vary), d.total.variance, d.total.high)]
        rows += [
            (c.source + " (skipped: draws nothing)" * c.skipped + mark * (chosen == (c.source,)), c.variance, c.high)
            for c in d.components
        ]
        if len(chosen) > 1:
            rows.append(
                (
                    ", ".join(chosen) + " (--vary, summed)",
                    sum(c.variance for c in d.components if c.source in chosen),
                    math.nan,
                )
            )
        for label, v, high in rows:
            n = sample_size.seeds_needed(math.sqrt(2 * v), effect, level, req.power, exact) if math.isfinite(v) else 0
            n_high = (
                sample_size.seeds_needed(math.sqrt(2 * high), effect, level, req.power, exact)
                if math.isfinite(high)
                else 0
            )
            compute = (
                _hours(n * (m + 1) * run_seconds)
                if n and n <= sample_size.LIMIT and math.isfinite(run_seconds)
                else "–"
            )
            out.append(
                f"| {d.variant} | {label} | {_fmt(v)} | {_fmt(math.sqrt(2 * v)) if math.isfinite(v) else '–'} | "
                f"{sample_size.shown(n) if n else '–'} | {sample_size.shown(n_high) if n_high else '–'} | {compute} |"
            )
    out += [
        "",
        "`@all` varies every source with the seed (the split too, unless it is a prefix split). A source not varied is "
        "pinned: its spread leaves the comparison, and so does the claim beyond its one pinned seed (a difference found holds "
        "for that initialisation, order, ...). A sum of one-at-a-time variances assumes the sources add (the report's "
        "additivity ratio says how far they do) and has no exact interval, hence no upper-limit column. The sd assumes the "
        "two variants' runs share nothing; runs paired by seed share the order, split and augmentation draws, so where "
        "those move both alike the true sd is smaller and these seeds are more than needed. Each comparison is assumed "
        "to vary as the decomposed variant does.",
    ]
    return out


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "– (no run time in the store)"
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )
