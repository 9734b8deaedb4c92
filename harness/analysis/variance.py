"""Where the noise comes from: each source of randomness's variance, from a variance design's runs
(harness/settings/designs.py), beside the floor a finite test set sets.

The design varies one source at a time over n seeds, every other source pinned to one seed, and
then all of them together. The runs of one source are then n independent draws of what that source
alone does to the accuracy (with the others held where they are), so the unbiased sample variance
s² (n − 1 degrees of freedom) estimates that source's variance, and, when its effect is normal,
(n − 1)s²/σ² follows χ²(n − 1): the exact interval [(n − 1)s²/χ²(1 − α/2), (n − 1)s²/χ²(α/2)].
A one-way random-effects analysis would need several runs per level of a source; with one run per
level its component is this variance. The bootstrap is not used: at 4 seeds per source it has only
a handful of distinct resamples. The chi-square interval leans on normality: tests/test_variance.py
measures its coverage for normal effects (95% as stated) and for heavy-tailed ones (lower).

The test-set floor is the binomial variance of an accuracy measured on n_test independent images,
p(1 − p)/n_test (Jordan 2024: test-set errors are nearly independent): what a finite test set adds
to any single number, however many seeds are run. Shares are of the sum of the sources' variances
and the floor; the one-at-a-time variances add up to the all-sources one when the sources act
additively and independently, which `additivity` shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from harness.analysis.stats import test_set_floor
from harness.settings.designs import ALL

TEST_SET = "test set"  # the floor's name in shares and plots


@dataclass(frozen=True)
class Component:
    """One source's runs: their count, mean accuracy and variance (points²) with its interval."""

    source: str
    n: int
    mean: float
    variance: float
    low: float
    high: float

    @property
    def sd(self) -> float:
        return math.sqrt(self.variance) if math.isfinite(self.variance) else math.nan


def component(source: str, values: list[float], confidence: float = 0.95) -> Component:
    """The sample variance of `values` (points) and its exact chi-square interval; NaN below 2 runs."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return Component(source, n, float(x.mean()) if n else math.nan, math.nan, math.nan, math.nan)
    s2 = float(x.var(ddof=1)) if np.ptp(x) > 0 else 0.0  # equal runs: exactly no spread, not a rounding residue
    a = 1.0 - confidence
    df = n - 1
    return Component(
        source, n, float(x.mean()), s2, df * s2 / st.chi2.ppf(1 - a / 2, df), df * s2 / st.chi2.ppf(a / 2, df)
    )


@dataclass(frozen=True)
class Decomposition:
    """A variant's sources of variation, its all-sources spread and its test set's floor (points²)."""

    variant: str
    components: tuple[Component, ...]  # one per source varied alone, in the design's order
    total: Component  # every source varied together
    floor: float  # p(1 − p)/n_test in points², at the all-sources mean accuracy
    images: int

    @property
    def shares(self) -> dict[str, float]:
        """Each source's share, and the test set's, of their summed variance (NaN where unknown)."""
        parts = {c.source: c.variance for c in self.components} | {TEST_SET: self.floor}
        whole = sum(parts.values())
        return {k: (v / whole if whole > 0 else math.nan) for k, v in parts.items()}

    @property
    def dominant(self) -> str:
        """The part with the largest share ('' when no share is known)."""
        known = {k: v for k, v in self.shares.items() if math.isfinite(v)}
        return max(known, key=known.get) if known else ""

    @property
    def additivity(self) -> float:
        """Σ of the one-at-a-time variances over the all-sources variance (1 when the sources add)."""
        parts = sum(c.variance for c in self.components)
        return parts / self.total.variance if self.total.variance > 0 else math.nan


def decompose(
    variant: str, by_source: dict[str, list[float]], images: int, sources: tuple[str, ...], confidence: float = 0.95
) -> Decomposition:
    """`by_source`: each source's runs' test accuracies (points), and ALL's for every source
    varied; `images`: the test set's size."""
    total = component(ALL, by_source.get(ALL, []), confidence)
    floor = test_set_floor(total.mean, images) ** 2 if math.isfinite(total.mean) else math.nan
    parts = tuple(component(s, by_source.get(s, []), confidence) for s in sources)
    return Decomposition(variant, parts, total, floor, images)
