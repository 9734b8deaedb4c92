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
  from its exact null distribution, simulated (PATHS paths from a fixed seed). Boundaries made
  for z statistics and applied to t-tests as nominal levels let the false-verdict rate drift to
  ~5.8% at α = 5% with 3 to 12 seeds; these keep it at 5%.
- Several variants: Holm as a graphical procedure for group-sequential trials (Maurer & Bretz
  2013): each hypothesis starts at α/m; a rejected one passes its level in equal parts to the
  others, which are re-tested at every look so far with boundaries for their new level.
- Two families, each so corrected: the difference from the baseline (two-sided; better/worse)
  and equivalence within ±margin (TOST, one-sided spending per side; equivalent). Either decision
  stops the variant; one still open at the last round is inconclusive.
- Repeated confidence intervals (Jennison & Turnbull 2000, ch. 9): at each look Δ ± its
  two-sided boundary × the standard error, valid at every round at once.

Everything here is a pure function of the per-seed differences and of which pairs were tried,
so a resumed or rebuilt experiment reaches the same rounds and verdicts.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special, stats

from harness.analysis import stats as paired
from harness.settings.analysis import Analysis, Sequential  # noqa: F401 - the settings the rule takes

METHOD = ("a group-sequential paired t-test: Lan–DeMets O'Brien–Fleming-type α-spending over the information fraction "
          "pairs / max_seeds, with boundaries for the t statistic from its exact null distribution (simulated, 200,000 paths); "
          "Holm across the variants as the graphical procedure of Maurer & Bretz (2013), which passes a decided variant's level "
          "to the others; equivalence within ±margin by TOST in a second family spent the same way; repeated confidence "
          "intervals (Jennison & Turnbull)")
REFERENCES = (
    "Lan, K. K. G. & DeMets, D. L. (1983). Discrete sequential boundaries for clinical trials. Biometrika 70(3), 659–663.",
    "Jennison, C. & Turnbull, B. W. (2000). Group Sequential Methods with Applications to Clinical Trials. Chapman & Hall/CRC "
    "(ch. 7 error spending, ch. 9 repeated confidence intervals).",
    "Maurer, W. & Bretz, F. (2013). Multiple testing in group sequential trials using graphical approaches. "
    "Statistics in Biopharmaceutical Research 5(4), 311–320.",
    "Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian Journal of Statistics 6(2), 65–70.",
)
GRID = 301  # points of the integration grid per look (odd: Simpson's rule)
OPEN, INCONCLUSIVE = "open", "inconclusive"


@dataclass(frozen=True)
class Look:
    round: int
    n: int  # pairs
    fraction: float  # information fraction τ
    mean: float  # Δ, points
    sd: float
    t: float  # paired t statistic against zero (±inf when every pair moved by the same nonzero amount)
    tost: float  # the smaller of TOST's one-sided t statistics against ±margin
    bound: float = math.nan  # the two-sided boundary |t| had to reach, at the variant's level then
    level: float = math.nan  # that boundary as a nominal two-sided p
    low: float = math.nan  # repeated confidence interval
    high: float = math.nan


@dataclass
class Track:
    """One variant through the rounds."""

    variant: str
    looks: list[Look] = field(default_factory=list)
    verdict: str = OPEN  # better | worse | equivalent | open | inconclusive (budget spent)
    decided_in: int = 0  # the round it was decided in
    by: str = ""  # what decided it


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


def spend(level: float, fraction: float) -> float:
    """The O'Brien–Fleming-type error spent by information fraction τ: 2 − 2Φ(z_{1−level/2} / √τ)."""
    return float(2 * stats.norm.sf(stats.norm.isf(level / 2) / math.sqrt(fraction)))


PATHS = 200_000  # simulated null paths of the t statistic per set of boundaries
PATH_SEED = 20131  # fixed: the same looks give the same boundaries on every machine and every rebuild


@functools.lru_cache(maxsize=4096)
def boundaries(ns: tuple[int, ...], fractions: tuple[float, ...], level: float, two_sided: bool) -> tuple[float, ...]:
    """Critical values of the paired t statistic at looks with `ns` pairs at information
    `fractions`, spending `level` by `spend`: a look rejects
    when |t| (two-sided) or t (one-sided) reaches its value; inf where nothing is left to spend.

    Under normal differences with no effect, the path of t statistics over the looks does not
    depend on the unknown spread, so PATHS simulated null paths give the boundaries exactly up to
    Monte-Carlo error: each is the order statistic of the paths still running that spends the
    error due by that look."""
    rng = np.random.default_rng(PATH_SEED)
    total, squares = np.zeros(PATHS), np.zeros(PATHS)
    running = np.ones(PATHS, dtype=bool)
    out, last_n = [], 0
    for n, fraction in zip(ns, fractions):
        block = n - last_n
        b = rng.standard_normal(PATHS) * math.sqrt(block)  # the new pairs' sum, and their scatter about their own mean
        within = rng.chisquare(block - 1, PATHS) if block > 1 else 0.0
        total, squares, last_n = total + b, squares + within + b * b / block, n
        if n < 2:
            out.append(math.inf)
            continue
        sd = np.sqrt(np.maximum(squares - total * total / n, 0.0) / (n - 1))
        t = total / np.maximum(sd, 1e-300) / math.sqrt(n)
        stat = np.abs(t) if two_sided else t
        due = round(spend(level, fraction) * PATHS) - int((~running).sum())  # paths this look may stop
        alive = stat[running]
        if due <= 0 or not len(alive):
            out.append(math.inf)
            continue
        c = float(np.partition(alive, len(alive) - due)[len(alive) - due]) if due < len(alive) else float(alive.min())
        out.append(c)
        running &= stat < c
    return tuple(out)


def look(number: int, d: np.ndarray, fraction: float, margin: float) -> Look:
    """The statistics of one look at the differences `d`: the t statistic against zero and the
    smaller of TOST's two one-sided t statistics against ±margin."""
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return Look(number, n, fraction, mean, math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    if sd == 0:  # every pair moved alike: the t statistics are infinite (or 0 for no move)
        return Look(number, n, fraction, mean, sd, math.copysign(math.inf, mean) if mean else 0.0, math.inf if abs(mean) < margin else -math.inf)
    se = sd / math.sqrt(n)
    return Look(number, n, fraction, mean, sd, mean / se, min((mean + margin) / se, (margin - mean) / se))


def p_value(stat: float, n: int, two_sided: bool) -> float:
    """The fixed-sample t-test p of a look's statistic (for display; the boundaries decide)."""
    tail = float(special.stdtr(n - 1, -abs(stat) if two_sided else -stat))  # scipy's t cdf without stats.t's overhead
    return min(1.0, 2 * tail) if two_sided else tail


def _boundaries(looks: list[Look], level: float, two_sided: bool) -> tuple[float, ...]:
    return boundaries(tuple(lk.n for lk in looks), tuple(lk.fraction for lk in looks), level, two_sided)


def _crosses(looks: list[Look], level: float, equivalence: bool) -> tuple[Look, float] | None:
    """The first look whose statistic reaches its boundary at `level` (with that boundary), or None."""
    usable = [lk for lk in looks if lk.n >= 2]
    for lk, c in zip(usable, _boundaries(usable, level, not equivalence)):
        if (lk.tost if equivalence else abs(lk.t)) >= c:
            return lk, c
    return None


def _interval(looks: list[Look], level: float) -> Look:
    """The last look with its boundary, nominal level and repeated confidence interval Δ ± c·se at `level`."""
    usable = [lk for lk in looks if lk.n >= 2]
    lk = looks[-1]
    if not usable or usable[-1] is not lk:
        return lk
    c = _boundaries(usable, level, True)[-1]
    half = c * lk.sd / math.sqrt(lk.n) if lk.sd > 0 else 0.0
    return replace(lk, bound=c, level=p_value(c, lk.n, True) if math.isfinite(c) else 0.0, low=lk.mean - half, high=lk.mean + half)


class _Family:
    """One Holm family tested group-sequentially: each hypothesis's level, and the rejected ones."""

    def __init__(self, names: list[str], alpha: float, equivalence: bool) -> None:
        self.levels = {v: alpha / len(names) for v in names}
        self.rejected: dict[str, tuple[Look, float]] = {}
        self.equivalence = equivalence

    def test(self, tracks: dict[str, Track]) -> list[tuple[str, tuple[Look, float]]]:
        """Reject what the current levels allow, passing each rejected level on; returns the new rejections."""
        found = []
        while True:
            hit = next(((v, found) for v in self.levels if v not in self.rejected
                        for found in [_crosses(tracks[v].looks, self.levels[v], self.equivalence)] if found is not None), None)
            if hit is None:
                return found
            v, lk = hit
            self.rejected[v] = lk
            found.append(hit)
            rest = [u for u in self.levels if u not in self.rejected]
            for u in rest:
                self.levels[u] += self.levels[v] / len(rest)


def walk(differences: dict[str, dict[int, float]], tried: set[tuple[str, int]], baseline: str, variants: list[str],
         seeds: tuple[int, ...], plan: Sequential, analysis: Analysis = Analysis()) -> Walk:
    """Replay the design on what is known: `differences` are each variant's paired differences by
    seed (points; only seeds where both runs finished), `tried` the (variant, seed) pairs that have
    an outcome (finished or failed). Stops at the first round with a pair not yet tried and names
    those pairs as `next`."""
    tracks = {v: Track(v) for v in variants}
    if not variants:
        return Walk([], tracks, [])
    difference, equivalence = _Family(variants, analysis.alpha, False), _Family(variants, analysis.alpha, True)
    still_open, rounds = list(variants), []
    for number in range(1, plan.rounds() + 1):
        used = seeds[: plan.min_seeds + number - 1]
        new = used if number == 1 else used[-1:]
        missing = [(v, s) for v in [baseline, *still_open] for s in new if (v, s) not in tried]
        if missing:
            return Walk(rounds, tracks, missing)
        last, trained = number == plan.rounds(), (baseline, *still_open)
        for v in still_open:
            d = np.array([x for s, x in sorted(differences.get(v, {}).items()) if s in used], dtype=float)
            looks = tracks[v].looks
            if len(d) > (looks[-1].n if looks else 0):  # a round that added no pair (a failed run) is no look
                looks.append(look(number, d, 1.0 if last else len(d) / plan.max_seeds, analysis.margin))
        decided: dict[str, str] = {}
        for family, is_equivalence in ((difference, False), (equivalence, True)):
            for v, (lk, c) in family.test(tracks):
                t = tracks[v]
                if t.verdict == OPEN:
                    t.verdict = "equivalent" if is_equivalence else ("better" if lk.mean > 0 else "worse")
                    t.decided_in = number
                    p = p_value(lk.tost, lk.n, False) if is_equivalence else p_value(lk.t, lk.n, True)
                    t.by = (f"{'TOST' if is_equivalence else 't-test'} p {_p(p)} at round {lk.round}, {lk.n} pairs: "
                            f"{'t' if is_equivalence else '|t|'} {abs(lk.t) if not is_equivalence else lk.tost:.3g} ≥ boundary {c:.3g}")
                    decided[v] = t.verdict
        for v in still_open:
            looks = tracks[v].looks
            if looks and looks[-1].round == number:
                looks[-1] = _interval(looks, difference.levels[v])
        still_open = [v for v in still_open if v not in decided]
        if last:
            for v in still_open:
                tracks[v].verdict, tracks[v].decided_in = INCONCLUSIVE, number
                tracks[v].by = f"budget of {plan.max_seeds} seeds spent"
                decided[v] = INCONCLUSIVE
        rounds.append(Round(number, tuple(used), trained, decided, tuple(still_open) if not last else ()))
        if not still_open:
            break
    return Walk(rounds, tracks, [])


def decide(counts: dict[str, dict[int, tuple[int, int]]], tried: set[tuple[str, int]], baseline: str, variants: list[str],
           seeds: tuple[int, ...], plan: Sequential, analysis: Analysis = Analysis()) -> Walk:
    """The design replayed on counts of correct test images, (correct, images) per variant and
    seed of the finished runs: what the runner asks before each round (its `next` pairs) and what
    the report replays from the store."""
    base = counts.get(baseline, {})
    diffs = {v: paired.count_differences(base, counts.get(v, {})) for v in variants}
    return walk(diffs, tried, baseline, list(variants), seeds, plan, analysis)


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.2g}"


def describe(r: Round, tracks: dict[str, Track]) -> str:
    """One console line after a round: what it decided and which comparisons stay open."""
    seeds = f"seed {r.seeds[0]}" if len(r.seeds) == 1 else f"seeds {r.seeds[0]}–{r.seeds[-1]}"
    parts = []
    for v, verdict in r.decided.items():
        parts.append(f"{v} {verdict} ({tracks[v].by})" + (", stops" if verdict != INCONCLUSIVE else ""))
    for v in r.still_open:
        lk = next((lk for lk in tracks[v].looks if lk.round == r.number), None)
        where = f"Δ {lk.mean:+.2f} [{lk.low:+.2f}, {lk.high:+.2f}]" if lk is not None and math.isfinite(lk.low) else "too few pairs"
        parts.append(f"{v} open ({where})")
    if not r.still_open:
        parts.append("none open")
    return f"round {r.number} ({seeds}): " + "; ".join(parts)


def runs_used(rounds: list[Round]) -> int:
    """The (variant, seed) runs the design's rounds trained."""
    return sum((len(r.seeds) if r.number == 1 else 1) * len(r.trained) for r in rounds)
