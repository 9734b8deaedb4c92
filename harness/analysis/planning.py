"""Seed planning: how many seeds each comparison with the baseline needs for a chance `power` of
finding a true difference of `effect` points, at the level Holm's correction applies to its
strictest step (α/m for m comparisons), from the spread of the paired differences the store holds
(each comparison's own, and pooled over them) or a given standard deviation."""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis import stats
from harness.base.errors import UsageError


@dataclass(frozen=True)
class Request:
    effect: float | None = None  # points; None: the experiment's [analysis] margin
    sd: float | None = None  # points; None: pooled from the store
    comparisons: int | None = None  # m; None: as many as the store compares
    power: float = stats.POWER


def check(req: Request) -> None:
    if req.effect is not None and not (math.isfinite(req.effect) and 0 < req.effect < 100):
        raise UsageError(f"--effect: {req.effect} is not allowed; expected a number of points > 0 and < 100")
    if req.sd is not None and not (math.isfinite(req.sd) and req.sd > 0):
        raise UsageError(f"--sd: {req.sd} is not allowed; expected a standard deviation in points > 0")
    if req.comparisons is not None and not 1 <= req.comparisons <= 10_000:
        raise UsageError(f"--comparisons: {req.comparisons} is not allowed; expected an integer from 1 to 10000")
    if not 0.5 <= req.power < 1:
        raise UsageError(f"--power: {req.power} is not allowed; expected a number from 0.5 to below 1")


def lines(req: Request, analysis: stats.Analysis, baseline: str, tested: dict[str, stats.Paired]) -> list[str]:
    """The plan as printed: one row per comparison in the store, and the pooled (or given) spread."""
    m = req.comparisons or max(1, len(tested))
    effect = req.effect if req.effect is not None else analysis.margin
    level = analysis.alpha / m
    exact = analysis.test == "permutation"
    out = [f"{m} comparison(s) with `{baseline}`; Holm's strictest level α/m = {analysis.alpha}/{m} = {level:.4g}; "
           f"{int(round(req.power * 100))}% power to find a true difference of {effect:g} point(s); the {analysis.test} test decides"
           + (" (so at least the seeds the exact test needs to reach α/m)" if exact else ""), "",
           "| comparison | pairs now | sd of paired differences (points) | seeds needed |", "|---|---|---|---|"]
    for name, t in tested.items():
        needed = stats.seeds_needed(t.sd, effect, level, req.power, exact) if t.n >= 2 else 0
        out.append(f"| {name} | {t.n} | {_fmt(t.sd)} | {needed or '– (fewer than 2 pairs)'} |")
    usable = [(t.n, t.sd) for t in tested.values() if t.n >= 2 and math.isfinite(t.sd)]
    if req.sd is not None:
        out.append(f"| given --sd | – | {_fmt(req.sd)} | {stats.seeds_needed(req.sd, effect, level, req.power, exact)} |")
    elif usable:
        sd = stats.pooled_sd(usable)
        out.append(f"| pooled ({sum(n - 1 for n, _ in usable)} degrees of freedom) | – | {_fmt(sd)} | "
                   f"{stats.seeds_needed(sd, effect, level, req.power, exact)} |")
    else:
        raise UsageError("plan: the store has no comparison with 2 or more paired seeds to estimate the spread from; give --sd")
    return out


def _fmt(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "–"
