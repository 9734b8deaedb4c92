"""Test-set noise counted: the paired difference's interval over seeds and test images, crossed.

Per seed s the run pair gives, per test image i, whether each model classified it correctly; the
image's paired score is D[s, i] = (variant right) − (baseline right), in {−1, 0, 1}, and the seed's
difference is 100 · mean_i D[s, i] points. Every seed is scored on the same N test images, so seeds
and images are crossed random factors: D[s, i] = μ + a_s + b_i + e_si (seed, image, and their
interaction with the coin flip of each run on each image). The mean over the n × N table varies by
σ²_a/n + σ²_b/N + σ²_e/(nN) over new seeds *and* new test sets. With the two-way mean squares
MS_seeds, MS_images and MS_residual (whose expectations are σ²_e + Nσ²_a, σ²_e + nσ²_b and σ²_e),
that variance is estimated without bias by (MS_seeds + MS_images − MS_residual)/(nN): each part
counted once. (The crossed bootstrap this replaces resampled seeds and images together and so
counted the interaction twice, and then scaled the image part by √(n/(n − 1)): its "95%" interval
covered 98–100% and was up to twice the t interval's width.) Each factor's part, (MS − MS_residual),
is floored at 0, as variance components are; so the variance is never below MS_residual/(nN). The
interval is Δ ± t_ν · se with Satterthwaite's degrees of freedom ν for that sum, and never narrower
than the paired t interval of the seeds (t on n − 1 degrees of freedom with MS_seeds/(nN)): with
an image part, Satterthwaite's ν exceeds n − 1 and would otherwise narrow it below the seeds' own
interval. tests/analysis/test_stats.py simulates its coverage at 3, 5 and 10 seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Crossed:
    n: int  # pairs with per-image predictions
    low: float  # the interval of the mean paired difference (points) at 1 − α, over new seeds and test sets
    high: float
    se: float  # its standard error (points)
    df: float  # Satterthwaite's degrees of freedom of the variance


NONE = Crossed(0, math.nan, math.nan, math.nan, math.nan)


def scores(baseline_correct: np.ndarray, variant_correct: np.ndarray) -> np.ndarray:
    """One seed's paired score per test image: (variant right) − (baseline right), as int8."""
    b, v = np.asarray(baseline_correct, dtype=bool), np.asarray(variant_correct, dtype=bool)
    if b.shape != v.shape:
        raise ValueError(f"the per-image predictions differ in length ({len(b)} and {len(v)})")
    return v.astype(np.int8) - b.astype(np.int8)


def interval(rows: list[np.ndarray], alpha: float = 0.05) -> Crossed:
    """The crossed interval of the mean paired difference from each seed's per-image scores (all
    over the same images); NONE below 2 seeds."""
    n = len(rows)
    if n < 2:
        return NONE
    sizes = {len(r) for r in rows}
    if len(sizes) != 1:
        raise ValueError(
            f"the seeds were scored on test sets of different sizes ({', '.join(map(str, sorted(sizes)))} images)"
        )
    d = np.stack([np.asarray(r, dtype=float) for r in rows])  # n × N
    images = d.shape[1]
    if images < 2:
        return NONE
    mean, by_seed, by_image = float(d.mean()), d.mean(axis=1), d.mean(axis=0)
    ms_seeds = images * float(((by_seed - mean) ** 2).sum()) / (n - 1)
    ms_images = n * float(((by_image - mean) ** 2).sum()) / (images - 1)
    residual = float((d * d).sum()) - images * float((by_seed**2).sum()) - n * float((by_image**2).sum())
    ms_residual = max(0.0, residual + n * images * mean**2) / ((n - 1) * (images - 1))
    # σ²_e/(nN) once, and each factor's own part, its mean square less the residual's, where positive
    above = [(ms, df) for ms, df in ((ms_seeds, n - 1), (ms_images, images - 1)) if ms > ms_residual]
    parts = above + [((1 - len(above)) * ms_residual, (n - 1) * (images - 1))]
    total = sum(m for m, _ in parts)
    if total <= 0:  # every score the same: no spread at all
        return Crossed(n, 100.0 * mean, 100.0 * mean, 0.0, math.inf)
    df = total**2 / sum(m * m / k for m, k in parts)
    se = 100.0 * math.sqrt(total / (n * images))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    seeds_only = float(stats.t.ppf(1 - alpha / 2, n - 1)) * 100.0 * math.sqrt(ms_seeds / (n * images))
    half = max(half, seeds_only)  # never narrower than the paired t interval of the seeds
    return Crossed(n, 100.0 * mean - half, 100.0 * mean + half, se, df)
