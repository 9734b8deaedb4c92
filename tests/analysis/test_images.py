"""The per-image analyses of the runs' ledgers (harness/analysis/images.py) on hand-made ledgers:
the flip table, churn, the seed ensemble and the pooled reliability curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import images

LABELS = np.array([0, 1, 2, 0, 1, 2], dtype=np.int16)


def ledger(selected, probs=None) -> dict:
    g = {"labels": LABELS, "selected": np.array(selected, dtype=np.int16)}
    if probs is not None:
        g["probs"] = np.array(probs, dtype=np.float16)
    return g


def test_the_flip_table_counts_images_right_on_most_seeds_of_one_and_not_the_other_by_class():
    # right per image: baseline seeds ✓✓✗✗✗✓ / ✓✗✗✗✓✓ / ✓✓✗✓✗✓ -> on most: images 0, 1, 5
    base = [ledger([0, 1, 0, 1, 0, 2]), ledger([0, 0, 0, 1, 1, 2]), ledger([0, 1, 1, 0, 0, 2])]
    # variant: ✓✓✓✓✗✓ / ✓✓✓✓✗✗ -> on most (2 of 2): images 0, 1, 2, 3; image 5 is a tie, not right
    variant = [ledger([0, 1, 2, 0, 0, 2]), ledger([0, 1, 2, 0, 0, 0])]
    f = images.flips(base, variant, 3)
    assert f.fixed.tolist() == [1, 0, 1]  # images 3 (class 0) and 2 (class 2)
    assert f.broken.tolist() == [0, 0, 1]  # image 5 (class 2)
    assert f.images == 6 and f.seeds == (3, 2)
    swapped = images.flips(variant, base, 3)  # the other way round, fixed and broken trade places
    assert swapped.fixed.tolist() == [0, 0, 1] and swapped.broken.tolist() == [1, 0, 1]


def test_no_flip_table_over_different_test_sets():
    other = {"labels": LABELS[::-1].copy(), "selected": LABELS[::-1].copy()}
    assert images.flips([ledger(LABELS)], [other], 3) is None
    assert math.isnan(images.churn([ledger(LABELS), other]))


def test_churn_is_the_mean_pairwise_disagreement():
    a, b, c = ledger([0, 1, 2, 0, 1, 2]), ledger([0, 1, 2, 0, 1, 0]), ledger([1, 1, 2, 0, 1, 0])
    # a-b differ on 1 image, a-c on 2, b-c on 1: (1 + 2 + 1) / 3 pairs / 6 images
    assert images.churn([a, b, c]) == pytest.approx(4 / 18)
    assert math.isnan(images.churn([a]))


def test_the_seed_ensemble_averages_probabilities():
    p1 = [[0.6, 0.4, 0.0]] * 6
    p2 = [[0.0, 0.5, 0.5]] * 6
    acc, nll = images.ensemble([ledger([0] * 6, p1), ledger([1] * 6, p2)])
    # mean [0.3, 0.45, 0.25]: class 1 for every image, right on images 1 and 4
    assert acc == pytest.approx(100 * 2 / 6)
    six, four = float(np.float16(0.6)), float(np.float16(0.4))  # as the ledger stores them
    want = -(2 * math.log(six / 2) + 2 * math.log((four + 0.5) / 2) + 2 * math.log(0.25)) / 6
    assert nll == pytest.approx(want, rel=1e-12)
    assert images.ensemble([ledger([0] * 6, p1), ledger([1] * 6)]) is None  # one ledger without probabilities


def test_the_reliability_curve_pools_the_seeds_images():
    p = [[0.9, 0.05, 0.05]] * 6
    counts, conf, acc = images.reliability([ledger([0] * 6, p), ledger([0] * 6, p)])
    assert counts[13] == 12 and acc[13] == pytest.approx(4 / 12)  # class 0 is the label of 2 of 6 images
    assert images.reliability([ledger([0] * 6)]) is None


def test_the_tost_of_the_per_image_differences_on_a_hand_worked_case():
    # 1,000 images: 30 right only again, 10 right only before -> d has mean 2 points
    before = np.r_[np.ones(10, bool), np.zeros(990, bool)]
    again = np.r_[np.zeros(10, bool), np.ones(30, bool), np.zeros(960, bool)]
    e = images.equivalence([(before, again)], margin=5.0, alpha=0.05)
    d = 100.0 * (again.astype(float) - before.astype(float))
    se = d.std(ddof=1) / math.sqrt(1000)  # about 0.632
    assert e.delta == pytest.approx(2.0) and e.images == 1000
    assert e.low == pytest.approx(2.0 - 1.6448536269514722 * se) and e.high == pytest.approx(
        2.0 + 1.6448536269514722 * se
    )
    # the upper one-sided test is the harder: p = Φ((2 − 5)/se)
    assert e.p == pytest.approx(0.5 * math.erfc((5.0 - 2.0) / se / math.sqrt(2)), rel=1e-9)
    assert e.p < 0.05 and e.high < 5.0  # equivalent exactly when the 90% interval lies inside ±5
    tight = images.equivalence([(before, again)], margin=2.5, alpha=0.05)
    assert tight.p > 0.05 and tight.high > 2.5
