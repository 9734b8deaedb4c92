"""Sample sizes for paired comparisons: the power of the paired t-test and of the paired TOST,
the seeds each needs, and the pooled spread of several comparisons (harness/analysis/planning.py
and the report's "seeds for ±margin")."""

from __future__ import annotations

import math

import numpy as np

LIMIT = 100_000  # seeds searched; beyond it a plan says "more than" rather than a number
POWER = 0.8
MIN_PAIRS = 3  # fewer pairs give no better, worse or equivalent (two pairs: the sign-flip p cannot go below 0.5)


def power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test at level `alpha` with n pairs for a true mean difference
    `effect` when the differences have standard deviation `sd` (noncentral t)."""
    from scipy import stats  # here, not at import: `plan` checks its arguments without SciPy

    df, ncp = n - 1, abs(effect) / sd * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    far = float(np.nan_to_num(stats.nct.cdf(-crit, df, ncp), nan=0.0))  # negligible; scipy may give NaN
    return float(stats.nct.sf(crit, df, ncp)) + far


def seeds_needed(
    sd: float, effect: float, alpha: float, target: float = POWER, exact: bool = False, limit: int = LIMIT
) -> int:
    """The fewest pairs for which a paired t-test at level `alpha` finds a true difference of
    `effect` points with probability `target`. With `exact` (the permutation test decides), or
    with no spread (the t-test is undefined), also enough pairs for the sign-flip test to be able
    to reach `alpha`: 2 / 2^n <= alpha. `alpha` is α/m for m comparisons, Holm's strictest level.
    0 when the spread is unknown."""
    floor = max(MIN_PAIRS, math.ceil(math.log2(2 / alpha)))
    if not math.isfinite(sd) or effect <= 0:
        return 0
    if sd == 0:
        return floor
    low, high = 1, 2  # power(low) < target <= power(high)
    while power(effect, sd, high, alpha) < target:
        if high >= limit:
            return limit + 1  # not reached within the search
        low, high = high, min(limit, 2 * high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if power(effect, sd, mid, alpha) < target else (low, mid)
    return max(high, floor) if exact else max(high, MIN_PAIRS)


def tost_power(margin: float, sd: float, n: int, alpha: float, true_difference: float = 0.0) -> float:
    """Power of the paired TOST at level `alpha` against ±margin with n pairs when the differences
    are normal with mean `true_difference` and sd `sd`: exact, by averaging over the sampling
    distribution of the sample sd (4,000 quantiles of its chi-square), since both one-sided tests
    share it. TOST rejects when Δ̂ ± t_{1−α, n−1}·s/√n lies within ±margin."""
    from scipy import stats

    df = n - 1
    if df < 1:
        return 0.0
    crit = float(stats.t.ppf(1 - alpha, df))
    q = stats.chi2.ppf((np.arange(4000) + 0.5) / 4000, df)
    s = sd * np.sqrt(q / df)
    se = sd / math.sqrt(n)
    half = margin - crit * s / math.sqrt(n)  # Δ̂ must fall within ±half
    inside = stats.norm.cdf((half - true_difference) / se) - stats.norm.cdf((-half - true_difference) / se)
    return float(np.where(half > 0, inside, 0.0).mean())


def seeds_for_equivalence(
    sd: float, margin: float, alpha: float, target: float = POWER, exact: bool = False, limit: int = LIMIT
) -> int:
    """The fewest pairs for which the paired TOST at level `alpha` shows equivalence within ±margin
    with probability `target` when there is no true difference; with `exact` also enough pairs for
    the sign-flip TOST to reach `alpha` (1 / 2^n <= alpha). 0 when the spread is unknown."""
    floor = max(MIN_PAIRS, math.ceil(math.log2(1 / alpha)) if exact or sd == 0 else MIN_PAIRS)
    if not math.isfinite(sd) or margin <= 0:
        return 0
    if sd == 0:
        return floor
    n = max(2, floor)
    while tost_power(margin, sd, n, alpha) < target:
        if n >= limit:
            return limit + 1  # not reached within the search
        n = n + 1 if n < 64 else int(n * 1.1)
    if n > 64:  # stepped coarsely: walk back to the fewest
        while n > 64 and tost_power(margin, sd, n - 1, alpha) >= target:
            n -= 1
    return max(n, floor)


def pooled_sd(groups: list[tuple[int, float]]) -> float:
    """The pooled standard deviation of several sets of differences, given (n, sd) of each."""
    usable = [(n, sd) for n, sd in groups if n >= 2 and math.isfinite(sd)]
    df = sum(n - 1 for n, _ in usable)
    return math.sqrt(sum((n - 1) * sd * sd for n, sd in usable) / df) if df else math.nan


def shown(n: int) -> str:
    """A number of seeds as printed: beyond the search it is "more than 100000", never the cap itself."""
    return f"more than {LIMIT}" if n > LIMIT else str(n)
