"""Test-set noise counted: a two-level bootstrap of the paired difference (seeds, then test
images within each seed) and the probability that the variant beats the baseline on a fresh seed.

Per seed s the run pair gives, per test image, whether each model classified it correctly. Only the
images where they disagree move the difference: n⁺ (variant right, baseline wrong) and n⁻ (the
reverse), out of N images. Resampling the N images with replacement draws (n⁺, n⁰, n⁻) from a
multinomial with the observed shares, so one replicate is: draw n seeds with replacement, then for
each a multinomial; its difference is 100 (n⁺ − n⁻) / N points. The same images are resampled for
both models of a pair, so the pairing holds at the image level too. A fixed seed makes the
intervals reproducible (the report is rebuilt byte for byte).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DRAWS = 4000
SEED = 20211


@dataclass(frozen=True)
class Bootstrap:
    n: int  # pairs with per-image predictions
    low: float  # 95% percentile interval of the mean paired difference (points)
    high: float
    p_improve: float  # share of pairs where the variant scored higher (ties count half)
    p_improve_low: float  # its 95% interval from the same replicates
    p_improve_high: float


NONE = Bootstrap(0, math.nan, math.nan, math.nan, math.nan, math.nan)


def disagreements(baseline_correct: np.ndarray, variant_correct: np.ndarray) -> tuple[int, int, int]:
    """(n⁺, n⁻, N) of one seed from the two models' per-image correctness."""
    b, v = np.asarray(baseline_correct, dtype=bool), np.asarray(variant_correct, dtype=bool)
    if b.shape != v.shape:
        raise ValueError(f"the per-image predictions differ in length ({len(b)} and {len(v)})")
    return int((v & ~b).sum()), int((b & ~v).sum()), len(b)


def two_level(pairs: list[tuple[int, int, int]], alpha: float = 0.05, draws: int = DRAWS) -> Bootstrap:
    """Bootstrap the mean paired difference over seeds × images from each seed's (n⁺, n⁻, N)."""
    n = len(pairs)
    if n == 0:
        return NONE
    counts = np.array(pairs, dtype=np.int64)
    plus, minus, images = counts[:, 0], counts[:, 1], counts[:, 2]
    observed = 100.0 * (plus - minus) / images
    p_hat = float(np.mean((observed > 0) + 0.5 * (observed == 0)))
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, n, size=(draws, n))
    shares = np.stack([plus / images, minus / images, 1 - (plus + minus) / images], axis=1)
    drawn = rng.multinomial(images[picks], shares[picks])  # (draws, n, 3)
    diff = 100.0 * (drawn[..., 0] - drawn[..., 1]) / images[picks]
    means = diff.mean(axis=1)
    wins = ((diff > 0) + 0.5 * (diff == 0)).mean(axis=1)
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    low, high = np.percentile(means, q)
    p_low, p_high = np.percentile(wins, q)
    return Bootstrap(n, float(low), float(high), p_hat, float(p_low), float(p_high))
