"""Seeds on demand: a group-sequential design over paired seeds that adds seeds in rounds until
every comparison with the baseline is decided, and keeps its error rates although it looks at
the data after every round.

Round 1 trains `min_seeds` seeds of every variant; each later round trains one new seed (the
same seed value everywhere, so the pairing holds) of the baseline and of every variant still
open, until none is open or `max_seeds` seeds are spent. A variant's look at a round is the
paired t statistic of its differences so far, at information fraction τ = pairs / max_seeds (1
at the last round).

- Error spending: Lan & DeMets' O'Brien–Fleming-type function α(τ) = 2 − 2Φ(z_{1−α/2} / √τ).
  The boundaries are for the paired t statistic itself: with normal differences and no effect,
  the path of t statistics over the looks does not depend on the unknown spread, so they come
  from its exact null distribution, simulated (PATHS paths from a fixed seed, computed once per
  design and kept in the user cache). Boundaries made for z statistics and applied to t-tests as
  nominal levels let the false-verdict rate drift to ~5.8% at α = 5% with 3 to 12 seeds; these
  keep it at 5% — for roughly normal paired differences. Skewed differences raise it.
- The deciding test: the t statistic against its boundary (`[analysis] test = "t"`), or the exact
  sign-flip p against the boundary's nominal level (`"permutation"`), which needs only symmetric
  differences. A look whose differences have no spread has no t statistic: the sign-flip route
  decides it (three seeds each +1 image cannot: their sign-flip p is 0.25). A look with fewer than
  MIN_PAIRS pairs decides nothing and spends no error.
- Several variants: Holm as a graphical procedure for group-sequential trials (Maurer & Bretz
  2013): each hypothesis starts at α/m; a rejected one passes its level in equal parts to the
  others, which are re-tested at every look so far with boundaries for their new level.
- Two families, each so corrected: the difference from the baseline (two-sided; better/worse)
  and equivalence within ±margin (TOST, one-sided spending per side; equivalent). Either decision
  stops the variant; one still open at the last round is inconclusive. One error budget for both
  (rule 2): with two or more variants each family spends α/2, so the chance of any false better,
  worse or equivalent is at most α (two families at α each reached 8% where one variant sits at
  Δ = 0 and another at the margin); with one variant each spends α, since its two nulls ("no
  difference", "a difference of at least the margin") cannot both be true. Rule 1, both families
  at α whatever the number of variants, is what designs started before rule 2 keep: the rule is
  recorded with the design at round 1 (harness/tracking/experiment_tags.py), so a stored design
  replays the verdicts it was run with.
- Repeated confidence intervals (Jennison & Turnbull 2000, ch. 9): at each look Δ ± its
  two-sided boundary × the standard error at the variant's current Holm level (so a 3-variant
  study's first intervals are 99.2% ones under rule 2, labelled so), valid at every round at once; on the
  sign-flip route the shifts the sign-flip test does not reject at the boundary's nominal level.
  An equivalence decision is shown with the interval that decides it: Δ ± the one-sided TOST
  boundary × se, inside ±margin.

Everything here is a pure function of the per-seed differences and of which pairs were tried,
so a resumed or rebuilt experiment reaches the same rounds and verdicts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from harness.analysis import signflip
from harness.analysis import stats as paired
from harness.analysis.spending import boundaries, p_value, spend  # noqa: F401 - the rule's boundaries, used by its callers too
from harness.settings.analysis import SEQUENTIAL_RULE, Analysis, Sequential  # noqa: F401 - the settings the rule takes

METHOD = (
    "a group-sequential paired t-test: Lan–DeMets O'Brien–Fleming-type α-spending over the information fraction "
    "pairs / max_seeds, with boundaries for the t statistic from its exact null distribution under normal differences "
    '(simulated, 1,000,000 paths; the sign-flip p against their nominal levels where `[analysis] test = "permutation"` '
    "or the differences have no spread; no decision below 3 pairs); "
    "Holm across the variants as the graphical procedure of Maurer & Bretz (2013), which passes a decided variant's level "
    "to the others; equivalence within ±margin by TOST in a second family spent the same way; repeated confidence "
    "intervals (Jennison & Turnbull)"
)
REFERENCES = (
    "Lan, K. K. G. & DeMets, D. L. (1983). Discrete sequential boundaries for clinical trials. Biometrika 70(3), 659–663.",
    "Jennison, C. & Turnbull, B. W. (2000). Group Sequential Methods with Applications to Clinical Trials. Chapman & Hall/CRC "
    "(ch. 7 error spending, ch. 9 repeated confidence intervals).",
    "Maurer, W. & Bretz, F. (2013). Multiple testing in group sequential trials using graphical approaches. "
    "Statistics in Biopharmaceutical Research 5(4), 311–320.",
    "Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian Journal of Statistics 6(2), 65–70.",
)
OPEN, INCONCLUSIVE = "open", "inconclusive"
RULE = SEQUENTIAL_RULE  # the rule new designs record: 2, one error budget (α/2 a family with two or more variants); 1, α a family


def family_alpha(alpha: float, variants: int, rule: int = RULE) -> float:
    """What each of the two families (difference, equivalence) spends: α/2 under rule 2 with two or
    more variants, else α."""
    return alpha / 2 if rule >= 2 and variants >= 2 else alpha


def budget(alpha: float, variants: int, rule: int = RULE) -> str:
    """How a design's two families spend α, in words: "α = 0.025 per family (the two share α = 0.05)"."""
    each = family_alpha(alpha, variants, rule)
    if each < alpha:
        return f"α = {each:g} per family (rule {rule}: the two families share α = {alpha:g})"
    if rule >= 2:
        return f"α = {alpha:g} per family (rule {rule}: one comparison, whose two nulls cannot both be true)"
    return f"α = {alpha:g} per family (rule {rule}, from before the families shared α)"


@dataclass(frozen=True)
class Look:
    round: int
    n: int  # pairs
    fraction: float  # information fraction τ
    mean: float  # Δ, points
    sd: float
    t: float  # paired t statistic against zero (nan when the differences have no spread)
    tost: float  # the smaller of TOST's one-sided t statistics against ±margin (nan likewise)
    values: tuple[float, ...] = ()  # the differences so far, by seed
    bound: float = math.nan  # the two-sided boundary |t| had to reach, at the variant's level then
    level: float = math.nan  # that boundary as a nominal two-sided p
    low: float = math.nan  # repeated confidence interval
    high: float = math.nan
    coverage: float = math.nan  # its level: 1 − the variant's Holm level at this look
    eq_low: float = math.nan  # the interval an equivalence decision stands on (set on the deciding look)
    eq_high: float = math.nan
    eq_coverage: float = math.nan

    @property
    def spread(self) -> bool:
        return math.isfinite(self.t)


@dataclass
class Track:
    """One variant through the rounds."""

    variant: str
    looks: list[Look] = field(default_factory=list)
    verdict: str = OPEN  # better | worse | equivalent | open | inconclusive (budget spent)
    decided_in: int = 0  # the round it was decided in
    by: str = ""  # what decided it: the sequential statistic against its boundary
    shape: str = ""  # the shape diagnostic of its differences at the last look (skew, an outlier)


@dataclass(frozen=True)
class Round:
    number: int
    seeds: tuple[int, ...]  # the design's seeds so far
    trained: tuple[str, ...]  # the variants (baseline first) that trained this round's seeds
    decided: dict[str, str]  # variant -> verdict, decided this round
    still_open: tuple[str, ...]


@dataclass(frozen=True)
class Walk:
    rounds: list[Round]
    tracks: dict[str, Track]
    next: list[tuple[str, int]]  # the (variant, seed) pairs to train now; empty when the design is done


def look(number: int, d: np.ndarray, fraction: float, margin: float) -> Look:
    """The statistics of one look at the differences `d`: the t statistic against zero and the
    smaller of TOST's two one-sided t statistics against ±margin (nan when d has no spread)."""
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    values = tuple(map(float, d))
    if n < 2:
        return Look(number, n, fraction, mean, math.nan, math.nan, math.nan, values)
    sd = paired.spread(d)
    if sd == 0:  # every pair moved alike: no t statistic; only the sign-flip route can decide
        return Look(number, n, fraction, mean, sd, math.nan, math.nan, values)
    se = sd / math.sqrt(n)
    return Look(number, n, fraction, mean, sd, mean / se, min((mean + margin) / se, (margin - mean) / se), values)


MIN_PAIRS = paired.MIN_PAIRS


@dataclass(frozen=True)
class _Rule:
    """How one variant's looks are judged at the current round."""

    sign_flip: bool  # `[analysis] test = "permutation"`: the sign-flip route at every look
    margin: float
    # (pairs, fraction) of the looks still planned: they key the boundary cache
    future: tuple[tuple[int, float], ...] = ()


def _usable(looks: list[Look]) -> list[Look]:
    return [lk for lk in looks if lk.n >= MIN_PAIRS]


def _bounds(usable: list[Look], level: float, two_sided: bool, rule: _Rule) -> tuple[float, ...]:
    """The boundaries at the usable looks, from those of the whole planned design (the first k
    depend on the first k looks only, so one cached design serves every round)."""
    ns = tuple(lk.n for lk in usable) + tuple(n for n, _ in rule.future)
    fractions = tuple(lk.fraction for lk in usable) + tuple(f for _, f in rule.future)
    return boundaries(ns, fractions, level, two_sided)[: len(usable)]


@functools.lru_cache(maxsize=65536)
def _signflip(values: tuple[float, ...], margin: float, equivalence: bool) -> float:
    """The sign-flip p of a look: two-sided against zero, or TOST's (the larger one-sided p against ±margin)."""
    d = np.array(values)
    return signflip.tost_p(d, margin) if equivalence else signflip.signflip_p(d)


def _judge(lk: Look, c: float, equivalence: bool, rule: _Rule) -> str:
    """'' when the look does not reach its boundary `c`, else what decided it (the sequential
    statistic against its boundary)."""
    if not math.isfinite(c):
        return ""
    where = f"at round {lk.round} ({lk.n} pairs)"
    if rule.sign_flip or not lk.spread:
        p, nominal = _signflip(lk.values, rule.margin, equivalence), p_value(c, lk.n, not equivalence)
        why = "" if rule.sign_flip else "; no spread between seeds, so no t statistic"
        return (
            f"sign-flip {'TOST ' if equivalence else ''}p {_p(p)} ≤ boundary {_p(nominal)} {where}{why}"
            if p <= nominal
            else ""
        )
    stat = lk.tost if equivalence else abs(lk.t)
    return f"{'TOST t' if equivalence else '|t|'} {stat:.3g} ≥ boundary {c:.3g} {where}" if stat >= c else ""


def _crosses(looks: list[Look], level: float, equivalence: bool, rule: _Rule) -> tuple[Look, float, str] | None:
    """The first look whose statistic reaches its boundary at `level` (with that boundary and why), or None."""
    usable = _usable(looks)
    for lk, c in zip(usable, _bounds(usable, level, not equivalence, rule)):
        why = _judge(lk, c, equivalence, rule)
        if why:
            return lk, c, why
    return None


def _around(lk: Look, c: float, two_sided: bool, rule: _Rule) -> tuple[float, float]:
    """Δ ± c·se, or on the sign-flip route the shifts the sign-flip test keeps at c's nominal level."""
    if rule.sign_flip or not lk.spread:
        return signflip.signflip_interval(
            np.array(lk.values), p_value(c, lk.n, True) if two_sided else 2 * p_value(c, lk.n, False)
        )
    half = c * lk.sd / math.sqrt(lk.n)
    return lk.mean - half, lk.mean + half


def _interval(looks: list[Look], level: float, rule: _Rule) -> Look:
    """The last look with its boundary, nominal level and repeated confidence interval at `level` (coverage 1 − level)."""
    usable = _usable(looks)
    lk = looks[-1]
    if not usable or usable[-1] is not lk:
        return lk
    c = _bounds(usable, level, True, rule)[-1]
    low, high = _around(lk, c, True, rule) if math.isfinite(c) else (-math.inf, math.inf)
    return replace(
        lk, bound=c, level=p_value(c, lk.n, True) if math.isfinite(c) else 0.0, low=low, high=high, coverage=1 - level
    )


class _Family:
    """One Holm family tested group-sequentially: each hypothesis's level, and the rejected ones."""

    def __init__(self, names: list[str], alpha: float, equivalence: bool) -> None:
        self.levels = {v: alpha / len(names) for v in names}
        self.rejected: dict[str, tuple[Look, float, str]] = {}
        self.equivalence = equivalence

    def test(
        self, tracks: dict[str, Track], rules: dict[str, _Rule]
    ) -> list[tuple[str, tuple[Look, float, str], float]]:
        """Reject what the current levels allow, passing each rejected level on; returns the new
        rejections with the level each was rejected at."""
        found = []
        while True:
            hit = next(
                (
                    (v, got)
                    for v in self.levels
                    if v not in self.rejected
                    for got in [_crosses(tracks[v].looks, self.levels[v], self.equivalence, rules[v])]
                    if got is not None
                ),
                None,
            )
            if hit is None:
                return found
            v, got = hit
            self.rejected[v] = got
            found.append((v, got, self.levels[v]))
            rest = [u for u in self.levels if u not in self.rejected]
            for u in rest:
                self.levels[u] += self.levels[v] / len(rest)


def _future(n: int, number: int, plan: Sequential) -> tuple[tuple[int, float], ...]:
    """The looks still planned after round `number` at n pairs, one pair a round."""
    left = plan.rounds() - number
    return tuple((n + i, 1.0 if i == left else (n + i) / plan.max_seeds) for i in range(1, left + 1))


def _decide(
    difference: _Family, equivalence: _Family, tracks: dict[str, Track], rules: dict, number: int
) -> dict[str, str]:
    """Round `number`'s tests, the difference family's first: each open variant a boundary decides
    gets its verdict (an equivalence also the interval that decided it); returns them."""
    decided: dict[str, str] = {}
    for family, is_equivalence in ((difference, False), (equivalence, True)):
        for v, (lk, c, why), level in family.test(tracks, rules):
            t = tracks[v]
            if t.verdict == OPEN:
                t.verdict = "equivalent" if is_equivalence else ("better" if lk.mean > 0 else "worse")
                t.decided_in, t.by = number, why
                decided[v] = t.verdict
                if is_equivalence:  # the interval that decides: inside ±margin
                    low, high = _around(lk, c, False, rules[v])
                    i = next(i for i, x in enumerate(t.looks) if x is lk)
                    t.looks[i] = replace(lk, eq_low=low, eq_high=high, eq_coverage=1 - 2 * level)
    return decided


def walk(
    differences: dict[str, dict[int, float]],
    tried: set[tuple[str, int]],
    baseline: str,
    variants: list[str],
    seeds: tuple[int, ...],
    plan: Sequential,
    analysis: Analysis = Analysis(),
    rule: int = RULE,
) -> Walk:
    """Replay the design on what is known: `differences` are each variant's paired differences by
    seed (points; only seeds where both runs finished), `tried` the (variant, seed) pairs that have
    an outcome (finished or failed), `rule` the rule the design recorded. Stops at the first round
    with a pair not yet tried and names those pairs as `next`."""
    for d in differences.values():
        paired.check_finite(d)
    tracks = {v: Track(v) for v in variants}
    if not variants:
        return Walk([], tracks, [])
    each = family_alpha(analysis.alpha, len(variants), rule)
    difference, equivalence = _Family(variants, each, False), _Family(variants, each, True)
    still_open, rounds = list(variants), []
    sign_flip = analysis.test == "permutation"
    for number in range(1, plan.rounds() + 1):
        used = seeds[: plan.min_seeds + number - 1]
        new = used if number == 1 else used[-1:]
        missing = [(v, s) for v in [baseline, *still_open] for s in new if (v, s) not in tried]
        if missing:
            return _walked(rounds, tracks, missing)
        last, trained = number == plan.rounds(), (baseline, *still_open)
        for v in still_open:
            d = np.array([x for s, x in sorted(differences.get(v, {}).items()) if s in used], dtype=float)
            looks = tracks[v].looks
            if len(d) > (looks[-1].n if looks else 0):  # a round that added no pair (a failed run) is no look
                looks.append(look(number, d, 1.0 if last else len(d) / plan.max_seeds, analysis.margin))
        rules = {
            v: _Rule(sign_flip, analysis.margin, _future(tracks[v].looks[-1].n if tracks[v].looks else 0, number, plan))
            for v in variants
        }
        decided = _decide(difference, equivalence, tracks, rules, number)
        for v in still_open:
            looks = tracks[v].looks
            if looks and looks[-1].round == number:
                looks[-1] = _interval(looks, difference.levels[v], rules[v])
        still_open = [v for v in still_open if v not in decided]
        if last:
            for v in still_open:
                tracks[v].verdict, tracks[v].decided_in = INCONCLUSIVE, number
                tracks[v].by = f"budget of {plan.max_seeds} seeds spent"
                decided[v] = INCONCLUSIVE
        rounds.append(Round(number, tuple(used), trained, decided, tuple(still_open) if not last else ()))
        if not still_open:
            break
    return _walked(rounds, tracks, [])


def _walked(rounds: list[Round], tracks: dict[str, Track], next_pairs: list[tuple[str, int]]) -> Walk:
    """The walk so far, each track with the shape diagnostic of its last look (computed once a
    track, not at every look: a simulated study walks thousands of tracks)."""
    for t in tracks.values():
        t.shape = paired.shape(np.array(t.looks[-1].values)) if t.looks else ""
    return Walk(rounds, tracks, next_pairs)


def decide(
    counts: dict[str, dict[int, tuple[int, int]]],
    tried: set[tuple[str, int]],
    baseline: str,
    variants: list[str],
    seeds: tuple[int, ...],
    plan: Sequential,
    analysis: Analysis = Analysis(),
    rule: int = RULE,
) -> Walk:
    """The design replayed on counts of correct test images, (correct, images) per variant and
    seed of the finished runs: what the runner asks before each round (its `next` pairs) and what
    the report replays from the store."""
    base = counts.get(baseline, {})
    diffs = {v: paired.count_differences(base, counts.get(v, {})) for v in variants}
    return walk(diffs, tried, baseline, list(variants), seeds, plan, analysis, rule)


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def coverage(x: float) -> str:
    """An interval's level as a percentage: 99.2%, 95%."""
    return f"{100 * x:.3g}%" if math.isfinite(x) else "–"


def interval_text(lk: Look, verdict: str) -> str:
    """The interval a look stands on, with its level: the TOST's for an equivalence decision,
    else the repeated confidence interval."""
    if verdict == "equivalent" and math.isfinite(lk.eq_low):
        return f"[{lk.eq_low:+.2f}, {lk.eq_high:+.2f}] (TOST's {coverage(lk.eq_coverage)} interval)"
    if lk.low == -math.inf:
        return f"(−∞, +∞) (repeated {coverage(lk.coverage)} CI)"
    return f"[{lk.low:+.2f}, {lk.high:+.2f}] (repeated {coverage(lk.coverage)} CI)" if math.isfinite(lk.low) else "–"


def describe(r: Round, tracks: dict[str, Track]) -> str:
    """One console line after a round: what it decided and which comparisons stay open."""
    seeds = f"seed {r.seeds[0]}" if len(r.seeds) == 1 else f"seeds {r.seeds[0]}–{r.seeds[-1]}"
    parts = []
    for v, verdict in r.decided.items():
        warn = f"; warning: {tracks[v].shape}" if tracks[v].shape else ""
        parts.append(f"{v} {verdict} ({tracks[v].by}{warn})" + (", stops" if verdict != INCONCLUSIVE else ""))
    for v in r.still_open:
        lk = next((lk for lk in tracks[v].looks if lk.round == r.number), None)
        where = (
            f"Δ {lk.mean:+.2f} {interval_text(lk, OPEN)}"
            if lk is not None and lk.n >= MIN_PAIRS and not math.isnan(lk.low)
            else "too few pairs"
        )
        parts.append(f"{v} open ({where})")
    if not r.still_open:
        parts.append("none open")
    return f"round {r.number} ({seeds}): " + "; ".join(parts)


def runs_used(rounds: list[Round]) -> int:
    """The (variant, seed) runs the design's rounds trained."""
    return sum((len(r.seeds) if r.number == 1 else 1) * len(r.trained) for r in rounds)
