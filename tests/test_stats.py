"""The statistics against hand-worked values and scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness import stats


def test_summary_hand_worked():
    s = stats.summarize([1, 2, 3, 4])
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 2.5, 2.5, 1, 4)
    assert s.std == pytest.approx(math.sqrt(5 / 3))
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * s / sqrt(n)
    assert s.ci_low == pytest.approx(2.5 - half) and s.ci_high == pytest.approx(2.5 + half)


def test_summary_of_one_and_none():
    one = stats.summarize([3.0])
    assert one.n == 1 and one.mean == 3.0 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([]).n == 0


def test_paired_hand_worked_and_against_scipy():
    base = {1: 70.0, 2: 71.0, 3: 72.0}
    var = {1: 71.0, 2: 73.0, 3: 72.5, 9: 99.0}  # seed 9 has no pair and is ignored
    r = stats.paired(base, var)
    d = np.array([1.0, 2.0, 0.5])
    assert r.n == 3 and r.diff_mean == pytest.approx(d.mean())
    sd = math.sqrt(((1 - 7 / 6) ** 2 + (2 - 7 / 6) ** 2 + (0.5 - 7 / 6) ** 2) / 2)
    t = (7 / 6) / (sd / math.sqrt(3))
    assert t == pytest.approx(2.6457513, rel=1e-6)
    assert r.t_p == pytest.approx(2 * sps.t.sf(t, 2))
    assert r.t_p == pytest.approx(sps.ttest_rel([71, 73, 72.5], [70, 71, 72]).pvalue)
    assert r.wilcoxon_p == pytest.approx(0.25)  # exact: all 3 differences positive -> 2 / 2**3
    assert r.effect_size == pytest.approx((7 / 6) / sd)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert (r.ci_low, r.ci_high) == (pytest.approx(7 / 6 - half), pytest.approx(7 / 6 + half))


def test_holm_hand_worked():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5]
    adjusted = stats.holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_detectable_difference_has_the_stated_power():
    for n in (2, 3, 5, 10, 30):
        mdd = stats.detectable_difference(1.5, n)
        df, crit = n - 1, sps.t.ppf(0.975, n - 1)
        power = sps.nct.sf(crit, df, mdd / 1.5 * math.sqrt(n))
        assert power == pytest.approx(0.8, abs=1e-6)
    # large n approaches the normal approximation (z_0.975 + z_0.8) * sd / sqrt(n)
    assert stats.detectable_difference(1.0, 400) == pytest.approx((1.959964 + 0.841621) / 20, rel=0.01)
    assert stats.detectable_difference(1.0, 3) > stats.detectable_difference(1.0, 10)
    assert math.isnan(stats.detectable_difference(1.0, 1))


def test_verdicts():
    base = {s: 70.0 + 0.1 * s for s in range(8)}
    better = {s: v + 2.0 + 0.05 * (s % 3) for s, v in base.items()}
    same = {s: v + (0.3 if s % 2 else -0.3) for s, v in base.items()}
    worse = {s: v - 1.0 - 0.1 * (s % 2) for s, v in base.items()}
    out = stats.compare_all(base, {"better": better, "same": same, "worse": worse})
    assert out["better"].verdict == "better"
    assert out["worse"].verdict == "worse"
    assert out["same"].verdict == "no detectable difference"
    raw = [stats.paired(base, v).t_p for v in (better, same, worse)]
    assert [out[k].p_holm for k in ("better", "same", "worse")] == pytest.approx(stats.holm(raw))
    one = stats.compare_all({1: 70.0}, {"x": {1: 75.0}})
    assert one["x"].verdict.startswith("no test possible") and math.isnan(one["x"].t_p)
