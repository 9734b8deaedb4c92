"""The statistics of an ablation, with scipy: per-variant summaries over seeds, paired differences
against the baseline (t-test, Wilcoxon, Holm correction, effect size, verdict) and the smallest
difference the current number of seeds could detect."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8


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
    n: int  # seeds present in both variants
    diff_mean: float  # variant minus baseline
    ci_low: float
    ci_high: float
    t_p: float  # paired t-test, two-sided
    wilcoxon_p: float  # Wilcoxon signed-rank, two-sided
    effect_size: float  # Cohen's d_z: mean difference / std of the differences
    detectable: float  # smallest |difference| a paired t-test detects with 80% power at this n and spread
    p_holm: float = math.nan  # t_p corrected for the number of comparisons
    verdict: str = ""


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
    if std == 0:
        return mean, mean
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return float(low), float(high)


def paired(baseline: dict[int, float], variant: dict[int, float], alpha: float = ALPHA) -> Paired:
    """Compare a variant with the baseline on the seeds both have (same seed = same split and order)."""
    seeds = sorted(set(baseline) & set(variant))
    return differences({s: variant[s] - baseline[s] for s in seeds}, alpha)


def differences(d_by_seed: dict[int, float], alpha: float = ALPHA) -> Paired:
    """Test per-seed differences (or any per-seed contrast) against zero: mean, t interval, t-test,
    Wilcoxon signed-rank, d_z and the detectable difference."""
    d = np.array([d_by_seed[s] for s in sorted(d_by_seed)], dtype=float)
    n = len(d)
    if n < 2:
        mean = float(d.mean()) if n else math.nan
        return Paired(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    low, high = _t_interval(mean, sd, n, 1 - alpha)
    if sd == 0:  # every seed moved by the same amount: the tests are undefined
        t_p = 1.0 if mean == 0 else math.nan
        effect = 0.0 if mean == 0 else math.copysign(math.inf, mean)
    else:
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
        effect = mean / sd
    w_p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return Paired(n, mean, low, high, t_p, w_p, effect, detectable_difference(sd, n, alpha))


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true mean difference a two-sided paired t-test finds with `power`, given the
    observed standard deviation of the differences `sd` and `n` pairs (noncentral t)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:
        ncp = effect * math.sqrt(n)
        # The far tail is negligible for positive effects and scipy may return NaN for it.
        far = float(np.nan_to_num(stats.nct.cdf(-crit, df, ncp), nan=0.0))
        return float(stats.nct.sf(crit, df, ncp)) + far - power

    effect = optimize.brentq(shortfall, 1e-9, 200.0)
    return float(effect * sd)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down correction; NaN p-values stay NaN and do not count as comparisons."""
    finite = [(p, i) for i, p in enumerate(pvalues) if math.isfinite(p)]
    m = len(finite)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(result: Paired, alpha: float = ALPHA) -> str:
    if result.n < 2:
        return "no test possible (fewer than 2 paired seeds)"
    if not math.isfinite(result.p_holm):
        return "no test possible (no spread between seeds)"
    if result.p_holm < alpha:
        return "better" if result.diff_mean > 0 else "worse"
    return "no detectable difference"


def compare_all(baseline: dict[int, float], variants: dict[str, dict[int, float]], alpha: float = ALPHA) -> dict[str, Paired]:
    """Paired comparisons of each variant with the baseline, Holm-corrected together, with verdicts."""
    return family({name: paired(baseline, values, alpha) for name, values in variants.items()}, alpha)


def family(raw: dict[str, Paired], alpha: float = ALPHA) -> dict[str, Paired]:
    """Holm-correct a family of tests together and give each its verdict."""
    adjusted = holm([r.t_p for r in raw.values()])
    out = {}
    for (name, r), p in zip(raw.items(), adjusted):
        r = Paired(**{**r.__dict__, "p_holm": p})
        out[name] = Paired(**{**r.__dict__, "verdict": verdict(r, alpha)})
    return out
