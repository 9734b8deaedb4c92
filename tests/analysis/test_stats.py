"""The statistics (harness/analysis/stats.py, signflip.py, crossed.py, sample_size.py; the answer's
wording in harness/report/answer.py and comparisons.py) against hand-worked values, scipy and brute
force: paired differences of counts, one Holm family of differences and equivalences, the sign-flip
test and its floor, TOST and the interval that decides equivalence, simultaneous intervals, the
seeds × images interval and its coverage, the seed win rate, the shape warning, the seeds a plan
needs, and refused inputs. The `defect` tests check small hand-made inputs, one rule each."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import expit

from harness.analysis import crossed, sample_size, signflip, stats
from tests import simulation as sim
from tests.helpers import THREE, looks
from tests.simulation import compare_all


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
    sd = math.sqrt(((1 - 7 / 6) ** 2 + (2 - 7 / 6) ** 2 + (0.5 - 7 / 6) ** 2) / 2)
    assert r.n == 3 and r.diff_mean == pytest.approx(7 / 6) and r.sd == pytest.approx(sd)
    assert r.t_p == pytest.approx(sps.ttest_rel([71, 73, 72.5], [70, 71, 72]).pvalue)
    assert r.perm_p == pytest.approx(0.25) and r.perm_min_p == pytest.approx(0.25)  # all 3 positive: 2 of 8 patterns
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert (r.ci_low, r.ci_high) == (pytest.approx(7 / 6 - half), pytest.approx(7 / 6 + half))
    # TOST at ±0.5: max of the two one-sided t-tests
    se = sd / math.sqrt(3)
    assert r.tost_t_p == pytest.approx(max(sps.t.sf((7 / 6 + 0.5) / se, 2), sps.t.cdf((7 / 6 - 0.5) / se, 2)))


def test_signflip_is_the_brute_force_enumeration():
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 8):
        d = np.round(rng.normal(0.3, 1.0, n), 2)
        patterns = [np.array(s) * d for s in itertools.product((1, -1), repeat=n)]
        brute = np.mean([abs(x.sum()) >= abs(d.sum()) - 1e-9 for x in patterns])
        assert signflip.signflip_p(d) == pytest.approx(brute)
        greater = np.mean([x.sum() >= d.sum() - 1e-9 for x in patterns])
        assert signflip.signflip_p(d, "greater") == pytest.approx(greater)


def test_signflip_monte_carlo_beyond_twenty_is_seeded_and_close():
    d = np.linspace(-0.5, 1.5, 24)
    p = signflip.signflip_p(d)
    assert p == signflip.signflip_p(d)  # reproducible
    assert 0 < p < 0.01  # a clear positive shift


def test_holm_hand_worked_and_nan_counts_as_one():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5]
    assert stats.holm([0.2, math.nan, 0.01]) == pytest.approx([0.4, 1.0, 0.03])


def test_hedges_correction_hand_worked():
    # J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2)); df = 4: Γ(2) / (√2 Γ(1.5)) = 1 / (√2 · √π / 2)
    assert stats.hedges_g(1.0, 5) == pytest.approx(2 / (math.sqrt(2) * math.sqrt(math.pi)))
    assert stats.hedges_g(1.0, 200) == pytest.approx(1 - 3 / (4 * 199 - 1), rel=1e-4)  # the usual approximation
    assert math.isnan(stats.hedges_g(1.0, 2))


def test_seeds_needed_has_the_stated_power():
    for sd, effect, alpha in ((1.0, 1.0, 0.05), (0.6, 0.5, 0.05 / 4), (2.0, 0.5, 0.01)):
        n = sample_size.seeds_needed(sd, effect, alpha)
        assert sample_size.power(effect, sd, n, alpha) >= 0.8 > sample_size.power(effect, sd, n - 1, alpha)
    assert sample_size.seeds_needed(1.0, 1.0, 0.05) == 10  # textbook: 10 pairs for d = 1 at α = 0.05, 80% power
    # no spread: what the sign-flip test needs, 2 / 2^7 < 0.0167
    assert sample_size.seeds_needed(0.0, 1.0, 0.05 / 3) == 7
    # 2 / 2^6 < 0.05
    assert sample_size.seeds_needed(0.2, 1.0, 0.05) == 3 and sample_size.seeds_needed(0.2, 1.0, 0.05, exact=True) == 6
    assert sample_size.pooled_sd([(3, 1.0), (5, 2.0), (1, 9.0)]) == pytest.approx(math.sqrt((2 * 1 + 4 * 4) / 6))


# --- paired comparisons on small hand-made inputs ---------------------------------------------


def test_defect1_headline_delta_is_the_mean_of_paired_differences():
    base = {1: 60.0, 2: 61.0, 3: 66.0, 4: 60.5, 5: 61.5}
    variant = {1: 60.8, 2: 61.7, 4: 61.2, 5: 62.3}  # seed 3 failed
    r = compare_all(base, {"v": variant})["v"]
    assert r.n == 4 and r.diff_mean == pytest.approx(0.75)  # not -0.30, the difference of the means
    assert (r.ci_low, r.ci_high) == (pytest.approx(0.658, abs=1e-3), pytest.approx(0.842, abs=1e-3))
    assert r.verdict == "better"


def test_defect3_an_untestable_variant_stays_in_the_holm_family():
    base = {s: 60.0 + s for s in range(6)}
    b = {s: base[s] + x for s, x in enumerate([0.9, 0.3, 0.6, 0.1, 0.8, 0.3])}
    c = {s: base[s] + x for s, x in enumerate([0.7, 0.2, 0.9, 0.05, 0.5, 0.2])}
    out = compare_all(base, {"A": {0: 61.0}, "B": b, "C": c})  # A has only seed 0
    # one family of the 3 differences and 3 equivalences: A's untested two count with p = 1
    tost = [out[v].tost_t_p for v in "ABC"]
    assert out["C"].t_holm == pytest.approx(stats.paired_holm([1.0, out["B"].t_p, out["C"].t_p], tost, 0.05)[0][2])
    assert out["C"].t_holm == pytest.approx(3 * out["C"].t_p)  # B's p is smaller: C's step still has 3 comparisons left
    without_a = stats.paired_holm([out["B"].t_p, out["C"].t_p], tost[1:], 0.05)[0][1]  # without A: C's Holm p is lower
    assert out["C"].t_holm > without_a
    assert out["C"].verdict == "inconclusive" and out["A"].verdict == "inconclusive"
    assert out["A"].t_holm == 1.0


def test_defect4_equal_counts_give_equal_differences_and_an_exact_test():
    images = 10_000
    base = {s: (k, images) for s, k in enumerate((5000, 5002, 5000, 5002, 6398, 6404))}
    variant = {s: (k + 3, n) for s, (k, n) in base.items()}  # +3 correct images on every seed
    d = stats.count_differences(base, variant)
    assert set(d.values()) == {0.03}  # one value, not 0.02999999999999403 and 0.030000000000001137
    # subtracting float accuracies gives four values
    floats = {100.0 * (k + 3) / images - 100.0 * k / images for k, _ in base.values()}
    assert floats == {0.030000000000001137, 0.02999999999999403, 0.030000000000008242, 0.029999999999986926}
    r = stats.family({"v": stats.differences(d)})["v"]
    assert r.sd == 0 and math.isnan(r.t_p) and math.isnan(r.hedges_g)  # no d_z = 7e12
    assert r.perm_p == pytest.approx(2 / 64) and r.decided_by.startswith("sign-flip permutation test (t-test undefined")
    assert r.verdict == "better"
    same = stats.family({"v": stats.differences(stats.count_differences(base, base))})["v"]
    assert same.perm_p == 1.0 and same.verdict == "equivalent"  # 0 on all 6 seeds: TOST p = 1/64 at ±0.5


def test_defect5_identical_seeds_are_inconclusive_not_proof():
    base = {s: 60.0 for s in range(4)}
    r = compare_all(base, {"v": dict(base)})["v"]
    assert r.verdict == "inconclusive"  # 4 seeds: the exact TOST cannot go below 1/16
    assert r.tost_perm_p == pytest.approx(1 / 16)


def test_defect6_seeds_needed_is_at_the_holm_level():
    sd = 0.8
    at_05, at_holm = sample_size.seeds_needed(sd, 1.0, 0.05), sample_size.seeds_needed(sd, 1.0, 0.05 / 12)
    assert at_holm > at_05
    assert sample_size.power(1.0, sd, at_05, 0.05 / 12) < 0.8 <= sample_size.power(1.0, sd, at_holm, 0.05 / 12)


def test_defect7_the_exact_test_does_not_depend_on_scipy():
    d = np.array([0, 1, 2, 2, -1, 3], dtype=float)
    # 64 sign patterns of the five non-zero values (the zero doubles each): |sum| >= 7 for 12 of them
    assert signflip.signflip_p(d) == pytest.approx(12 / 64)
    assert not hasattr(stats.Paired, "wilcoxon_p")


def test_equivalence_is_claimed_within_the_margin():
    base = {s: 60.0 + s for s in range(8)}
    tiny = {s: v + (0.05 if s % 2 else -0.04) for s, v in base.items()}
    r = compare_all(base, {"v": tiny}, stats.Analysis(margin=0.5))["v"]
    assert r.verdict == "equivalent" and r.tost_holm < 0.05
    wide = compare_all(base, {"v": tiny}, stats.Analysis(margin=0.01))["v"]
    assert wide.verdict == "inconclusive"


def test_the_permutation_test_can_decide_and_disagreement_is_said():
    base = {s: 60.0 for s in range(4)}
    variant = {s: 61.0 + 0.1 * s for s in range(4)}
    t = compare_all(base, {"v": variant}, stats.Analysis(test="t"))["v"]
    perm = compare_all(base, {"v": variant}, stats.Analysis(test="permutation"))["v"]
    assert t.verdict == "better" and perm.verdict == "inconclusive"  # 4 pairs: the exact test cannot reach 0.05
    assert "disagree" in t.disagreement and perm.decided_by == "sign-flip permutation test"


def test_simultaneous_intervals_are_bonferroni_and_contain_the_unadjusted():
    base = {s: 60.0 + s for s in range(6)}
    vs = {
        name: {s: base[s] + shift + 0.3 * ((s * k) % 3) for s in base}
        for k, (name, shift) in enumerate((("a", 1.0), ("b", 0.2), ("c", -0.5)))
    }
    out = compare_all(base, vs)
    # a moved every seed by exactly +1: no spread, so the sign-flip test decides and gives the interval; with 6 pairs its
    # smallest p (2/64) is above α/3, so it can exclude nothing (no [1.00, 1.00] beside an inconclusive verdict)
    assert (
        out["a"].sd == 0
        and out["a"].interval == "sign-flip"
        and (out["a"].sim_low, out["a"].sim_high) == (-math.inf, math.inf)
    )
    for r in (out["b"], out["c"]):
        half = sps.t.ppf(1 - 0.05 / 6, 5) * r.sd / math.sqrt(6)
        assert (r.sim_low, r.sim_high) == (pytest.approx(r.diff_mean - half), pytest.approx(r.diff_mean + half))
        assert r.sim_low <= r.ci_low and r.sim_high >= r.ci_high


def test_the_seeds_images_interval_counts_each_part_once_and_falls_back_to_the_seed_interval():
    """The crossed interval's variance is (MS seeds + MS images − MS residual)/(nN) where both
    factors' mean squares exceed the residual's, recomputed here from the two-way ANOVA of the score
    table by the textbook sums; with images that add nothing it is the paired t interval of the seeds."""
    rng = np.random.default_rng(0)
    rows = []
    flip = rng.random(2000) < 0.05  # the images the variant treats differently, the same on every seed
    for _ in range(6):
        base = rng.random(2000) < 0.6
        variant = base.copy()
        variant[flip] = rng.random(flip.sum()) < 0.75  # a little better there
        rows.append(crossed.scores(base, variant))
    c = crossed.interval(rows)
    d = np.stack(rows).astype(float)
    n, images = d.shape
    seeds, cols = d.mean(1), d.mean(0)
    ms = (
        images * ((seeds - d.mean()) ** 2).sum() / (n - 1),
        n * ((cols - d.mean()) ** 2).sum() / (images - 1),
        ((d - seeds[:, None] - cols[None, :] + d.mean()) ** 2).sum() / ((n - 1) * (images - 1)),
    )
    assert ms[0] > ms[2] and ms[1] > ms[2]  # both the seeds and the images add a part here
    assert c.se == pytest.approx(100 * math.sqrt((ms[0] + ms[1] - ms[2]) / (n * images)), rel=1e-9)
    observed = [100 * float(r.mean()) for r in rows]
    seeds_only = stats.differences(dict(enumerate(observed)))
    assert c.low < np.mean(observed) < c.high and c.high - c.low >= seeds_only.ci_high - seeds_only.ci_low - 1e-9
    # never narrower than the seeds' own interval; never zero-width while the scores differ
    alike = crossed.interval([np.array(r, np.int8) for r in ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0])])
    assert alike.se > 0 and alike.low < 25.0 < alike.high
    # seeds that win 1, 3 and 5 images, each on images of its own: the images add nothing beyond the seeds
    flat = [
        np.isin(np.arange(100), np.arange(start, start + k)).astype(np.int8) for start, k in ((0, 1), (1, 3), (4, 5))
    ]
    t = stats.differences(dict(enumerate(100 * np.array([1, 3, 5]) / 100)))
    f = crossed.interval(flat)
    assert (f.low, f.high) == (pytest.approx(t.ci_low), pytest.approx(t.ci_high)) and f.df == 2  # [−1.97, 7.97]
    with pytest.raises(ValueError, match="differ in length"):
        crossed.scores(np.ones(3, bool), np.ones(4, bool))
    assert crossed.interval(rows[:1]) == crossed.NONE


def _truth(rng, tau: float, spread: float, draws: int = 2_000_000) -> float:
    """The population mean paired difference of the simulation below (new seeds, new images)."""
    theta, delta = rng.normal(0.5, 2.0, draws), rng.normal(0.3, spread, draws)
    return float(np.mean(expit(theta + delta + rng.normal(0, tau, draws)) - expit(theta + rng.normal(0, tau, draws))))


def test_the_seeds_images_interval_covers_about_95_percent_at_3_5_and_10_seeds():
    """Simulated studies of n seeds × 1,000 images: image i has a logit θᵢ ~ N(0.5, 2) for the
    baseline and θᵢ + δᵢ for the variant (δᵢ ~ N(0.3, s)), each run a seed shift ~ N(0, τ) on the
    logit, each (run, image) a coin flip; the truth is the population mean difference (2·10⁶ draws).
    Three worlds: seeds dominate (τ 0.3, s 0.5), images dominate (τ 0.05, s 1), both small (τ 0.5, s
    0.2). 1,000 studies each: measured 93.5–96.2% at 5 and 10 seeds and 94.8–97.9% at 3 (never
    narrower than the seeds' own t interval, which at 3 seeds is the wider one where the images
    dominate); a crossed bootstrap of the same studies covers 98–100%."""
    rng = np.random.default_rng(39)
    got = {}
    for tau, spread in ((0.3, 0.5), (0.05, 1.0), (0.5, 0.2)):
        truth = _truth(rng, tau, spread)
        for n in (3, 5, 10):
            hits = 0
            for _ in range(1000):
                theta, delta = rng.normal(0.5, 2.0, 1000), rng.normal(0.3, spread, 1000)
                base = rng.random((n, 1000)) < expit(theta + rng.normal(0, tau, (n, 1)))
                variant = rng.random((n, 1000)) < expit(theta + delta + rng.normal(0, tau, (n, 1)))
                c = crossed.interval([crossed.scores(b, v) for b, v in zip(base, variant)])
                hits += c.low <= 100 * truth <= c.high
            got[(tau, spread, n)] = hits / 1000
    print("coverage of the seeds × images interval:", got)
    se = math.sqrt(0.05 * 0.95 / 1000)
    for (_, _, n), rate in got.items():
        assert 0.93 - 2 * se <= rate <= (0.98 if n == 3 else 0.97) + 2 * se, got


def test_a_holm_rejection_whose_simultaneous_interval_touches_zero_is_said():
    base = {s: 60.0 for s in range(6)}
    # A: +0.25 on every seed but a little: its difference and its equivalence are both shown, first in Holm's order
    a = {s: 60 + x for s, x in enumerate([0.25, 0.26, 0.24, 0.25, 0.26, 0.24])}
    # raw p 0.033: with A's two tests done only C's comparison is left, so its step is at α = 0.05, above α/m = 0.025
    c = {s: 60.3 + x for s, x in enumerate([0.5, 0.1, 0.9, -0.6, 0.6, 0.4])}
    out = compare_all(base, {"A": a, "C": c})["C"]
    assert out.verdict == "better" and out.sim_low < 0 < out.sim_high
    assert "simultaneous interval still touches zero" in out.disagreement


def test_skewness_is_scipys_adjusted_g1():
    """stats.skewness replaces scipy.stats.skew(bias=False) in the shape warning (for speed): the
    same number to the last bits or so, on 2,000 skewed, scaled samples of 5 to 40 values."""
    rng = np.random.default_rng(0)
    for _ in range(2000):
        d = rng.lognormal(size=int(rng.integers(5, 41))) * rng.choice([1e-3, 1.0, 100.0])
        assert stats.skewness(d) == pytest.approx(float(sps.skew(d, bias=False)), rel=1e-12, abs=1e-12)


def test_count_differences_of_an_empty_test_set_is_one_line_not_a_zero_division():
    with pytest.raises(
        ValueError, match=r"^seed 1: a test set of 0 images gives no accuracy; expected at least one image$"
    ):
        stats.count_differences({1: (0, 0)}, {1: (0, 0)})


@pytest.mark.slow
def test_one_error_budget_holds_any_false_verdict_to_alpha_and_equivalence_prints_its_own_interval():
    """Two variants at Δ = 0 and Δ = +margin (0.5), 12 seeds, normal differences of sd 0.5, 20,000
    simulated studies. With a Holm family for the differences and another for the equivalences, some
    verdict is false in 8.05% ± 0.35%; as one family (stats.paired_holm) in 4.6% ± 0.15% (at most
    α). Every equivalent verdict's printed interval (1 − 2·its Holm level) lies inside ±margin (the
    95% one reaches past it in 17 of 15,548 here;
    `test_an_equivalent_verdict_prints_the_interval_that_decided_it` has one such case)."""
    rng = np.random.default_rng(39)
    analysis = stats.Analysis(margin=0.5)
    studies, false, equivalent, past = 20_000, 0, 0, 0
    base = {s: 0.0 for s in range(12)}
    for _ in range(studies):
        zero = dict(enumerate(map(float, rng.normal(0.0, 0.5, 12))))
        edge = dict(enumerate(map(float, rng.normal(0.5, 0.5, 12))))
        out = compare_all(base, {"zero": zero, "edge": edge}, analysis)
        false += out["zero"].verdict in ("better", "worse") or out["edge"].verdict == "equivalent"
        for r in out.values():
            if r.verdict == "equivalent":
                equivalent += 1
                assert -0.5 <= r.eq_low <= r.eq_high <= 0.5, r
                past += r.ci_low < -0.5 or r.ci_high > 0.5
    rate, se = false / studies, math.sqrt(0.05 * 0.95 / studies)
    print(
        f"any false verdict {rate:.4f} ± {se:.4f}; 95% CI past the margin in {past} of {equivalent} equivalent verdicts"
    )
    assert rate <= 0.05 + 2 * se, rate


def test_an_equivalent_verdict_prints_the_interval_that_decided_it(tmp_path):
    """6 seeds whose 95% interval is [−0.52, +0.52] are equivalent within ±0.50 (TOST p 0.028 < 0.05
    as the only comparison): the answer prints the 90% interval that decided it, inside the margin,
    not the 95% one past it."""
    from harness.report import answer
    from harness.report.comparisons import Comparison

    sd = 0.52 / (sps.t.ppf(0.975, 5) / math.sqrt(6))
    d = dict(
        enumerate(np.array([-1.0, 1.0, -0.5, 0.5, -1.5, 1.5]) * sd / np.std([-1, 1, -0.5, 0.5, -1.5, 1.5], ddof=1))
    )
    r = stats.family({"v": stats.differences(d)})["v"]
    assert r.verdict == "equivalent" and r.ci_high == pytest.approx(0.52) and r.eq_confidence == pytest.approx(0.9)
    assert r.eq_high == pytest.approx(sps.t.ppf(0.95, 5) * sd / math.sqrt(6)) and r.eq_high < 0.5
    said = answer.line("v", Comparison("v", r), stats.Analysis())
    assert "90% equivalence interval](#g-tost) [-0.41, 0.41]" in said and "0.52" not in said, said


def test_a_verdict_the_sign_flip_test_cannot_reach_says_it_rests_on_normality():
    """{1.0, 1.01, 1.02} is better by the t-test (p 3e-5) while no sign pattern of 3 pairs gives a p
    below 0.25; the answer says the verdict rests on normality alone and how many pairs a
    distribution-free test needs. Six pairs need no such words."""
    from harness.report import answer
    from harness.report.comparisons import Comparison

    three = stats.family({"v": stats.differences({1: 1.0, 2: 1.01, 3: 1.02})})["v"]
    assert three.verdict == "better" and three.t_p < 1e-4 and three.perm_min_p == 0.25
    said = answer.line("v", Comparison("v", three), stats.Analysis())
    assert (
        "on the t-test's normality alone: with 3 non-zero differences the sign-flip test cannot go below 0.250" in said
    )
    assert "above the level 0.05 it was tested at (6 can reach it)" in said
    six = stats.family({"v": stats.differences({s: 1.0 + 0.01 * s for s in range(6)})})["v"]
    assert six.verdict == "better" and "normality alone" not in answer.line("v", Comparison("v", six), stats.Analysis())
    # the Holm level, not α (4 variants × 6 pairs: 2/64 > 0.05/4), and zeros do not count
    four = stats.family({f"v{i}": stats.differences({s: 1.0 + 0.01 * s + i for s in range(6)}) for i in range(4)})
    assert all(t.verdict == "better" for t in four.values())
    assert "with 6 non-zero differences" in answer.line("v0", Comparison("v0", four["v0"]), stats.Analysis())
    zeros = stats.family({"v": stats.differences(dict(enumerate([0, 0, 1.0, 1.01, 1.02, 1.03, 1.04])))})["v"]
    assert "with 5 non-zero differences" in answer.line("v", Comparison("v", zeros), stats.Analysis())
    # equivalence at 5 pairs: each one-sided sign-flip test can reach 1/32 < 0.05, so nothing to say
    eq = stats.family({"v": stats.differences(dict(enumerate([0.02, -0.03, 0.01, 0.04, -0.01])))})["v"]
    assert eq.verdict == "equivalent" and "normality alone" not in answer.line(
        "v", Comparison("v", eq), stats.Analysis()
    )


def test_the_sign_flip_equivalence_interval_decides_as_the_sign_flip_tost_on_both_paths():
    """On the Monte-Carlo path (more than 20 pairs) a two-sided sign-flip interval at 2·level and
    the TOST's one-sided counts can disagree near the margin (54 of 90,000 cases).
    signflip.equivalence_bounds inverts each one-sided test over the very patterns tost_p counts, so
    the margin lies outside the printed interval exactly when the TOST rejects; checked on 240
    random samples, exact and Monte-Carlo, rounded so that ties occur, at 3 margins."""
    rng = np.random.default_rng(11)
    for trial in range(240):
        n = int(rng.integers(5, 21)) if trial % 4 else int(rng.integers(21, 26))
        d = rng.normal(rng.normal(0, 0.1), 0.3, n).round(int(rng.integers(1, 4)))
        level = float(rng.choice([0.05, 0.025, 0.0125]))
        low, high = signflip.equivalence_bounds(d, level)
        eps = 1e-9 * max(1.0, float(np.abs(d).sum()))
        for margin in (0.2, 0.3, 0.5):
            rejected = signflip.tost_p(d, margin) <= level
            assert rejected == (low > -margin + eps and high < margin - eps), (n, level, margin, low, high)
    r = stats.family(
        {"v": stats.differences(dict(enumerate(rng.normal(0, 0.1, 24))), stats.Analysis(test="permutation"))},
        stats.Analysis(test="permutation"),
    )["v"]
    assert r.verdict == "equivalent" and -0.5 < r.eq_low <= r.eq_high < 0.5


def test_the_shape_diagnostic_warns_on_skewed_differences_and_rarely_on_normal_ones():
    """With fixed limits (G1 beyond twice its standard error, modified z 3.5) the warning would fire
    on 20% of normal samples at 5 pairs; with limits calibrated per pair count (stats.shape_limits,
    each rule at 2.5% of normal samples) it fires on about 4% at 5 to 100 pairs (4,000 fresh normal
    samples each, not the calibration's; large-sample limits would fire on 7–9% at 61 to 200 pairs),
    and at 12 pairs on about 57% of lognormal and 38% of Exp(1) − 1 samples."""
    rng = np.random.default_rng(7)
    normal = {
        n: np.mean([bool(stats.shape(rng.standard_normal(n))) for _ in range(4000)]) for n in (5, 6, 8, 12, 20, 100)
    }
    print("\nshape warning on normal samples by pairs, 4000 each (seed 7):", normal)
    assert all(rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 4000) for rate in normal.values()), normal
    n, studies = 12, 2000
    warned = {
        name: np.mean([bool(stats.shape(sim.DRAWS[name](rng, n))) for _ in range(studies)])
        for name in ("normal", "t, 3 df", "Exp(1) − 1", "lognormal")
    }
    print("\nshape warning at 12 pairs, 2000 draws (seed 7): " + ", ".join(f"{k} {v:.3f}" for k, v in warned.items()))
    assert warned["normal"] < 0.07 and warned["lognormal"] > 0.5 and warned["Exp(1) − 1"] > 0.3
    d = {s: x for s, x in enumerate([0.1, -0.2, 0.0, 0.3, -0.1, 0.2, -0.3, 0.1, 0.0, -0.2, 0.2, 9.0])}
    r = compare_all({s: 60.0 for s in d}, {"v": {s: 60 + x for s, x in d.items()}})["v"]
    assert r.shape.startswith("skewed differences (skewness G1 +3.")


def test_two_seeds_never_give_a_verdict_and_no_seeds_needed():
    r = compare_all({1: 70.0, 2: 71.0}, {"v": {1: 71.0, 2: 72.01}})["v"]
    assert r.t_p < 0.01 and r.perm_p == 0.5  # t p 0.0032
    assert r.verdict == "inconclusive" and "fewer than 3 pairs: no verdict" in r.decided_by
    from harness.report import comparisons

    assert comparisons.seeds_for(r, stats.Analysis(), 0.05) == (0, "difference")
    eq = compare_all({1: 70.0, 2: 71.0}, {"v": {1: 70.0, 2: 71.0}})["v"]
    assert eq.verdict == "inconclusive"


def test_the_seeds_images_interval_does_not_average_the_shared_test_set_over_the_seeds():
    """Eight seeds with the same per-image scores: the test set's noise cannot average out over
    them (each seed sees the same images), so the standard error is one seed's image-level one."""
    rng = np.random.default_rng(4)
    one = (rng.random(500) < 0.1).astype(np.int8) - (rng.random(500) < 0.08).astype(np.int8)
    c = crossed.interval([one] * 8)
    single = 100 * one.astype(float).std(ddof=1) / math.sqrt(len(one))  # the image-level se of one seed's difference
    assert c.se == pytest.approx(single)  # nesting images within seeds would give single / √8


def test_the_seed_win_rate_is_named_and_has_an_exact_interval():
    d = [-0.4, 0.3, -0.2, -0.1, -0.6, 0.5]
    r = stats.differences(dict(enumerate(d)))
    assert (r.wins, r.n, r.ties) == (2, 6, 0)
    assert stats.win_interval(6, 6) == (pytest.approx(0.025 ** (1 / 6)), 1.0)  # [0.54, 1], not [1.00, 1.00]
    assert round(stats.win_interval(6, 6)[0], 2) == 0.54
    low, high = stats.win_interval(2, 6)
    assert (low, high) == (pytest.approx(sps.beta.ppf(0.025, 2, 5)), pytest.approx(sps.beta.ppf(0.975, 3, 4)))


def test_a_simultaneous_interval_that_excludes_zero_comes_with_better_or_worse():
    base = {s: 60.0 for s in range(6)}
    six = {s: 66.8 + 0.1 * (s % 3) for s in range(6)}
    perm = compare_all(base, {"a": six, "b": dict(six), "c": dict(six)}, stats.Analysis(test="permutation"))["a"]
    assert perm.verdict == "inconclusive" and (perm.sim_low, perm.sim_high) == (-math.inf, math.inf)  # not [6.31, 7.26]
    flat = compare_all({s: 60.0 for s in THREE}, {"v": {s: 60.03 for s in THREE}})["v"]
    assert flat.verdict == "inconclusive" and flat.sim_low == -math.inf  # not [0.03, 0.03]
    rng = np.random.default_rng(9)
    checked = {"t": 0, "permutation": 0}
    for _ in range(300):
        # one effect a variant (up to a few sd), 3 to 9 seeds: often enough an interval clear of zero, by either route
        n, m, test = int(rng.integers(3, 10)), int(rng.integers(1, 4)), ("t", "permutation")[int(rng.integers(0, 2))]
        effects = rng.normal(0, 1.5, m)
        variants = {
            f"v{i}": {s: 60 + float(np.round(rng.normal(effects[i], 1), 1)) for s in range(n)} for i in range(m)
        }
        for r in compare_all({s: 60.0 for s in range(n)}, variants, stats.Analysis(test=test)).values():
            if r.sim_low > 0 or r.sim_high < 0:
                assert r.verdict in ("better", "worse"), (r, test)
                checked[test] += 1
    # the branch that checks is taken, by both routes, often enough to mean something
    assert min(checked.values()) >= 20, checked  # 300 draws (seed 9): well over 20 each


def test_nan_and_inf_are_refused():
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="seed 2 is"):
            stats.differences({1: 0.5, 2: bad, 3: 0.1})
        with pytest.raises(ValueError, match="seed 2 is"):
            looks({"v": {100: 0.5, 2: bad, 101: 0.1}})


def test_float_accuracies_three_images_apart_have_no_spread():
    images = 10_000
    base = {s: 100.0 * k / images for s, k in enumerate((5000, 5002, 5000, 5002, 6398, 6404))}
    variant = {s: 100.0 * (round(v * images / 100) + 3) / images for s, v in base.items()}
    r = compare_all(base, {"v": variant})["v"]
    assert r.sd == 0 and math.isnan(r.t_p) and math.isnan(r.hedges_g)  # not t p 2e-64 and g_z 3.4e12
    assert r.verdict == "better" and r.decided_by.startswith("sign-flip permutation test")


def test_the_sign_flip_floor_counts_the_zeros():
    r = stats.differences(dict(enumerate([0, 0.5, 0.6, 0.7, 0.4, 0.55])))
    assert r.perm_min_p == pytest.approx(0.0625) and r.perm_p == pytest.approx(0.0625)


def test_the_seeds_for_the_margin_are_tost_seeds_where_equivalence_is_the_question():
    from harness.report import comparisons

    sd, margin, level = 0.8, 0.5, 0.05 / 3
    rng = np.random.default_rng(2)
    d = rng.normal(0, 1, 8)
    d = 0.1 + (d - d.mean()) / d.std(ddof=1) * sd
    t = stats.family({"v": stats.differences(dict(enumerate(d)))})["v"]
    needed, question = comparisons.seeds_for(t, stats.Analysis(), level)
    assert question == "equivalence" and needed == sample_size.seeds_for_equivalence(sd, margin, level)
    assert (
        sample_size.tost_power(margin, sd, needed, level) >= 0.8 > sample_size.tost_power(margin, sd, needed - 1, level)
    )
    assert needed > sample_size.seeds_needed(sd, margin, level)  # the difference's seeds would promise too few


def test_planned_seeds_are_never_fewer_than_a_verdict_needs_and_the_floor_counts_zeros_beyond_twenty():
    from harness.analysis import signflip

    assert sample_size.seeds_needed(0.1, 10, 0.05) == 3  # not 2, which gives no verdict
    assert signflip.floor_p(np.r_[np.zeros(23), 1.0, 2.0]) == 0.5  # two non-zero values among 25
