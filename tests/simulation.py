"""Simulated studies for the error-rate tests: paired differences drawn from a stated distribution
with no true effect (or a given one), every pair tried, walked through the seeds-on-demand rule
(harness/analysis/sequential.py) or tested at a fixed number of seeds (harness/analysis/stats.py)."""

from __future__ import annotations

import math

import numpy as np

from harness.analysis import sequential as sq
from harness.analysis import stats

ALPHA = 0.05
IMAGES = 297  # a small test set: one image is 0.34 points


def _normal(rng, size):
    return rng.standard_normal(size)


def _t3(rng, size):
    return rng.standard_t(3, size)


def _exponential(rng, size):
    return rng.exponential(1.0, size) - 1.0  # mean 0, skewness 2


def _lognormal(rng, size):
    return np.exp(rng.standard_normal(size)) - math.exp(0.5)  # mean 0, skewness about 6.2


def _images(rng, size):
    """Counts: a paired difference of round(N(0, 2)) images out of IMAGES, in points."""
    return 100.0 * np.round(2.0 * rng.standard_normal(size)) / IMAGES


DRAWS = {
    "normal": _normal,
    "t, 3 df": _t3,
    "Exp(1) − 1": _exponential,
    "lognormal": _lognormal,
    f"{IMAGES} images, sd 2 images": _images,
}


def sequential_studies(
    seed: int, studies: int, variants: int, draw: str, plan: sq.Sequential, test: str = "t", effect: float = 0.0
) -> list[sq.Walk]:
    rng = np.random.default_rng(seed)
    seeds = tuple(range(plan.max_seeds))
    analysis = stats.Analysis(margin=0.5, alpha=ALPHA, test=test)
    out = []
    for _ in range(studies):
        diffs = {
            f"v{i}": dict(zip(seeds, map(float, DRAWS[draw](rng, plan.max_seeds) + effect))) for i in range(variants)
        }
        tried = {(v, s) for v in ["b", *diffs] for s in seeds}
        out.append(sq.walk(diffs, tried, "b", list(diffs), seeds, plan, analysis))
    return out


def false_rate(walks: list[sq.Walk]) -> float:
    """The share of studies with a better or worse verdict anywhere (no true effect: all false)."""
    return sum(any(t.verdict in ("better", "worse") for t in w.tracks.values()) for w in walks) / len(walks)


def fixed_false_rate(seed: int, studies: int, draw: str, n: int, test: str) -> float:
    """A fixed n-seed comparison of one variant with no true effect: the share called better or worse."""
    rng = np.random.default_rng(seed)
    analysis = stats.Analysis(margin=0.5, alpha=ALPHA, test=test)
    hits = 0
    for _ in range(studies):
        d = DRAWS[draw](rng, n)
        r = stats.family({"v": stats.differences(dict(enumerate(map(float, d))), analysis)}, analysis)["v"]
        hits += r.verdict in ("better", "worse")
    return hits / studies


def error(rate: float, studies: int) -> float:
    return math.sqrt(max(rate, ALPHA) * (1 - max(rate, ALPHA)) / studies)


def compare_all(
    baseline: dict[int, float], variants: dict[str, dict[int, float]], analysis: stats.Analysis = stats.Analysis()
) -> dict:
    """Paired comparisons of each variant's per-seed accuracies with the baseline's, Holm-corrected
    together, with verdicts (what report/comparisons.py does from the runs' counts)."""
    return stats.family({name: stats.paired(baseline, values, analysis) for name, values in variants.items()}, analysis)
