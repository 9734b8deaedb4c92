"""The exact sign-flip permutation test of paired differences: its p-value (all 2^n sign
patterns up to EXACT_UP_TO values, a seeded Monte-Carlo beyond), the smallest p n values can give,
and the test inverted into an interval. harness/analysis/stats.py and sequential.py use it."""

from __future__ import annotations

import functools
import math

import numpy as np

EXACT_UP_TO = 20  # values; beyond, the permutation test samples MONTE_CARLO sign patterns
MONTE_CARLO = 100_000
NO_SPREAD = 1e-9  # relative: a value at most this times max(1, |d|) is float noise (a zero, for the floor)


def noise(d: np.ndarray) -> float:
    """The size below which a value of d (or its spread) is float noise: NO_SPREAD times max(1, |d|)."""
    return NO_SPREAD * max(1.0, float(np.abs(d).max(initial=0.0)))


def _nonzero(d: np.ndarray) -> int:
    return int((np.abs(d) > noise(d)).sum())


def floor_p(d: np.ndarray) -> float:
    """The smallest two-sided p the sign-flip test can give on d: 2 / 2^k for its k non-zero
    values (a zero flips to itself), 1 when all are zero; 1 / (MONTE_CARLO + 1) beyond EXACT_UP_TO."""
    k = _nonzero(d)
    if k > EXACT_UP_TO:
        return 1.0 / (MONTE_CARLO + 1)
    return min(1.0, 2.0 / 2**k) if k else 1.0


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
        total = 0
        for start in range(0, 2**n, 1 << 16):
            total += hits(_signs(n, start) @ d)
        return total / 2**n
    rng = np.random.default_rng(0)
    total = sum(hits(rng.choice((-1.0, 1.0), size=(10_000, n)) @ d) for _ in range(MONTE_CARLO // 10_000))
    return (1 + total) / (1 + MONTE_CARLO)


def tost_p(d: np.ndarray, margin: float) -> float:
    """The sign-flip TOST p of d against ±margin: the larger of the two one-sided p-values (1 for no values)."""
    if not len(d):
        return 1.0
    return max(signflip_p(d + margin, "greater"), signflip_p(d - margin, "less"))


@functools.lru_cache(maxsize=64)
def _signs(n: int, start: int) -> np.ndarray:
    """Sign patterns start .. start + 2^16 of n values (±1.0), one per row."""
    codes = np.arange(start, min(2**n, start + (1 << 16)))[:, None]
    return (1 - 2 * ((codes >> np.arange(n)) & 1)).astype(np.int8)


@functools.lru_cache(maxsize=EXACT_UP_TO + 1)
def _patterns(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 2^n sign patterns of n values (±1 as int8 rows), which of them mix signs, and the sum of
    signs k of those: what `signflip_interval` sweeps, made once a pair count (a simulated study
    inverts the test at every look)."""
    signs = np.concatenate([_signs(n, start) for start in range(0, 2**n, 1 << 16)])
    k = signs.sum(axis=1, dtype=np.int64)
    mixed = np.abs(k) != n
    return signs, mixed, k[mixed]


def _sweep(opens: np.ndarray, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ends of closed intervals in order, and how many intervals hold each point from that end
    on: at a tie an interval opens before another closes (what a stable sort of the opening ends
    followed by the closing ones gives; merged from two plain sorts, three times faster)."""
    opens, closes = np.sort(opens), np.sort(closes)
    at_open = np.arange(len(opens)) + np.searchsorted(closes, opens, "left")
    at_close = np.arange(len(closes)) + np.searchsorted(opens, closes, "right")
    ends, steps = np.empty(len(opens) + len(closes)), np.empty(len(opens) + len(closes), np.int64)
    ends[at_open], ends[at_close], steps[at_open], steps[at_close] = opens, closes, 1, -1
    return ends, np.cumsum(steps)


def signflip_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """The sign-flip test inverted: the shifts μ it does not reject at two-sided `level` on d − μ,
    as [low, high]; (−inf, inf) when the test cannot reach `level` with these pairs (2 / 2^n > level).

    Exact, without a search: a sign pattern s with k = Σ s_i and A = Σ s_i d_i is at least as
    extreme as the observed sum at μ when |A − kμ| ≥ |S − nμ| (S = Σ d_i), a quadratic in μ with a
    negative leading term, so it holds on the closed interval between (S − A)/(n − k) and
    (S + A)/(n + k); the two patterns with k = ±n always hold. p(μ) is the share of patterns whose
    interval holds μ, and a sweep over the intervals' ends gives where p(μ) > level (its hull)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0 or (n <= EXACT_UP_TO and 2.0 / 2**n > level):
        return -math.inf, math.inf
    if n <= EXACT_UP_TO:
        signs, mixed, k = _patterns(n)
        total, extra = 2**n, 0
    else:  # the Monte-Carlo patterns signflip_p draws
        rng = np.random.default_rng(0)
        signs = np.concatenate([rng.choice((-1.0, 1.0), size=(10_000, n)) for _ in range(MONTE_CARLO // 10_000)])
        total, extra = MONTE_CARLO + 1, 1
        k = signs.sum(axis=1, dtype=np.int64)
        mixed = np.abs(k) != n
        k = k[mixed]
    # a pattern with every sign alike is as extreme as the observed sum at every μ: counted apart
    a, total_sum, alike = (signs @ d)[mixed], float(d.sum()), int(len(mixed) - len(k))
    r1, r2 = (total_sum - a) / (n - k), (total_sum + a) / (n + k)
    ends, held = _sweep(np.minimum(r1, r2), np.maximum(r1, r2))
    held += alike + extra
    inside = held > level * total  # p(μ) > level from this end on
    if not inside.any():
        return math.nan, math.nan
    first = int(np.argmax(inside))
    last = len(inside) - 1 - int(np.argmax(inside[::-1]))  # the last end after which p(μ) > level still holds
    return float(ends[first]), float(ends[last + 1]) if last + 1 < len(ends) else math.inf


def equivalence_bounds(d: np.ndarray, level: float) -> tuple[float, float]:
    """The two one-sided sign-flip tests at `level` each, inverted: (L, U) holds the shifts μ
    neither rejects, over the same sign patterns `signflip_p` counts (all 2^n, or its seeded
    Monte-Carlo draws), so the margin lies strictly outside it, −margin < L and U < margin,
    exactly when `tost_p(d, margin)` ≤ level (up to signflip_p's float tolerance).

    A pattern flipping the k > 0 values of a set F is at least as extreme as the observed sum at μ
    ("greater") when Σ_F (d_i − μ) ≤ 0, that is μ ≥ c = Σ_F d_i / k ("less": μ ≤ c); a pattern
    flipping nothing always is. So each side's p(μ) is a count of the c on one side of μ, and its
    bound is an order statistic of them."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        return -math.inf, math.inf
    if n <= EXACT_UP_TO:
        chunks = (_signs(n, s) for s in range(0, 2**n, 1 << 16))
        extra, total = 0, 2**n
    else:
        rng = np.random.default_rng(0)  # the draws signflip_p makes, in its order
        chunks = (rng.choice((-1.0, 1.0), size=(10_000, n)) for _ in range(MONTE_CARLO // 10_000))
        extra, total = 1, 1 + MONTE_CARLO
    cuts, none = [], 0
    for signs in chunks:  # chunk by chunk: 2^20 patterns at once would take hundreds of MB
        flipped = signs < 0
        k = flipped.sum(axis=1)
        cuts.append((flipped.astype(float) @ d)[k > 0] / k[k > 0])
        none += int((k == 0).sum())
    c = np.sort(np.concatenate(cuts))
    allowed = math.floor(level * total + 1e-9) - extra - none  # the hits a side may have beyond those
    if allowed < 0:
        return -math.inf, math.inf
    low = float(c[allowed]) if allowed < len(c) else math.inf
    high = float(c[len(c) - 1 - allowed]) if allowed < len(c) else -math.inf
    return low, high
