"""The statistics of an ablation: per-variant summaries over seeds and paired comparisons with the
baseline, corrected together as one family.

A comparison works on the per-seed differences d (variant minus baseline, in points, computed from
integer counts of correct test images so that equal counts give equal differences). It carries
- the paired t-test and the exact sign-flip permutation test (all 2^n sign patterns up to
  n = EXACT_UP_TO seeds, a seeded Monte-Carlo beyond), two-sided;
- the paired TOST equivalence test against ±margin, by both tests;
- the unadjusted t interval and a simultaneous (Bonferroni) interval over the family;
- Hedges' g_z, the small-sample-corrected standardized mean difference.
`family` Holm-corrects every test across all compared variants (an untestable one counts with
p = 1) and gives each a verdict in four words: better, worse, equivalent or inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import special, stats

from harness.settings.analysis import ALPHA, TESTS, Analysis  # noqa: F401 - the settings these functions take

POWER = 0.8
EXACT_UP_TO = 20  # seeds; beyond, the permutation test samples MONTE_CARLO sign patterns
MONTE_CARLO = 100_000
VERDICTS = ("better", "worse", "equivalent", "inconclusive")


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan when n < 2
    ci_low: float  # 95% t interval of the mean; nan when n < 2
    ci_high: float
    median: float
    min: float
    max: float


@dataclass(frozen=True)
class Paired:
    n: int  # pairs (seeds present in both)
    diff_mean: float  # mean of the paired differences, variant minus baseline
    sd: float  # standard deviation of the differences; nan when n < 2
    ci_low: float  # unadjusted 95% t interval
    ci_high: float
    t_p: float  # paired t-test, two-sided; nan when undefined (n < 2 or no spread)
    perm_p: float  # sign-flip permutation test, two-sided
    perm_min_p: float  # the smallest p the permutation test can reach with n pairs
    tost_t_p: float  # paired TOST against ±margin, t version (nan when undefined)
    tost_perm_p: float  # the same by sign-flip permutation
    hedges_g: float  # Hedges-corrected d_z; nan when n < 3 or no spread
    sim_low: float = math.nan  # simultaneous interval over the family (Bonferroni)
    sim_high: float = math.nan
    t_holm: float = math.nan
    perm_holm: float = math.nan
    tost_holm: float = math.nan  # Holm-corrected TOST p of the deciding test
    p_holm: float = math.nan  # Holm-corrected p of the deciding test
    decided_by: str = ""  # the test that decided the verdict, and why when it is not the chosen one
    verdict: str = ""
    disagreement: str = ""  # set when the t and permutation tests reach different conclusions


def summarize(values: list[float], confidence: float = 0.95) -> Summary:
    a = np.asarray(values, dtype=float)
    n = len(a)
    if n == 0:
        return Summary(0, *([math.nan] * 7))
    mean = float(a.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan, mean, mean, mean)
    std = float(a.std(ddof=1))
    low, high = _t_interval(mean, std, n, confidence)
    return Summary(n, mean, std, low, high, float(np.median(a)), float(a.min()), float(a.max()))


def _t_interval(mean: float, std: float, n: int, confidence: float) -> tuple[float, float]:
    if n < 2:
        return math.nan, math.nan
    if std == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return float(low), float(high)


def count_differences(baseline: dict[int, tuple[int, int]], variant: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Per-seed differences in points from (correct, images) counts on the seeds both have: the
    integer difference is taken first, so equal counts give exactly equal differences."""
    out = {}
    for s in sorted(set(baseline) & set(variant)):
        (kb, nb), (kv, nv) = baseline[s], variant[s]
        if nb != nv:
            raise ValueError(f"seed {s}: the test sets differ in size ({nb} and {nv} images)")
        out[s] = 100.0 * (kv - kb) / nv
    return out


def paired(baseline: dict[int, float], variant: dict[int, float], analysis: Analysis = Analysis()) -> Paired:
    """Compare a variant with the baseline on the seeds both have (same seed = same split and order)."""
    return differences({s: variant[s] - baseline[s] for s in sorted(set(baseline) & set(variant))}, analysis)


def differences(d_by_seed: dict[int, float], analysis: Analysis = Analysis()) -> Paired:
    """Test per-seed differences (or any per-seed contrast) against zero and for equivalence within
    ±margin: t and permutation tests, unadjusted interval, Hedges' g_z."""
    d = np.array([d_by_seed[s] for s in sorted(d_by_seed)], dtype=float)
    n, margin = len(d), analysis.margin
    mean = float(d.mean()) if n else math.nan
    perm, perm_min = signflip_p(d), (min(1.0, 2.0 / 2 ** n) if n <= EXACT_UP_TO else 1.0 / (MONTE_CARLO + 1))
    tost_perm = max(signflip_p(d + margin, "greater"), signflip_p(d - margin, "less")) if n else 1.0
    if n < 2:
        return Paired(n, mean, math.nan, math.nan, math.nan, math.nan, perm, perm_min, math.nan, tost_perm, math.nan)
    sd = float(d.std(ddof=1))
    low, high = _t_interval(mean, sd, n, 1 - analysis.alpha)
    if sd == 0:  # every seed moved by the same amount: the t statistics are undefined
        return Paired(n, mean, sd, low, high, math.nan, perm, perm_min, math.nan, tost_perm, math.nan)
    se = sd / math.sqrt(n)
    t_p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    tost_t = max(float(stats.t.sf((mean + margin) / se, n - 1)), float(stats.t.cdf((mean - margin) / se, n - 1)))
    return Paired(n, mean, sd, low, high, t_p, perm, perm_min, tost_t, tost_perm, hedges_g(mean / sd, n))


def hedges_g(d_z: float, n: int) -> float:
    """d_z times the exact small-sample correction J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2)), df = n - 1."""
    df = n - 1
    if df < 2:
        return math.nan
    j = math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    return d_z * j


def signflip_p(d: np.ndarray, alternative: str = "two-sided") -> float:
    """Sign-flip permutation p of the mean of d against zero: the share of sign patterns whose sum
    is at least as extreme as the observed one. Exact over all 2^n patterns up to EXACT_UP_TO
    values; beyond, MONTE_CARLO patterns from a fixed seed, (1 + hits) / (1 + draws)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        return 1.0
    observed = float(d.sum())
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))

    def hits(sums: np.ndarray) -> int:
        if alternative == "greater":
            return int((sums >= observed - tol).sum())
        if alternative == "less":
            return int((sums <= observed + tol).sum())
        return int((np.abs(sums) >= abs(observed) - tol).sum())

    if n <= EXACT_UP_TO:
        bits = np.arange(n)
        total = 0
        for start in range(0, 2 ** n, 1 << 16):
            codes = np.arange(start, min(2 ** n, start + (1 << 16)))[:, None]
            total += hits((1 - 2 * ((codes >> bits) & 1)) @ d)
        return total / 2 ** n
    rng = np.random.default_rng(0)
    total = sum(hits(rng.choice((-1.0, 1.0), size=(10_000, n)) @ d) for _ in range(MONTE_CARLO // 10_000))
    return (1 + total) / (1 + MONTE_CARLO)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down correction over every p given; an undefined (NaN) p counts as 1."""
    ps = [p if math.isfinite(p) else 1.0 for p in pvalues]
    m = len(ps)
    adjusted = [1.0] * m
    running = 0.0
    for rank, (p, i) in enumerate(sorted((p, i) for i, p in enumerate(ps))):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def family(raw: dict[str, Paired], analysis: Analysis = Analysis()) -> dict[str, Paired]:
    """Holm-correct every compared variant's tests together (an untestable one counts with p = 1),
    add the simultaneous intervals, and give each its verdict."""
    if analysis.test not in TESTS:
        raise ValueError(f"analysis.test: {analysis.test!r} is not allowed; expected one of {', '.join(TESTS)}")
    names, rs = list(raw), list(raw.values())
    m = len(rs)
    t_holm, perm_holm = holm([r.t_p for r in rs]), holm([r.perm_p for r in rs])
    deciders = [_decider(r, analysis.test) for r in rs]
    tost_holm = holm([r.tost_t_p if test == "t" else r.tost_perm_p for r, (test, _) in zip(rs, deciders)])
    out = {}
    for i, (name, r) in enumerate(zip(names, rs)):
        test, why = deciders[i]
        p = t_holm[i] if test == "t" else perm_holm[i]
        low, high = _t_interval(r.diff_mean, r.sd, r.n, 1 - analysis.alpha / m)
        r = replace(r, sim_low=low, sim_high=high, t_holm=t_holm[i], perm_holm=perm_holm[i], tost_holm=tost_holm[i], p_holm=p,
                    decided_by=f"{_TEST_NAMES[test]}{why}")
        verdict = ("better" if r.diff_mean > 0 else "worse") if p < analysis.alpha else "equivalent" if tost_holm[i] < analysis.alpha else "inconclusive"
        both = math.isfinite(r.t_p) and (t_holm[i] < analysis.alpha) != (perm_holm[i] < analysis.alpha)
        disagree = (f"t-test Holm p {_p3(t_holm[i])} and permutation Holm p {_p3(perm_holm[i])} disagree at α = {analysis.alpha}") if both else ""
        if verdict in ("better", "worse") and test == "t" and low <= 0 <= high:  # Holm's later steps test at more than α/m
            disagree = "; ".join(filter(None, [disagree, "simultaneous interval still touches zero: Holm rejects at its step-down level, "
                                                          "which is above the interval's α/m"]))
        out[name] = replace(r, verdict=verdict, disagreement=disagree)
    return out


_TEST_NAMES = {"t": "paired t-test", "permutation": "sign-flip permutation test"}


def _decider(r: Paired, chosen: str) -> tuple[str, str]:
    """The test that decides: the chosen one, or the permutation test where the t-test is undefined."""
    if chosen == "t" and not math.isfinite(r.t_p):
        return "permutation", (" (t-test undefined: fewer than 2 pairs)" if r.n < 2 else " (t-test undefined: no spread between seeds)")
    return chosen, ""


def _p3(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def compare_all(baseline: dict[int, float], variants: dict[str, dict[int, float]], analysis: Analysis = Analysis()) -> dict[str, Paired]:
    """Paired comparisons of each variant with the baseline, Holm-corrected together, with verdicts."""
    return family({name: paired(baseline, values, analysis) for name, values in variants.items()}, analysis)


def power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of a two-sided paired t-test at level `alpha` with n pairs for a true mean difference
    `effect` when the differences have standard deviation `sd` (noncentral t)."""
    df, ncp = n - 1, abs(effect) / sd * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    far = float(np.nan_to_num(stats.nct.cdf(-crit, df, ncp), nan=0.0))  # negligible; scipy may give NaN
    return float(stats.nct.sf(crit, df, ncp)) + far


def seeds_needed(sd: float, effect: float, alpha: float, target: float = POWER, exact: bool = False, limit: int = 100_000) -> int:
    """The fewest pairs for which a paired t-test at level `alpha` finds a true difference of
    `effect` points with probability `target`. With `exact` (the permutation test decides), or
    with no spread (the t-test is undefined), also enough pairs for the sign-flip test to be able
    to reach `alpha`: 2 / 2^n <= alpha. `alpha` is α/m for m comparisons, Holm's strictest level.
    0 when the spread is unknown."""
    floor = max(2, math.ceil(math.log2(2 / alpha)))
    if not math.isfinite(sd) or effect <= 0:
        return 0
    if sd == 0:
        return floor
    low, high = 1, 2  # power(low) < target <= power(high)
    while power(effect, sd, high, alpha) < target:
        if high >= limit:
            return limit
        low, high = high, min(limit, 2 * high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if power(effect, sd, mid, alpha) < target else (low, mid)
    return max(high, floor) if exact else high


def pooled_sd(groups: list[tuple[int, float]]) -> float:
    """The pooled standard deviation of several sets of differences, given (n, sd) of each."""
    usable = [(n, sd) for n, sd in groups if n >= 2 and math.isfinite(sd)]
    df = sum(n - 1 for n, _ in usable)
    return math.sqrt(sum((n - 1) * sd * sd for n, sd in usable) / df) if df else math.nan
