"""Seeds on demand (harness/analysis/sequential.py, its boundaries from harness/analysis/spending.py,
the frozen design in harness/tracking/experiment_tags.py): the error rates of the stopping rule by
simulation (normal, heavy-tailed, skewed and whole-image differences; one error budget under rule 2),
the boundaries checked on independent paths and cached across commands, the rounds the rule asks
for, looks without spread that only the sign-flip route may decide, the repeated intervals and their
levels, and how decided, failed and budget-limited variants and changed designs come out."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.analysis import sample_size, sequential, spending, stats
from harness.analysis import sequential as sq
from harness.analysis.sequential import Sequential
from tests import simulation as sim
from tests.helpers import THREE, looks
from tests.simulation import compare_all

ALPHA = 0.05


def simulate(rng, studies: int, variants: int, effect: float, plan: Sequential, margin: float = 0.5) -> list[sq.Walk]:
    """Studies of paired differences drawn N(effect, 1), every pair tried: what the rule decides."""
    seeds = tuple(range(plan.max_seeds))
    out = []
    for _ in range(studies):
        diffs = {
            f"v{i}": dict(zip(seeds, map(float, rng.standard_normal(plan.max_seeds) + effect))) for i in range(variants)
        }
        tried = {(v, s) for v in ["b", *diffs] for s in seeds}
        out.append(sq.walk(diffs, tried, "b", list(diffs), seeds, plan, stats.Analysis(margin=margin, alpha=ALPHA)))
    return out


@pytest.mark.parametrize("variants,studies", [(1, 4000), (3, 2000)])
def test_no_true_effect_gives_false_verdicts_at_most_alpha(variants, studies):
    walks = simulate(np.random.default_rng(1), studies, variants, 0.0, Sequential(3, 12))
    false = sum(any(t.verdict in ("better", "worse") for t in w.tracks.values()) for w in walks) / studies
    error = math.sqrt(ALPHA * (1 - ALPHA) / studies)
    print(
        f"\n{variants} variant(s), {studies} studies with no effect: false better/worse in {false:.4f} (α = {ALPHA}, "
        f"simulation error ±{error:.4f})"
    )
    assert false <= ALPHA + 2 * error


def test_a_true_effect_of_one_sd_needs_fewer_seeds_than_a_fixed_design_of_the_same_power():
    plan = Sequential(3, 20)
    walks = simulate(np.random.default_rng(2), 2000, 1, 1.0, plan)
    tracks = [w.tracks["v0"] for w in walks]
    power = sum(t.verdict == "better" for t in tracks) / len(tracks)
    average = float(np.mean([t.looks[-1].n for t in tracks]))
    fixed = sample_size.seeds_needed(1.0, 1.0, ALPHA, power)
    print(
        f"\ntrue effect 1 sd: the sequential rule finds it in {power:.3f} of 2000 studies with {average:.2f} seeds on average; "
        f"a fixed design needs {fixed} seeds for the same power"
    )
    assert power > 0.9 and average < fixed - 2


def test_the_boundaries_spend_alpha_on_an_independent_simulation_of_t_paths():
    """The t boundaries at looks 3..8 of 8 pairs, checked on fresh null paths (not the ones they came from)."""
    ns = tuple(range(3, 9))
    fractions = tuple(n / 8 for n in ns)
    both, upper = sq.boundaries(ns, fractions, ALPHA, True), sq.boundaries(ns, fractions, ALPHA, False)
    x = np.random.default_rng(99).standard_normal((100_000, 8))
    crossed_two, crossed_one = np.zeros(len(x), bool), np.zeros(len(x), bool)
    for n, c2, c1 in zip(ns, both, upper):
        d = x[:, :n]
        t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
        crossed_two |= np.abs(t) >= c2
        crossed_one |= t >= c1
    assert abs(crossed_two.mean() - ALPHA) < 0.003 and abs(crossed_one.mean() - ALPHA) < 0.003
    assert list(both) == sorted(both, reverse=True)  # O'Brien–Fleming: strict early, close to the fixed test at the end
    assert both[-1] > scipy_stats.t.ppf(0.975, 7)  # some error was spent before the last look


def walk(diffs, tried, variants=None, plan=Sequential(3, 6), margin=0.5):
    variants = variants or list(diffs)
    return sq.walk(
        diffs, tried, "baseline", variants, tuple(range(100, 100 + plan.max_seeds)), plan, stats.Analysis(margin=margin)
    )


def all_tried(names, seeds):
    return {(v, s) for v in ["baseline", *names] for s in seeds}


def test_round_one_asks_for_min_seeds_of_every_variant_then_one_seed_of_the_open_ones():
    w = walk({"a": {}, "b": {}}, set())
    assert w.rounds == [] and sorted(w.next) == sorted((v, s) for v in ("baseline", "a", "b") for s in (100, 101, 102))
    clear = {100: 10.0, 101: 10.2, 102: 10.1, 103: 10.2}  # a large steady gain: decided at round 1
    unclear = {100: 1.0, 101: -2.0, 102: 0.5, 103: 1.5}
    w = walk({"a": clear, "b": unclear}, all_tried(["a", "b"], (100, 101, 102)))
    assert w.tracks["a"].verdict == "better" and w.tracks["a"].decided_in == 1
    assert w.tracks["b"].verdict == sq.OPEN
    assert w.next == [("baseline", 103), ("b", 103)]  # the decided variant gets no more seeds
    assert w.rounds[0].still_open == ("b",) and w.rounds[0].decided == {"a": "better"}
    line = sq.describe(w.rounds[0], w.tracks)
    assert (
        line.startswith("round 1 (seeds 100–102): a better (|t| 175 ≥ boundary ")
        and "at round 1 (3 pairs)), stops; b open (Δ " in line
    )
    # b has its family's whole α/2 (rule 2: two variants) once a has passed its level on; its interval says which level
    assert line.endswith("(repeated 97.5% CI))")


def test_the_budget_ends_the_design_with_the_open_ones_inconclusive():
    unclear = {100: 1.0, 101: -2.0, 102: 0.5, 103: 1.5, 104: -1.0, 105: 0.7}
    w = walk({"b": unclear}, all_tried(["b"], range(100, 106)))
    assert w.next == [] and len(w.rounds) == 4 and w.rounds[-1].seeds == tuple(range(100, 106))
    t = w.tracks["b"]
    assert t.verdict == sq.INCONCLUSIVE and t.decided_in == 4 and t.by == "budget of 6 seeds spent"
    assert [lk.n for lk in t.looks] == [3, 4, 5, 6] and t.looks[-1].fraction == 1.0
    assert [lk.fraction for lk in t.looks[:-1]] == [3 / 6, 4 / 6, 5 / 6]
    widths = [lk.high - lk.low for lk in t.looks]
    assert all(math.isfinite(x) for x in widths[1:])
    assert sq.runs_used(w.rounds) == 12  # the baseline and b, 6 seeds each: nothing saved when nothing is decided


def test_a_failed_pair_is_tried_but_adds_no_look():
    """b's run of seed 101 failed: its look at round 1 has 2 pairs, and round 2 goes on without retrying it."""
    d = {100: 1.0, 102: -0.5, 103: 0.2}
    w = walk({"b": d}, all_tried(["b"], (100, 101, 102, 103)))
    assert [lk.n for lk in w.tracks["b"].looks] == [2, 3]
    assert w.next == [("baseline", 104), ("b", 104)]
    d = {100: 1.0, 101: 0.3, 102: -0.5}  # the baseline's seed 103 failed: no pair at round 2, so no look
    tried = all_tried(["b"], (100, 101, 102)) | {("baseline", 103), ("b", 103)}
    w = walk({"b": d}, tried)
    assert [lk.round for lk in w.tracks["b"].looks] == [1] and len(w.rounds) == 2


def test_seeds_without_spread_are_not_decided_at_once_by_an_infinite_t():
    """Equal seeds are not equivalent, and a steady shift not better, at round 1 (t = ±inf). A look
    without spread has no t statistic; the exact sign-flip route decides it, which 3 pairs cannot (p ≥ 0.25)."""
    three = (100, 101, 102)
    w = walk(
        {"same": dict.fromkeys(three, 0.0), "shift": dict.fromkeys(three, 2.0)}, all_tried(["same", "shift"], three)
    )
    assert w.tracks["same"].verdict == sq.OPEN and w.tracks["shift"].verdict == sq.OPEN
    assert all(math.isnan(t.looks[0].t) for t in w.tracks.values())
    seeds = range(100, 112)
    w = walk(
        {"same": dict.fromkeys(seeds, 0.0), "shift": dict.fromkeys(seeds, 2.0)},
        all_tried(["same", "shift"], seeds),
        plan=Sequential(3, 12),
    )
    same, shift = w.tracks["same"], w.tracks["shift"]
    assert same.verdict == "equivalent" and shift.verdict == "better" and min(same.decided_in, shift.decided_in) > 1
    assert same.by.startswith("sign-flip TOST p ") and "no spread between seeds" in same.by
    assert shift.by.startswith("sign-flip p ") and "no spread between seeds" in shift.by


def test_a_decided_variant_passes_its_level_on_holm():
    """c alone, at α/2, is not decided at the last round; after a is decided it is tested at α."""
    a = {s: 10.0 + 0.1 * (s % 3) for s in range(100, 106)}
    # t 3.46 at 6 pairs: boundary 3.56 at α/2, 2.97 at α
    c = {
        100: 1.2,
        101: 2.1,
        102: 0.0,
        103: 1.9,
        104: 0.4,
        105: 1.4,
    }
    plan = Sequential(3, 6)
    seeds, rule = tuple(range(100, 106)), 1  # rule 1: each family at α, so the levels above are Holm's alone
    alone = sq.walk(
        {"c": c, "z": {}}, all_tried(["c", "z"], range(100, 106)), "baseline", ["c", "z"], seeds, plan, rule=rule
    )
    helped = sq.walk(
        {"a": a, "c": c}, all_tried(["a", "c"], range(100, 106)), "baseline", ["a", "c"], seeds, plan, rule=rule
    )
    assert alone.tracks["c"].verdict == sq.INCONCLUSIVE
    assert helped.tracks["a"].decided_in == 1 and helped.tracks["c"].verdict == "better"


def test_the_walk_is_a_pure_function_of_what_was_tried():
    rng = np.random.default_rng(3)
    diffs = {v: {s: float(x) for s, x in zip(range(100, 106), rng.normal(0.5, 1, 6))} for v in ("a", "b")}
    tried = all_tried(["a", "b"], range(100, 106))
    first, second = walk(diffs, tried), walk(diffs, tried)
    assert [(t.verdict, t.decided_in, t.looks) for t in first.tracks.values()] == [
        (t.verdict, t.decided_in, t.looks) for t in second.tracks.values()
    ]
    assert sq.boundaries((3, 4), (0.5, 1.0), 0.05, True) == sq.boundaries.__wrapped__((3, 4), (0.5, 1.0), 0.05, True)


def test_rule_two_gives_each_family_half_of_alpha_with_two_or_more_variants():
    """One error budget: under rule 2 the difference and the equivalence family each spend α/2 when
    two or more variants are compared, α with one (its two nulls cannot both hold); rule 1 spends α
    in each. The first repeated interval shows the level: 1 − α/2/m."""
    assert sq.family_alpha(0.05, 1) == 0.05 and sq.family_alpha(0.05, 2) == 0.025
    assert sq.family_alpha(0.05, 3, rule=1) == 0.05
    seeds, plan = tuple(range(6)), Sequential(3, 6)
    flat = {s: 0.1 * (-1) ** s + 0.01 * s for s in seeds}  # no decision at the first look
    for rule, coverage in ((1, 1 - 0.05 / 2), (2, 1 - 0.05 / 4)):
        w = sq.walk(
            {"a": flat, "b": flat}, all_tried(["a", "b"], seeds), "baseline", ["a", "b"], seeds, plan, rule=rule
        )
        assert w.tracks["a"].looks[0].coverage == pytest.approx(coverage)
    one = sq.walk({"a": flat}, all_tried(["a"], seeds), "baseline", ["a"], seeds, plan)
    assert one.tracks["a"].looks[0].coverage == pytest.approx(0.95)


def test_a_design_keeps_the_rule_it_started_with():
    """The rule is recorded with the design at round 1 and carried by every later `run`; a design
    recorded before rules were replays under rule 1."""
    import json
    from types import SimpleNamespace

    from harness.settings.analysis import Analysis
    from harness.tracking import experiment_tags as et
    from harness.tracking.names import SEQUENTIAL_FROZEN_TAG

    cfg = SimpleNamespace(
        sequential=Sequential(3, 12),
        seeds=(2021,),
        analysis=Analysis(),
        baseline="baseline",
        variants=("baseline", "a"),
    )
    assert et.rule_of({}) == sq.RULE == 2
    new = et.freeze({}, cfg, [])
    assert json.loads(new[SEQUENTIAL_FROZEN_TAG])["rule"] == 2 and et.rule_of(new) == 2
    old_record = {k: v for k, v in json.loads(new[SEQUENTIAL_FROZEN_TAG]).items() if k != "rule"}
    old = {SEQUENTIAL_FROZEN_TAG: json.dumps(old_record)}
    assert et.rule_of(old) == 1 and et.rule_of(et.freeze(old, cfg, [])) == 1  # carried, never compared
    assert et.design_changes(old, cfg) == []


@pytest.mark.slow
def test_one_error_budget_holds_any_false_verdict_to_alpha_under_seeds_on_demand():
    """Two variants at Δ = 0 and Δ = +margin (0.5), normal differences of sd 0.5, 3 to 12 seeds on
    demand. Under rule 1 (each family at α) some verdict (better or worse for the first, equivalent
    for the second) is false in 7.42% ± 0.34% of 4,000 studies; under rule 2 (α/2 a family) in
    3.47% ± 0.15% of 20,000 (seed 395)."""
    plan, margin, seeds = Sequential(3, 12), 0.5, tuple(range(12))
    rates = {}
    for rule, studies in ((2, 20_000), (1, 4_000)):
        rng, false = np.random.default_rng(395), 0
        for _ in range(studies):
            diffs = {
                "zero": dict(zip(seeds, map(float, rng.normal(0.0, 0.5, 12)))),
                "edge": dict(zip(seeds, map(float, rng.normal(margin, 0.5, 12)))),
            }
            w = sq.walk(
                diffs,
                all_tried(list(diffs), seeds),
                "baseline",
                list(diffs),
                seeds,
                plan,
                stats.Analysis(margin=margin),
                rule,
            )
            false += w.tracks["zero"].verdict in ("better", "worse") or w.tracks["edge"].verdict == "equivalent"
        rates[rule] = (false / studies, math.sqrt(ALPHA * (1 - ALPHA) / studies))
    print(
        "\nany false verdict: " + ", ".join(f"rule {r} {100 * p:.2f}% ± {100 * e:.2f}%" for r, (p, e) in rates.items())
    )
    assert rates[2][0] <= ALPHA + 2 * rates[2][1]
    assert rates[1][0] > ALPHA + 2 * rates[1][1]  # rule 1 does not hold it to α


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
    w = looks({"v": dict(zip(THREE, values))})
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
    """Paired sd 2 images, 3 variants, no effect: false better/worse at most α (deciding on zero spread gives 9.1%)."""
    studies = 600
    rate = sim.false_rate(sim.sequential_studies(20, studies, 3, "297 images, sd 2 images", Sequential(3, 12)))
    print(
        f"\n297 images, sd 2 images, 3 variants, 3–12 seeds, {studies} studies (seed 20): false better/worse {rate:.4f}"
    )
    assert rate <= sim.ALPHA + 2 * sim.error(rate, studies)


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
    # on a part of its false verdicts, though most are decided at 5 or more pairs
    assert warned[("lognormal", 1, "t")] > 0.15 and late_share[("lognormal", 1, "t")] > 0.8


@pytest.mark.slow
def test_the_headline_false_verdict_rates_come_from_20000_studies():
    """The rates the README and docs/seeds-on-demand.md quote for normal differences (no true
    effect, 1 variant, 3–12 seeds on demand, α = 5%), from 20,000 simulated studies each: measured
    4.87% ± 0.15% by the t route and 4.33% ± 0.14% by the permutation route (seed 300). Rows of
    1,000 studies are too coarse for them: they can read 3.5% and 2.8%."""
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


def test_the_sequential_intervals_carry_their_level_and_equivalence_shows_the_deciding_interval():
    rng = np.random.default_rng(11)
    diffs = {v: {s: float(x) for s, x in zip(range(100, 112), rng.normal(0, 0.2, 12))} for v in ("a", "b", "c")}
    w = looks(diffs)
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
