"""Effects of an ablation design, paired by seed (the same seed gives every cell the same split,
initial weights and batch order), each tested with the statistics module and Holm-corrected
together.

- factorial, k factors, cells c with y_c(s) the test accuracy of seed s: with x_A(c) = +1 when
  c holds A and -1 when not, the main effect of A on seed s is (1 / 2^(k-1)) Σ_c x_A(c) y_c(s) —
  the mean over the cells with A minus the mean over the cells without — and the interaction of
  A and B is (1 / 2^(k-1)) Σ_c x_A(c) x_B(c) y_c(s): half the difference between A's effect with
  B and A's effect without B. Only seeds that have every cell count. The margin is on the scale of
  the simple effects: an interaction is "equivalent" (the effects add) when A's effect with B and
  without B differ by less than the margin, which is its contrast's TOST at margin / 2.
- leave-one-out, full model F: the contribution of component X on seed s is y_F(s) - y_{F-X}(s),
  and "full − baseline" is the whole model's gain.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from harness.analysis import stats
from harness.settings.designs import Design, cell


@dataclass(frozen=True)
class Effect:
    name: str  # "dropout", "batchnorm × dropout", "full − baseline"
    kind: str  # main | interaction | contribution | total
    per_seed: dict[int, float]  # the contrast on each seed (points)
    test: stats.Paired  # with Holm p and verdict, corrected across the design's effects


def contrasts(
    design: Design, test_acc: dict[str, dict[int, float]], scale: float = 1.0
) -> dict[str, tuple[str, dict[int, float]]]:
    """Effect name -> (kind, per-seed contrast), from each variant's test accuracy by seed (or its
    count of correct images: the contrast is then an exact integer sum, times `scale`)."""
    factors = sorted(design.factors)
    if design.kind == "factorial":
        cells = [frozenset(c) for r in range(len(factors) + 1) for c in itertools.combinations(factors, r)]
        seeds = _common(test_acc, [cell(c) for c in cells])
        out = {}
        for order in (1, 2):
            for term in itertools.combinations(factors, order):
                per_seed = {
                    s: scale * sum(_sign(c, term) * test_acc[cell(c)][s] for c in cells) / 2 ** (len(factors) - 1)
                    for s in seeds
                }
                out[" × ".join(term)] = ("main" if order == 1 else "interaction", per_seed)
        return out
    if design.kind == "leave-one-out":
        full = cell(factors)
        out = {}
        for x in factors:
            without = cell(set(factors) - {x})
            seeds = _common(test_acc, [full, without])
            out[x] = ("contribution", {s: scale * (test_acc[full][s] - test_acc[without][s]) for s in seeds})
        seeds = _common(test_acc, [full, "baseline"])
        out["full − baseline"] = ("total", {s: scale * (test_acc[full][s] - test_acc["baseline"][s]) for s in seeds})
        return out
    return {}


def analyse(
    design: Design, counts: dict[str, dict[int, tuple[int, int]]], analysis: stats.Analysis = stats.Analysis()
) -> list[Effect]:
    """Every effect of the design with its tests and verdict, Holm-corrected across them all, from
    each cell's (correct, images) counts by seed."""
    raw = contrasts(design, *exact(counts))
    tested = (
        stats.family({name: stats.differences(d, _scaled(kind, analysis)) for name, (kind, d) in raw.items()}, analysis)
        if raw
        else {}
    )
    return [Effect(name, kind, d, tested[name]) for name, (kind, d) in raw.items()]


def _scaled(kind: str, analysis: stats.Analysis) -> stats.Analysis:
    """An interaction's contrast is half the difference of its simple effects, so "the effects add
    within the margin" (the simple effects differ by less than the margin) is its TOST at margin / 2."""
    return replace(analysis, margin=analysis.margin / 2) if kind == "interaction" else analysis


def exact(counts: dict[str, dict[int, tuple[int, int]]]) -> tuple[dict[str, dict[int, float]], float]:
    """(values, scale) for `contrasts`: the integer counts and 100 / images when every run used the
    same test set, else accuracies in points and 1."""
    sizes = {n for seeds in counts.values() for _, n in seeds.values()}
    if len(sizes) == 1:
        return {v: {s: k for s, (k, _) in seeds.items()} for v, seeds in counts.items()}, 100.0 / sizes.pop()
    return {v: {s: 100.0 * k / n for s, (k, n) in seeds.items()} for v, seeds in counts.items()}, 1.0


def simple_effects(
    design: Design, test_acc: dict[str, dict[int, float]], a: str, b: str, scale: float = 1.0
) -> dict[str, dict[int, float]]:
    """The simple effects behind an interaction a × b of a factorial design, per seed: a's effect
    without b and with b, and b's without a and with a (each the mean over the cells with the
    factor minus those without, at that level of the other, averaged over the remaining factors)."""
    factors = sorted(design.factors)
    cells = [frozenset(c) for r in range(len(factors) + 1) for c in itertools.combinations(factors, r)]
    seeds = _common(test_acc, [cell(c) for c in cells])
    out = {}
    for x, y in ((a, b), (b, a)):
        for has_y in (False, True):
            chosen = [c for c in cells if (y in c) == has_y]
            name = f"{x} {'with' if has_y else 'without'} {y}"
            out[name] = {
                s: scale * sum((1 if x in c else -1) * test_acc[cell(c)][s] for c in chosen) / (len(chosen) / 2)
                for s in seeds
            }
    return out


def interaction_means(
    design: Design, test_acc: dict[str, dict[int, float]], a: str, b: str
) -> dict[tuple[bool, bool], float]:
    """Mean test accuracy (over seeds with every cell, and over the other factors) of each
    combination (with a?, with b?): what an interaction plot shows."""
    factors = sorted(design.factors)
    cells = [frozenset(c) for r in range(len(factors) + 1) for c in itertools.combinations(factors, r)]
    seeds = _common(test_acc, [cell(c) for c in cells])
    out = {}
    for has_a, has_b in itertools.product((False, True), repeat=2):
        chosen = [c for c in cells if (a in c) == has_a and (b in c) == has_b]
        values = [test_acc[cell(c)][s] for c in chosen for s in seeds]
        out[(has_a, has_b)] = sum(values) / len(values) if values else float("nan")
    return out


def _sign(c: frozenset, term: tuple[str, ...]) -> int:
    sign = 1
    for factor in term:
        sign *= 1 if factor in c else -1
    return sign


def _common(test_acc: dict[str, dict[int, float]], variants: list[str]) -> list[int]:
    """The seeds on which every one of `variants` finished."""
    sets = [set(test_acc.get(v, {})) for v in variants]
    return sorted(set.intersection(*sets)) if sets else []
