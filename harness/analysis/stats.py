"""The statistics of an ablation: per-variant summaries over seeds and paired comparisons with the
baseline, corrected together as one family.

A comparison works on the per-seed differences d (variant minus baseline, in points, computed from
integer counts of correct test images so that equal counts give equal differences). It carries
- the paired t-test and the exact sign-flip permutation test (all 2^n sign patterns up to
  n = EXACT_UP_TO seeds, a seeded Monte-Carlo beyond), two-sided;
- the paired TOST equivalence test against ±margin, by both tests;
- the unadjusted interval and a simultaneous (Bonferroni) interval over the family, both of the
  deciding test: t intervals, or the sign-flip test inverted where that test decides;
- Hedges' g_z, the small-sample-corrected standardized mean difference;
- the seed win rate (seeds on which the variant scored higher) with its Clopper–Pearson interval;
- a shape diagnostic: skewness or an outlying seed, which the t-test's error rates do not allow for.
`family` corrects every difference and equivalence test across all compared variants as one family
(`paired_holm`: Holm with Shaffer's logical refinement; an untestable one counts with p = 1) and
gives each a verdict in four words: better, worse, equivalent or inconclusive; with
fewer than MIN_PAIRS pairs it is inconclusive whatever the p.

Inputs are differences in points; accuracies from counts of images are the intended input. NaN and
inf are refused. Differences whose spread is float noise (sd at most signflip.NO_SPREAD times their size:
float accuracies that differ by the same count on every seed) count as no spread: the t-test is
then undefined and the sign-flip test decides.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import special, stats

from harness.analysis.sample_size import MIN_PAIRS
from harness.analysis.signflip import equivalence_bounds, floor_p, noise, signflip_interval, signflip_p, tost_p
from harness.settings.analysis import ALPHA, TESTS, Analysis  # noqa: F401 - the settings these functions take

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
    values: tuple[float, ...] = ()  # the differences, by seed
    wins: int = 0  # seeds on which the variant scored higher than the baseline
    ties: int = 0
    interval: str = "t"  # what the intervals invert: "t" or "sign-flip" (where the sign-flip test decides)
    shape: str = ""  # the shape diagnostic: skewness or an outlying seed, else empty
    sim_low: float = math.nan  # simultaneous interval over the family (Bonferroni)
    sim_high: float = math.nan
    t_holm: float = math.nan
    perm_holm: float = math.nan
    tost_holm: float = math.nan  # Holm-corrected TOST p of the deciding test
    p_holm: float = math.nan  # Holm-corrected p of the deciding test
    decided_by: str = ""  # the test that decided the verdict, and why when it is not the chosen one
    # the equivalence test inverted at the level Holm tests it at (α / its step's count): the
    # interval an equivalent verdict stands on, inside ±margin exactly when the TOST rejects
    eq_low: float = math.nan
    eq_high: float = math.nan
    eq_confidence: float = math.nan  # 1 − 2 · that level
    p_level: float = math.nan  # the level Holm tests the difference at (α / its step's count)
    margin: float = math.nan  # the TOST's margin (points); an interaction's is half the analysis margin
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
    # scipy.stats.t.interval's arithmetic on its special function, without its argument handling
    # (a simulated study asks for thousands of intervals)
    scale = std / math.sqrt(n)
    low, high = special.stdtrit(n - 1, (1.0 - confidence) / 2), special.stdtrit(n - 1, (1.0 + confidence) / 2)
    return float(low * scale + mean), float(high * scale + mean)


def count_differences(baseline: dict[int, tuple[int, int]], variant: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Per-seed differences in points from (correct, images) counts on the seeds both have: the
    integer difference is taken first, so equal counts give exactly equal differences."""
    out = {}
    for s in sorted(set(baseline) & set(variant)):
        (kb, nb), (kv, nv) = baseline[s], variant[s]
        if nb != nv:
            raise ValueError(f"seed {s}: the test sets differ in size ({nb} and {nv} images)")
        if nv <= 0:
            raise ValueError(f"seed {s}: a test set of {nv} images gives no accuracy; expected at least one image")
        out[s] = 100.0 * (kv - kb) / nv
    return out


def paired(baseline: dict[int, float], variant: dict[int, float], analysis: Analysis = Analysis()) -> Paired:
    """Compare a variant with the baseline on the seeds both have (same seed = same split and order)."""
    return differences({s: variant[s] - baseline[s] for s in sorted(set(baseline) & set(variant))}, analysis)


def check_finite(d_by_seed: dict[int, float]) -> None:
    """Refuse NaN and inf differences: a NaN would make every sign pattern 'less extreme' (p 0)."""
    bad = {s: x for s, x in d_by_seed.items() if not math.isfinite(x)}
    if bad:
        s, x = next(iter(sorted(bad.items())))
        raise ValueError(
            f"paired differences: seed {s} is {x}; expected finite numbers of points (counts of correct images "
            "give them; a run without a result has no pair)"
        )


def spread(d: np.ndarray) -> float:
    """The sample sd of d, or 0.0 when it is float noise (at most signflip.NO_SPREAD times the size of d)."""
    if len(d) < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    return 0.0 if sd <= noise(d) else sd


def differences(d_by_seed: dict[int, float], analysis: Analysis = Analysis()) -> Paired:
    """Test per-seed differences (or any per-seed contrast) against zero and for equivalence within
    ±margin: t and permutation tests, unadjusted interval of the deciding test, Hedges' g_z, the
    seed win rate and the shape diagnostic."""
    check_finite(d_by_seed)
    d = np.array([d_by_seed[s] for s in sorted(d_by_seed)], dtype=float)
    n, margin = len(d), analysis.margin
    mean = float(d.mean()) if n else math.nan
    tiny = noise(d)
    extra = dict(
        values=tuple(map(float, d)),
        wins=int((d > tiny).sum()),
        ties=int((np.abs(d) <= tiny).sum()),
        shape=shape(d),
        margin=margin,
    )
    perm, perm_min = signflip_p(d), floor_p(d)
    tost_perm = tost_p(d, margin)
    if n < 2:
        return Paired(
            n, mean, math.nan, math.nan, math.nan, math.nan, perm, perm_min, math.nan, tost_perm, math.nan, **extra
        )
    sd = spread(d)
    if sd == 0 or analysis.test == "permutation":  # the sign-flip test decides: its own interval
        low, high = signflip_interval(d, analysis.alpha)
        extra["interval"] = "sign-flip"
    else:
        low, high = _t_interval(mean, sd, n, 1 - analysis.alpha)
    if sd == 0:  # every seed moved by the same amount: the t statistics are undefined
        return Paired(n, mean, sd, low, high, math.nan, perm, perm_min, math.nan, tost_perm, math.nan, **extra)
    se = sd / math.sqrt(n)
    # scipy.stats.t's sf and cdf (sf(x) = stdtr(df, -x)) without its argument handling
    t_p = float(2 * special.stdtr(n - 1, -(abs(mean) / se)))
    tost_t = max(
        float(special.stdtr(n - 1, -((mean + margin) / se))), float(special.stdtr(n - 1, (mean - margin) / se))
    )
    return Paired(n, mean, sd, low, high, t_p, perm, perm_min, tost_t, tost_perm, hedges_g(mean / sd, n), **extra)


SHAPE_LEVEL = 0.025  # each rule of `shape` fires on this share of normal samples (together at most 5%)
SHAPE_DRAWS = 20_000  # normal samples per pair count that calibrate the limits ...
SHAPE_VALUES, SHAPE_DRAWS_LEAST = (
    2_000_000,
    2_000,
)  # ... fewer for many pairs: at most this many values, at least this many samples


@functools.lru_cache(maxsize=None)
def shape_limits(n: int) -> tuple[float, float]:
    """The limits of `shape`'s two rules at n pairs: the (1 − SHAPE_LEVEL) quantiles of |G1| and of
    the largest modified z over SHAPE_DRAWS standard normal samples of n values (fewer for many
    pairs; a generator seeded by n, so a report rebuilds the same). Large-sample limits fire too
    often: at 5 pairs the fixed ones (twice G1's standard error, Iglewicz & Hoaglin's 3.5) fired on
    20% of normal samples, and a normal quantile of G1 with a Bonferroni bound on the largest |z|
    on 7–9% at 61 to 200 pairs."""
    draws = max(SHAPE_DRAWS_LEAST, min(SHAPE_DRAWS, SHAPE_VALUES // n))
    x = np.random.default_rng(n).standard_normal((draws, n))
    dev = x - x.mean(axis=1, keepdims=True)
    m2, m3 = (dev**2).mean(axis=1), (dev**3).mean(axis=1)
    g1 = m3 / m2**1.5 * math.sqrt(n * (n - 1)) / (n - 2)
    med = np.median(x, axis=1, keepdims=True)
    mad = np.median(np.abs(x - med), axis=1, keepdims=True)
    z = (0.6745 * np.abs(x - med) / mad).max(axis=1)
    return float(np.quantile(np.abs(g1), 1 - SHAPE_LEVEL)), float(np.quantile(z, 1 - SHAPE_LEVEL))


def shape(d: np.ndarray) -> str:
    """A warning when the differences look far from normal, else '': skewness G1 beyond what
    97.5% of normal samples of this many pairs reach, or a seed whose modified z
    (0.6745 |d − median| / MAD, Iglewicz & Hoaglin) is beyond what 97.5% of them reach
    (`shape_limits`), so the two together fire on at most 5% of normal samples at every pair
    count; from 5 pairs (below, a median of 3 or 4 values says little). The t-test and the
    sequential rule assume roughly normal differences; under skew their false-verdict rates rise."""
    n = len(d)
    if n < 5 or not spread(d) > 0:
        return ""
    skew_limit, z_limit = shape_limits(n)
    g1 = skewness(d)
    if abs(g1) > skew_limit:
        return (
            f"skewed differences (skewness G1 {g1:+.2f}, beyond {skew_limit:.2f}, what 97.5% of normal samples of {n} "
            "pairs stay within)"
        )
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med)))
    if mad > noise(d):
        z = 0.6745 * np.abs(d - med) / mad
        if z.max() > z_limit:
            return (
                f"an outlying seed (Δ {float(d[int(z.argmax())]):+.2f} points, modified z {float(z.max()):.1f} > "
                f"{z_limit:.1f}, what 97.5% of normal samples of {n} pairs stay within)"
            )
    return ""


def skewness(d: np.ndarray) -> float:
    """G1, the adjusted Fisher–Pearson sample skewness (scipy.stats.skew with bias=False), in
    plain numpy: scipy's argument handling costs more than the arithmetic, and `shape` runs once
    a comparison (every round of every simulated study of tests/analysis/test_sequential.py)."""
    n = len(d)
    dev = d - d.mean()
    m2, m3 = float(np.mean(dev * dev)), float(np.mean(dev * dev * dev))
    return m3 / m2**1.5 * math.sqrt(n * (n - 1)) / (n - 2)


def test_set_floor(accuracy: float, images: int) -> float:
    """The binomial sd (points) of an accuracy (points) measured on `images` test images,
    100 · √(p(1 − p)/n): what a finite test set alone contributes, whatever the seeds."""
    q = accuracy / 100.0
    return 100.0 * math.sqrt(q * (1.0 - q) / images) if images and 0.0 <= q <= 1.0 else math.nan


def win_interval(wins: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Clopper–Pearson (exact binomial) interval of a win rate of `wins` out of `n` seeds."""
    if n == 0:
        return math.nan, math.nan
    low = 0.0 if wins == 0 else float(stats.beta.ppf(alpha / 2, wins, n - wins + 1))
    high = 1.0 if wins == n else float(stats.beta.ppf(1 - alpha / 2, wins + 1, n - wins))
    return low, high


def hedges_g(d_z: float, n: int) -> float:
    """d_z times the exact small-sample correction J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2)), df = n - 1."""
    df = n - 1
    if df < 2:
        return math.nan
    j = math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    return d_z * j


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


def paired_holm(differences: list[float], equivalences: list[float], alpha: float) -> tuple[list[float], list[float]]:
    """One error budget for m comparisons' difference tests and equivalence tests: Holm's step-down
    over the 2m p-values with Shaffer's (1986) logical refinement. A comparison's two nulls, "no
    difference" and "a difference of at least the margin", cannot both be true, so at each step at
    most t of the remaining hypotheses can be true, t being the comparisons with one still
    remaining, and the step tests at α/t. The first true null rejected meets α/k or less, k the
    number of true nulls (the remaining ones include all k, one per comparison at most, so t ≥ k):
    the chance of rejecting any true null, a better or worse where there is no difference or an
    equivalent where the difference reaches the margin, is at most α (Bonferroni). A verdict of the
    wrong sign where a difference exists is not covered by this argument.

    Returns (adjusted p, the level each is tested at), differences first then equivalences, in the
    order given; an undefined (NaN) p counts as 1."""
    ps = [p if math.isfinite(p) else 1.0 for p in (*differences, *equivalences)]
    m = len(differences)
    left = [2] * m  # hypotheses still untested, per comparison
    adjusted, levels = [1.0] * len(ps), [alpha] * len(ps)
    running = 0.0
    for _, i in sorted((p, i) for i, p in enumerate(ps)):
        t = sum(1 for k in left if k)
        running = max(running, min(1.0, t * ps[i]))
        adjusted[i], levels[i] = running, alpha / t
        left[i % m] -= 1
    return adjusted, levels


def family(raw: dict[str, Paired], analysis: Analysis = Analysis()) -> dict[str, Paired]:
    """Correct every compared variant's tests together, add the simultaneous intervals, and give
    each its verdict. One error budget (`paired_holm`): the m difference tests and the m
    equivalence tests are one family, so the chance of any false verdict is at most α (an
    untestable variant counts with p = 1)."""
    if analysis.test not in TESTS:  # TESTS: the values of settings.analysis.Test
        raise ValueError(f"analysis.test: {analysis.test!r} is not allowed; expected one of {', '.join(TESTS)}")
    names, rs = list(raw), list(raw.values())
    m = len(rs)
    deciders = [_decider(r, analysis.test) for r in rs]
    tost = [r.tost_t_p if test == "t" else r.tost_perm_p for r, (test, _) in zip(rs, deciders)]
    t_holm = paired_holm([r.t_p for r in rs], tost, analysis.alpha)[0][:m]  # each test's own, in the same family
    perm_holm = paired_holm([r.perm_p for r in rs], tost, analysis.alpha)[0][:m]
    deciding = [r.t_p if test == "t" else r.perm_p for r, (test, _) in zip(rs, deciders)]
    joint, levels = paired_holm(deciding, tost, analysis.alpha)
    out = {}
    for i, (name, r) in enumerate(zip(names, rs)):
        test, why = deciders[i]
        p = joint[i]
        if r.interval == "sign-flip":
            low, high = signflip_interval(np.array(r.values), analysis.alpha / m) if r.n >= 2 else (math.nan, math.nan)
            eq = equivalence_bounds(np.array(r.values), levels[m + i]) if r.n >= 2 else (math.nan, math.nan)
        else:
            low, high = _t_interval(r.diff_mean, r.sd, r.n, 1 - analysis.alpha / m)
            eq = _t_interval(r.diff_mean, r.sd, r.n, 1 - 2 * levels[m + i])
        if r.n < MIN_PAIRS:
            why += f" (fewer than {MIN_PAIRS} pairs: no verdict)"
        r = replace(
            r,
            sim_low=low,
            sim_high=high,
            t_holm=t_holm[i],
            perm_holm=perm_holm[i],
            tost_holm=joint[m + i],
            p_holm=p,
            eq_low=eq[0],
            eq_high=eq[1],
            eq_confidence=1 - 2 * levels[m + i],
            p_level=levels[i],
            decided_by=f"{_TEST_NAMES[test]}{why}",
        )
        verdict = (
            "inconclusive"
            if r.n < MIN_PAIRS
            else ("better" if r.diff_mean > 0 else "worse")
            if p < analysis.alpha
            else "equivalent"
            if joint[m + i] < analysis.alpha
            else "inconclusive"
        )
        both = math.isfinite(r.t_p) and (t_holm[i] < analysis.alpha) != (perm_holm[i] < analysis.alpha)
        disagree = (
            (
                f"t-test Holm p {_p3(t_holm[i])} and permutation Holm p {_p3(perm_holm[i])} disagree at α = {analysis.alpha}"
            )
            if both
            else ""
        )
        if verdict in ("better", "worse") and low <= 0 <= high:  # Holm's later steps test at more than α/m
            disagree = "; ".join(
                filter(
                    None,
                    [
                        disagree,
                        "simultaneous interval still touches zero: Holm rejects at its step-down level, "
                        "which is above the interval's α/m",
                    ],
                )
            )
        out[name] = replace(r, verdict=verdict, disagreement=disagree)
    return out


_TEST_NAMES = {"t": "paired t-test", "permutation": "sign-flip permutation test"}


def _decider(r: Paired, chosen: str) -> tuple[str, str]:
    """The test that decides: the chosen one, or the permutation test where the t-test is undefined."""
    if chosen == "t" and not math.isfinite(r.t_p):
        return "permutation", (
            " (t-test undefined: fewer than 2 pairs)" if r.n < 2 else " (t-test undefined: no spread between seeds)"
        )
    return chosen, ""


def _p3(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"
