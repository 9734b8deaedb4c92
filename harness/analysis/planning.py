"""Seed planning: how many seeds each comparison with the baseline needs for a chance `power` of
finding a true difference of `effect` points (and of showing equivalence within ±effect by TOST), at the level Holm's correction applies to its
strictest step (α/m for m comparisons), from the spread of the paired differences the store holds
(each comparison's own, and pooled over them) or a given standard deviation."""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis import sample_size, stats
from harness.base.errors import UsageError


@dataclass(frozen=True)
class Request:
    effect: float | None = None  # points; None: the experiment's [analysis] margin
    sd: float | None = None  # points; None: pooled from the store
    comparisons: int | None = None  # m; None: as many as the store compares
    power: float = sample_size.POWER


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
           f"| comparison | pairs now | sd of paired differences (points) | seeds to find ±{effect:g} | seeds to show equivalence "
           f"within ±{effect:g} |", "|---|---|---|---|---|"]

    def both(sd: float) -> str:
        return (f"{sample_size.shown(sample_size.seeds_needed(sd, effect, level, req.power, exact))} | "
                f"{sample_size.shown(sample_size.seeds_for_equivalence(sd, effect, level, req.power, exact))}")

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
        raise UsageError("plan: the store has no comparison with 3 or more paired seeds to estimate the spread from; give --sd")
    out += ["", "Equivalence: the paired TOST at the same level with no true difference. A spread from few pairs is itself "
            "uncertain; below 3 pairs it is not used."]
    return out


def _fmt(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "–"
