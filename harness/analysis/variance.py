"""Where the noise comes from: each source of randomness's variance, from a variance design's runs
(harness/settings/designs.py), what part of it is per-image coin flips, whether one source
dominates, and whether the sources add.

The design varies one source at a time over n seeds, every other source pinned to a seed no run
varies, and then all of them together. The runs of one source are then n independent draws of what
that source alone does to the accuracy (with the others held where they are), so the unbiased
sample variance s² (n − 1 degrees of freedom) estimates that source's variance, and, when its
effect is normal, (n − 1)s²/σ² follows χ²(n − 1): the exact interval
[(n − 1)s²/χ²(1 − α/2), (n − 1)s²/χ²(α/2)]. A one-way random-effects analysis would need several
runs per level of a source; with one run per level its component is this variance. The bootstrap
is not used: at 4 seeds per source it has only a handful of distinct resamples. The chi-square
interval leans on normality: tests/analysis/test_variance.py measures its coverage for normal effects (95%
as stated) and for heavy-tailed ones (lower).

**Per-image part** (Jordan 2024): on one fixed test set a run's accuracy is the mean of N
right-or-wrong images. If image i is right with probability pᵢ over the source's draws and images
flip independently, the accuracy varies by (1/N²) Σ pᵢ(1 − pᵢ) over those draws. From the R runs'
stored predictions, p̂ᵢ (the share of runs that got image i right) gives the unbiased estimate
(1/N²) Σ p̂ᵢ(1 − p̂ᵢ) · R/(R − 1). Close to the source's whole variance, the source's spread is
independent per-image noise; well below it, the source moves many images together. (The test-set
floor p(1 − p)/N is another quantity: the variance of one run's accuracy over new test sets. It is
not part of any variance here and is not added to them.)

**Dominance**: the largest estimate is only named *dominant* when the two-sided F test of the two
largest variances (s₁²/s₂² against F(n₁ − 1, n₂ − 1)) rejects equal variances at α. Two sources
tied and the rest silent is the least favourable case for "the largest is larger than every other",
and there the test claims a dominant source with probability α; with more tied sources less.

**Additivity**: Σ one-at-a-time variances / the all-sources variance is 1 when the sources act
additively and independently. Its interval treats the sum as a scaled chi-square with
Satterthwaite's degrees of freedom ν = (Σ sᵢ²)² / Σ sᵢ⁴/(nᵢ − 1), so the ratio over its true value
is about F(ν, n_all − 1). The label is *close to additive* only when that interval lies within
[1/2, 2], *the sources interact* only when it excludes 1, and otherwise says the runs are too few
(tests/analysis/test_variance.py simulates how often each is printed, and how many seeds the first needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from harness.settings.designs import ALL

ADDITIVE = (0.5, 2.0)  # the additivity ratio's interval must lie within this to be "close to additive"


@dataclass(frozen=True)
class Component:
    """One source's runs: their count, mean accuracy and variance (points²) with its interval, and
    the per-image part of that variance (NaN without stored predictions). `skipped`: the variant
    draws nothing from this source, so the design trained no runs for it and its variance is 0."""

    source: str
    n: int
    mean: float
    variance: float
    low: float
    high: float
    per_image: float = math.nan
    skipped: bool = False

    @property
    def sd(self) -> float:
        return math.sqrt(self.variance) if math.isfinite(self.variance) else math.nan


def per_image_variance(correct: np.ndarray) -> float:
    """(1/N²) Σ p̂ᵢ(1 − p̂ᵢ) · R/(R − 1) in points², from an R × N array of right (True) or wrong
    per run and test image: the variance the runs' accuracy would have if images flipped
    independently, each with its own probability. NaN below 2 runs."""
    r, n = correct.shape
    if r < 2 or n == 0:
        return math.nan
    p = correct.mean(axis=0)
    return float(1e4 * (p * (1.0 - p)).sum() / n**2 * r / (r - 1))


def component(
    source: str, values: list[float], confidence: float = 0.95, correct: np.ndarray | None = None
) -> Component:
    """The sample variance of `values` (points) and its exact chi-square interval; NaN below 2 runs.
    `correct`: the runs' right-or-wrong per test image, for the per-image part."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return Component(source, n, float(x.mean()) if n else math.nan, math.nan, math.nan, math.nan)
    s2 = float(x.var(ddof=1)) if np.ptp(x) > 0 else 0.0  # equal runs: exactly no spread, not a rounding residue
    a = 1.0 - confidence
    df = n - 1
    image = per_image_variance(correct) if correct is not None and len(correct) == n else math.nan
    return Component(
        source,
        n,
        float(x.mean()),
        s2,
        df * s2 / st.chi2.ppf(1 - a / 2, df),
        df * s2 / st.chi2.ppf(a / 2, df),
        image,
    )


def skipped(source: str) -> Component:
    """A source the variant draws nothing from: no runs, no spread (exactly 0)."""
    return Component(source, 0, math.nan, 0.0, 0.0, 0.0, skipped=True)


@dataclass(frozen=True)
class Dominance:
    """The two largest variances compared: F = s₁²/s₂², its degrees of freedom, and the two-sided p."""

    largest: str
    runner_up: str
    f: float
    df: tuple[int, int]
    p: float


@dataclass(frozen=True)
class Additivity:
    """Σ one-at-a-time variances / all-sources variance, its interval, and what it supports."""

    ratio: float
    low: float
    high: float

    @property
    def label(self) -> str:
        """'close' (the interval within ADDITIVE), 'interact' (it excludes 1), or 'unclear'."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "unclear"
        if ADDITIVE[0] <= self.low and self.high <= ADDITIVE[1]:
            return "close"
        return "interact" if self.high < 1 or self.low > 1 else "unclear"


@dataclass(frozen=True)
class Decomposition:
    """A variant's sources of variation and its all-sources spread (points²)."""

    variant: str
    components: tuple[Component, ...]  # one per source of the design, in its order (skipped ones included)
    total: Component  # every source varied together
    images: int
    alpha: float = 0.05

    @property
    def measured(self) -> tuple[Component, ...]:
        """The sources with runs and a variance."""
        return tuple(c for c in self.components if not c.skipped and math.isfinite(c.variance))

    @property
    def shares(self) -> dict[str, float]:
        """Each source's share of the sources' summed variance (NaN where unknown; 0 where skipped)."""
        whole = sum(c.variance for c in self.components if math.isfinite(c.variance))
        return {
            c.source: (c.variance / whole if whole > 0 and math.isfinite(c.variance) else math.nan)
            for c in self.components
        }

    @property
    def largest(self) -> str:
        """The source with the largest variance estimate ('' when none has a positive one)."""
        known = [c for c in self.measured if c.variance > 0]
        return max(known, key=lambda c: c.variance).source if known else ""

    @property
    def dominance(self) -> Dominance | None:
        """The F test of the two largest variances (None with fewer than two measured sources)."""
        ranked = sorted(self.measured, key=lambda c: c.variance, reverse=True)
        if len(ranked) < 2 or ranked[0].variance <= 0:
            return None
        top, second = ranked[0], ranked[1]
        df = (top.n - 1, second.n - 1)
        f = top.variance / second.variance if second.variance > 0 else math.inf
        p = 0.0 if math.isinf(f) else min(1.0, 2.0 * float(st.f.sf(f, *df)))
        return Dominance(top.source, second.source, f, df, p)

    @property
    def dominant(self) -> str:
        """The largest source when the F test supports it at alpha ('' otherwise)."""
        d = self.dominance
        return d.largest if d is not None and d.p < self.alpha else ""

    @property
    def additivity(self) -> Additivity:
        parts = [c for c in self.components if not c.skipped]
        if any(not math.isfinite(c.variance) for c in parts) or not self.total.variance > 0 or not parts:
            return Additivity(math.nan, math.nan, math.nan)
        total = sum(c.variance for c in parts)
        ratio = total / self.total.variance
        squares = sum(c.variance**2 / (c.n - 1) for c in parts)
        if squares == 0:
            return Additivity(ratio, math.nan, math.nan)
        nu, d = total**2 / squares, self.total.n - 1
        return Additivity(ratio, ratio / st.f.ppf(1 - self.alpha / 2, nu, d), ratio / st.f.ppf(self.alpha / 2, nu, d))


def decompose(
    variant: str,
    by_source: dict[str, list[float]],
    images: int,
    sources: tuple[str, ...],
    confidence: float = 0.95,
    correct: dict[str, np.ndarray] | None = None,
    skip: tuple[str, ...] = (),
) -> Decomposition:
    """`by_source`: each source's runs' test accuracies (points), and ALL's for every source
    varied; `images`: the test set's size; `correct`: each source's runs × images right-or-wrong
    (for the per-image part), where stored; `skip`: sources the variant draws nothing from."""
    correct = correct or {}
    total = component(ALL, by_source.get(ALL, []), confidence, correct.get(ALL))
    parts = tuple(
        skipped(s) if s in skip else component(s, by_source.get(s, []), confidence, correct.get(s)) for s in sources
    )
    return Decomposition(variant, parts, total, images, round(1.0 - confidence, 12))
