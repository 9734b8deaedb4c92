"""Issue 20's audit, one test per item and from its inputs: no decision from zero spread, skew said
and simulated, a frozen sequential design, no verdict from two seeds, a crossed seeds × images interval
and a seed win rate, intervals that agree with verdicts, sequential and effects wording, boundaries
from 10^6 paths on independent paths, and refused inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis import crossed, effects, sample_size, sequential, spending, stats
from harness.analysis.sequential import Sequential
from harness.report import effects_section
from harness.settings.designs import Design
from tests import simulation as sim
from tests.conftest import fresh_store, harness, write_npz
from tests.simulation import compare_all

THREE = (100, 101, 102)


def project(tmp_path):
    """Synthetic data and an empty project folder with a fresh store: (data, work)."""
    data = write_npz(tmp_path / "d")
    work = tmp_path / "w"
    work.mkdir()
    fresh_store(work)
    return data, work


def walk(diffs, plan=Sequential(3, 12), analysis=stats.Analysis()):
    seeds = tuple(range(100, 100 + plan.max_seeds))
    tried = {(v, s) for v in ["baseline", *diffs] for s in seeds if any(s in d for d in diffs.values())}
    return sequential.walk(diffs, tried, "baseline", list(diffs), seeds, plan, analysis)


# --- 1. zero spread -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,values",
    [
        ("+1 image each", [100 / 297] * 3),
        ("exact zeros", [0.0] * 3),
        ("near-zero spread", [0.03, 0.03, 0.030000000001]),
        ("+2 points each", [2.0] * 3),
    ],
)
def test_a_look_without_spread_decides_nothing_in_round_one(name, values):
    w = walk({"v": dict(zip(THREE, values))})
    t = w.tracks["v"]
    assert t.verdict == sequential.OPEN and w.next == [("baseline", 103), ("v", 103)], name
    assert math.isnan(t.looks[0].t) and t.looks[0].low == -math.inf  # no t = ±inf, no [0.01, 0.01]
    fixed = compare_all({s: 60.0 for s in THREE}, {"v": {s: 60.0 + x for s, x in zip(THREE, values)}})["v"]
    assert fixed.verdict == "inconclusive" and fixed.sd == 0 and math.isnan(fixed.t_p)  # the fixed path agrees


def test_counts_identical_to_the_baseline_are_decided_only_when_the_sign_flip_test_can():
    counts = {s: (200, 297) for s in range(100, 112)}
    w = sequential.decide(
        {"baseline": counts, "same": dict(counts)},
        {(v, s) for v in ("baseline", "same") for s in counts},
        "baseline",
        ["same"],
        tuple(counts),
        Sequential(3, 12),
    )
    t = w.tracks["same"]
    assert t.verdict == "equivalent" and t.decided_in > 1 and t.by.startswith("sign-flip TOST p ")
    lk = next(lk for lk in t.looks if math.isfinite(lk.eq_low))
    assert 2.0**-lk.n <= sequential.p_value(
        sequential.boundaries(tuple(range(3, 13)), tuple(n / 12 for n in range(3, 13)), 0.05, False)[lk.n - 3],
        lk.n,
        False,
    )


def test_on_a_297_image_test_set_zero_spread_no_longer_doubles_the_false_verdicts():
    """Issue 20: paired sd 2 images, 3 variants, no effect: 9.1% false better/worse with zero-spread decisions."""
    studies = 600
    rate = sim.false_rate(sim.sequential_studies(20, studies, 3, "297 images, sd 2 images", Sequential(3, 12)))
    print(
        f"\n297 images, sd 2 images, 3 variants, 3–12 seeds, {studies} studies (seed 20): false better/worse {rate:.4f}"
    )
    assert rate <= sim.ALPHA + 2 * sim.error(rate, studies)


@pytest.mark.slow
def test_run_seeds_auto_on_a_variant_identical_to_the_baseline_does_not_decide_in_round_one(tmp_path):
    data, work = project(tmp_path)
    proc = harness(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "auto",
        "--max-seeds",
        "4",
        "--epochs",
        "1",
        "--set",
        "params.dropout.p=0",
        "--set",
        "train.threads=1",
        cwd=work,
        data=data,
    )
    assert proc.returncode == 0, proc.stderr
    rounds = [line for line in proc.stdout.splitlines() if line.startswith("round ")]
    assert rounds[0].startswith("round 1 (seeds 2021–2023): dropout open (Δ +0.00 (−∞, +∞)"), rounds
    assert "inf ≥" not in proc.stdout and "dropout inconclusive (budget of 4 seeds spent)" in rounds[-1]


# --- 2. skew -------------------------------------------------------------------------------------


def test_the_shape_diagnostic_warns_on_skewed_differences_and_rarely_on_normal_ones():
    """Issue 39, item 10: with fixed limits (G1 beyond twice its standard error, modified z 3.5) the
    warning fired on 20% of normal samples at 5 pairs; with limits calibrated per pair count
    (stats.shape_limits, each rule at 2.5% of normal samples) it fires on about 4% at 5 to 100 pairs
    (4,000 fresh normal samples each, not the calibration's; large-sample limits fired on 7–9% at 61
    to 200 pairs), and at 12 pairs on about 57% of lognormal and 38% of Exp(1) − 1 samples."""
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


@pytest.mark.slow
def test_the_simulated_false_verdict_rates_under_normal_heavy_tailed_and_skewed_differences():
    """The table of docs/seeds-on-demand.md and docs/statistics.md: no true effect, 3–12 seeds, α = 5%."""
    plan, studies = Sequential(3, 12), 1000
    rows, warned, late, late_share = [], {}, {}, {}
    for i, draw in enumerate(sim.DRAWS):
        for m in (1, 3):
            for test in ("t", "permutation"):
                walks = sim.sequential_studies(100 + i, studies, m, draw, plan, test)
                rate = sim.false_rate(walks)
                false = [t for w in walks for t in w.tracks.values() if t.verdict in ("better", "worse")]
                warned[(draw, m, test)] = sum(bool(t.shape) for t in false) / max(1, len(false))
                late[(draw, m, test)] = [t for t in false if t.looks[-1].n >= 5]  # decided at 5 or more pairs
                late_share[(draw, m, test)] = len(late[(draw, m, test)]) / max(1, len(false))
                rows.append((draw, m, test, rate))
    fixed = {
        (draw, test): sim.fixed_false_rate(200 + i, 4000, draw, 12, test)
        for i, draw in enumerate(sim.DRAWS)
        for test in ("t", "permutation")
    }
    print(f"\nno true effect, 3–12 seeds, {studies} studies a row (seeds 100–104), α = 0.05:")
    for draw, m, test, rate in rows:
        print(
            f"| {draw} | {m} | {test} | {100 * rate:.1f}% ± {100 * math.sqrt(rate * (1 - rate) / studies):.1f}% | "
            f"{100 * warned[(draw, m, test)]:.0f}% |"
        )
    lognormal, share = late[("lognormal", 1, "t")], late_share[("lognormal", 1, "t")]
    print(
        f"lognormal, 1 variant, t: {share:.0%} of the false verdicts decided at 5 or more pairs, "
        f"{sum(bool(t.shape) for t in lognormal) / max(1, len(lognormal)):.0%} of those warned"
    )
    print(
        "fixed 12 seeds, 1 variant, 4000 studies (seeds 200–204): "
        + ", ".join(f"{d} {t} {100 * r:.1f}%" for (d, t), r in fixed.items())
    )
    by = {(d, m, t): r for d, m, t, r in rows}
    for draw in ("normal", "t, 3 df", "297 images, sd 2 images"):  # the rule keeps α where its assumptions (about) hold
        for m in (1, 3):
            assert by[(draw, m, "t")] <= sim.ALPHA + 2 * sim.error(by[(draw, m, "t")], studies)
    assert by[("lognormal", 1, "t")] > 0.1  # and under skew it does not: the docs say so, the report warns
    # on a part of its false verdicts, though most are decided at 5 or more pairs (issue 39, item 6)
    assert warned[("lognormal", 1, "t")] > 0.15 and late_share[("lognormal", 1, "t")] > 0.8


@pytest.mark.slow
def test_the_headline_false_verdict_rates_come_from_20000_studies():
    """Issue 39, item 6: the rates the README and docs/seeds-on-demand.md quote for normal
    differences (no true effect, 1 variant, 3–12 seeds on demand, α = 5%) from 20,000 simulated
    studies each, where 1,000-study rows had said 3.5% and 2.8%: measured 4.87% ± 0.15% by the
    t route and 4.33% ± 0.14% by the permutation route (seed 300)."""
    plan, studies = Sequential(3, 12), 20_000
    rates = {
        test: sim.false_rate(sim.sequential_studies(300, studies, 1, "normal", plan, test))
        for test in ("t", "permutation")
    }
    print(
        f"\nnormal, 1 variant, 3–12 seeds, {studies} studies (seed 300): "
        + ", ".join(f"{k} {100 * r:.2f}% ± {100 * math.sqrt(r * (1 - r) / studies):.2f}%" for k, r in rates.items())
    )
    for rate in rates.values():
        assert rate <= sim.ALPHA + 2 * math.sqrt(sim.ALPHA * (1 - sim.ALPHA) / studies), rates
    assert rates["t"] > 0.04  # the rule spends most of its α, not 3.5% of it


# --- 3. a frozen sequential design -----------------------------------------------------------------


@pytest.mark.slow
def test_a_rerun_that_changes_a_stored_sequential_setting_exits_2_and_names_it(tmp_path):
    data, work = project(tmp_path)
    args = ["run", "--variants", "baseline,dropout", "--seeds", "auto", "--epochs", "1", "--set", "train.threads=1"]
    first = harness(*args, "--max-seeds", "3", cwd=work, data=data)
    assert first.returncode == 0, first.stderr
    more = harness(*args, "--max-seeds", "5", cwd=work, data=data)
    assert more.returncode == 2 and more.stderr.strip().splitlines()[-1].startswith(
        "error: max_seeds: 5 differs from the seeds-on-demand design experiment 'default' started with (max_seeds = 3)"
    )
    margin = harness(*args, "--max-seeds", "3", "--margin", "1.0", cwd=work, data=data)
    assert (
        margin.returncode == 2
        and "analysis.margin: 1.0 differs" in margin.stderr
        and "(analysis.margin = 0.5)" in margin.stderr
    )
    same = harness(*args, "--max-seeds", "3", cwd=work, data=data)
    assert same.returncode == 0, same.stderr
    allowed = harness(*args, "--max-seeds", "4", "--redesign", cwd=work, data=data)
    assert allowed.returncode == 0, allowed.stderr
    report = (work / "reports" / "default" / "report.md").read_text()
    assert "**The design was changed after it started** (`--redesign`): max_seeds 3 → 4." in report
    # fixed seeds on the same experiment once reused its pairs outside the rule: 5.07% false verdicts became 6.83%
    fixed_args = ["run", "--variants", "baseline,dropout", "--seeds", "4", "--epochs", "1", "--set", "train.threads=1"]
    fixed = harness(*fixed_args, cwd=work, data=data)
    assert fixed.returncode == 2 and fixed.stderr.strip().splitlines()[-1].startswith(
        "error: seeds: experiment 'default' was started with seeds on demand (3 to 4 seeds, first seed 2021); "
        "fixed seeds (2021,2022,2023,2024) would reuse its pairs outside the rule"
    )
    disclosed = harness(*fixed_args, "--redesign", cwd=work, data=data)
    assert disclosed.returncode == 0, disclosed.stderr
    report = (work / "reports" / "default" / "report.md").read_text()
    assert "its last `run --redesign` analysed it with fixed seeds (2021,2022,2023,2024)" in report


# --- 4. two seeds --------------------------------------------------------------------------------


def test_two_seeds_never_give_a_verdict_and_no_seeds_needed():
    r = compare_all({1: 70.0, 2: 71.0}, {"v": {1: 71.0, 2: 72.01}})["v"]
    assert r.t_p < 0.01 and r.perm_p == 0.5  # the input: t p 0.0032
    assert r.verdict == "inconclusive" and "fewer than 3 pairs: no verdict" in r.decided_by
    from harness.report import comparisons

    assert comparisons.seeds_for(r, stats.Analysis(), 0.05) == (0, "difference")
    eq = compare_all({1: 70.0, 2: 71.0}, {"v": {1: 70.0, 2: 71.0}})["v"]
    assert eq.verdict == "inconclusive"


# --- 5. the seeds × images interval and the seed win rate -------------------------------------------------------------


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


# --- 6. intervals agree with verdicts ------------------------------------------------------------------


def test_a_simultaneous_interval_that_excludes_zero_comes_with_better_or_worse():
    base = {s: 60.0 for s in range(6)}
    six = {s: 66.8 + 0.1 * (s % 3) for s in range(6)}
    perm = compare_all(base, {"a": six, "b": dict(six), "c": dict(six)}, stats.Analysis(test="permutation"))["a"]
    assert perm.verdict == "inconclusive" and (perm.sim_low, perm.sim_high) == (-math.inf, math.inf)  # was [6.31, 7.26]
    flat = compare_all({s: 60.0 for s in THREE}, {"v": {s: 60.03 for s in THREE}})["v"]
    assert flat.verdict == "inconclusive" and flat.sim_low == -math.inf  # was [0.03, 0.03]
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


# --- 7. sequential wording ----------------------------------------------------------------------------


def test_the_sequential_intervals_carry_their_level_and_equivalence_shows_the_deciding_interval():
    rng = np.random.default_rng(11)
    diffs = {v: {s: float(x) for s, x in zip(range(100, 112), rng.normal(0, 0.2, 12))} for v in ("a", "b", "c")}
    w = walk(diffs)
    first = w.tracks["a"].looks[0]
    assert first.coverage == pytest.approx(1 - 0.05 / 2 / 3)  # rule 2: the difference family has α/2, Holm's m = 3
    assert "(repeated 99.2% CI)" in sequential.describe(w.rounds[0], w.tracks)
    decided = [t for t in w.tracks.values() if t.verdict == "equivalent"]
    assert decided
    for t in decided:
        lk = next(lk for lk in t.looks if math.isfinite(lk.eq_low))
        assert -0.5 < lk.eq_low <= lk.mean <= lk.eq_high < 0.5
        assert "TOST's" in sequential.interval_text(lk, "equivalent")
        # the statistic, not a fixed-sample p
        assert t.by.startswith("TOST t ") and " ≥ boundary " in t.by and " p " not in t.by


def test_the_last_boundary_is_stricter_than_the_fixed_test():
    ns = tuple(range(3, 13))
    c = sequential.boundaries(ns, tuple(n / 12 for n in ns), 0.05, True)[-1]
    nominal = sequential.p_value(c, 12, True)
    print(f"\nlast boundary of 3–12 seeds at α = 0.05: |t| ≥ {c:.3f}, nominal p {nominal:.4f}")
    assert 0.02 < nominal < 0.04


# --- 8. effects wording ---------------------------------------------------------------------------


def test_an_interaction_is_not_said_to_raise_accuracy_and_a_main_effect_comes_with_its_simple_effects(tmp_path):
    """a and b each cost 100 images alone and nothing together."""
    images = 10_000
    noise = {s: [0, 3, -2, 1, -1, 2][i] for i, s in enumerate(range(6))}
    counts = {
        "baseline": {s: (6000 + noise[s], images) for s in noise},
        "a": {s: (5900 - noise[s], images) for s in noise},
        "b": {s: (5900 + 2 * noise[s], images) for s in noise},
        "a+b": {s: (6000 - 2 * noise[s], images) for s in noise},
    }
    design = Design("factorial", ("a", "b"))
    lines = "\n".join(effects_section.section(design, counts, tmp_path))
    row = next(line for line in lines.splitlines() if line.startswith("| a × b |"))
    assert "effects do not add: each does more with the other" in row and "raises accuracy" not in row
    main = next(line for line in lines.splitlines() if line.startswith("| a | main |"))
    assert "depends on `b`: see the simple effects below" in main
    assert "| a × b | a without b | 6 | -1.01 |" in lines and "| a × b | a with b | 6 | +0.98 |" in lines
    simple = effects.simple_effects(
        design, {v: {s: k for s, (k, _) in c.items()} for v, c in counts.items()}, "a", "b", 100 / images
    )
    assert simple["b without a"][0] == pytest.approx(-1.0)


def test_an_interaction_is_equivalent_only_when_its_simple_effects_differ_by_less_than_the_margin(tmp_path):
    """Issue 39, item 4, the audit's case: a's simple effects are −0.27 without b and +0.27 with b
    (0.54 apart), so the interaction contrast is +0.27. At the margin 0.5 on the contrast it was
    "effects add (within the margin)"; on the simple-effect scale (the contrast's TOST at 0.25) it
    is not equivalent, and the simple effects are shown."""
    images = 10_000
    noise = dict(enumerate([0, 1, -1, 2, -2, 1, 0, -1, 1, 0, 1, -2]))  # sums to 0
    counts = {
        "baseline": {s: (6000 + noise[s], images) for s in noise},
        "a": {s: (5973 + noise[s], images) for s in noise},
        "b": {s: (6000 - noise[s], images) for s in noise},
        "a+b": {s: (6027 + noise[s], images) for s in noise},
    }
    design = Design("factorial", ("a", "b"))
    found = {e.name: e for e in effects.analyse(design, counts)}
    interaction = found["a × b"].test
    assert interaction.diff_mean == pytest.approx(0.27) and interaction.margin == 0.25
    assert interaction.verdict != "equivalent" and interaction.tost_holm > 0.05
    before = stats.differences(found["a × b"].per_seed, stats.Analysis(margin=0.5))  # the old scale's TOST
    assert before.tost_t_p < 1e-6
    lines = "\n".join(effects_section.section(design, counts, tmp_path))
    row = next(line for line in lines.splitlines() if line.startswith("| a × b |"))
    assert "effects add" not in row
    assert "| a × b | a without b | 12 | -0.27 |" in lines and "| a × b | a with b | 12 | +0.27 |" in lines
    assert "its contrast, half that difference, within ±0.25" in lines


# --- 9. boundaries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0.05, 0.05 / 3])
def test_the_boundaries_attain_their_level_on_a_million_independent_paths(level):
    ns = tuple(range(3, 13))
    fractions = tuple(n / 12 for n in ns)
    both, upper = sequential.boundaries(ns, fractions, level, True), sequential.boundaries(ns, fractions, level, False)
    rng = np.random.default_rng(424242)  # not the boundaries' seed
    crossed_two, crossed_one = np.zeros(1_000_000, bool), np.zeros(1_000_000, bool)
    total, squares = np.zeros(1_000_000), np.zeros(1_000_000)
    for i in range(12):
        x = rng.standard_normal(1_000_000)
        total, squares = total + x, squares + x * x
        n = i + 1
        if n < 3:
            continue
        t = total / n / np.sqrt((squares - total * total / n) / (n - 1) / n)
        crossed_two |= np.abs(t) >= both[n - 3]
        crossed_one |= t >= upper[n - 3]
    se = math.sqrt(2 * level * (1 - level) / 1_000_000)  # the boundaries' own Monte-Carlo error and this one's
    print(
        f"\nattained at {level:.4f}: two-sided {crossed_two.mean():.5f}, one-sided {crossed_one.mean():.5f} (±{se:.5f})"
    )
    assert abs(crossed_two.mean() - level) < 3.5 * se and abs(crossed_one.mean() - level) < 3.5 * se


def test_the_boundaries_are_cached_across_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    key = ((3, 4, 5), (0.5, 0.75, 1.0), 0.05, True)
    first = sequential.boundaries.__wrapped__(*key)
    assert (tmp_path / f"sequential-boundaries-v{spending.CACHE_VERSION}.json").exists()
    monkeypatch.setattr(spending, "_simulate", lambda *a: pytest.fail("simulated again"))
    assert sequential.boundaries.__wrapped__(*key) == first


# --- 10. inputs the report never produces -----------------------------------------------------------


def test_nan_and_inf_are_refused():
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="seed 2 is"):
            stats.differences({1: 0.5, 2: bad, 3: 0.1})
        with pytest.raises(ValueError, match="seed 2 is"):
            walk({"v": {100: 0.5, 2: bad, 101: 0.1}})


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


def test_the_frozen_design_covers_the_variants_and_designs_recorded_before_it_existed():
    """Adding a variant changes Holm's m, so past rounds: refused like a changed max_seeds; a design whose
    last run predates the frozen record is frozen from the seeds-on-demand and [analysis] tags it left."""
    from harness.settings import experiment_file
    from harness.tracking import experiment_tags

    def cfg(variants, max_seeds=6):
        return experiment_file.load_experiment(
            None, ["seeds='auto'", f"max_seeds={max_seeds}", f"variants={variants!r}"]
        )

    started = cfg(["baseline", "dropout"])
    tags = experiment_tags.freeze({}, started, [])
    assert experiment_tags.design_changes(tags, started) == []
    assert experiment_tags.design_changes(tags, cfg(["baseline", "dropout", "batchnorm"])) == [
        ("variants", "dropout", "batchnorm,dropout")
    ]
    legacy = {
        "harness.sequential": experiment_tags.sequential_tag(started),
        "harness.analysis": experiment_tags.analysis_tag(started.analysis),
    }
    assert experiment_tags.design_changes(legacy, cfg(["baseline", "dropout"], 12)) == [("max_seeds", 6, 12)]


def test_planned_seeds_are_never_fewer_than_a_verdict_needs_and_the_floor_counts_zeros_beyond_twenty():
    from harness.analysis import signflip

    assert sample_size.seeds_needed(0.1, 10, 0.05) == 3  # was 2, which gives no verdict
    assert signflip.floor_p(np.r_[np.zeros(23), 1.0, 2.0]) == 0.5  # two non-zero values among 25
