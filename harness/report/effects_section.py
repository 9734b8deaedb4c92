"""The report's "Effects" section for a factorial or leave-one-out design: the effects table, a
forest plot of the effects with their intervals and, for a factorial design, an interaction plot
of the largest interaction. The numbers are harness/analysis/effects.py's."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.analysis import effects, stats
from harness.base.escaping import code
from harness.report.glossary import link
from harness.report.stats_section import fmt, signed, text
from harness.report.stats_section import p as p_fmt
from harness.settings import designs
from harness.settings.designs import Design

FIGURES = ("effects_forest.png", "effects_interaction.png")
VERDICT = {"better": "raises accuracy", "worse": "lowers accuracy", "equivalent": "no effect beyond the margin"}
# An interaction does not raise or lower accuracy: it says whether the two effects add.
INTERACTION = {
    "better": "effects do not add: each does more with the other",
    "worse": "effects do not add: each does less with the other",
    "equivalent": "effects add (the simple effects differ by less than the margin)",
}


def words(kind: str, verdict: str) -> str:
    return (INTERACTION if kind == "interaction" else VERDICT).get(verdict, verdict)


def section(
    design: Design,
    counts: dict[str, dict[int, tuple[int, int]]],
    folder: Path,
    analysis: stats.Analysis = stats.Analysis(),
    found: list[effects.Effect] | None = None,
) -> list[str]:
    """Markdown lines of the section (none for a list design); writes its figures into `folder`.
    `found`: the design's effects when the caller has analysed them already."""
    if design.kind not in designs.CELLS:
        return []
    found = effects.analyse(design, counts, analysis) if found is None else found
    test_acc = {v: {s: 100.0 * k / n for s, (k, n) in seeds.items()} for v, seeds in counts.items()}
    what = "factorial" if design.kind == "factorial" else "leave-one-out"
    lines = [
        "## Effects",
        "",
        f"The {link('effects', what + ' effects')}, {len(found)} of them, tested as the {link('effect-tests', 'effect tests')} say.",
        "",
        f"| effect | kind | seeds | mean (points) | 95% CI | {link('verdict', 'verdict')} |",
        "|---|---|---|---|---|---|",
    ]
    tests = [
        "",
        f"| effect | {link('t', 't-test p')} | {link('permutation', 'permutation p')} | {link('holm', 'Holm p')} | "
        f"{link('tost', 'TOST Holm p')} |",
        "|---|---|---|---|---|",
    ]
    resolved = [e for e in found if e.kind == "interaction" and e.test.verdict in ("better", "worse")]
    unshown = [e for e in found if e.kind == "interaction" and e.test.verdict != "equivalent"]  # simple effects shown
    depends = {
        x: [e.name.split(" × ")[1 - i] for e in resolved for i, y in enumerate(e.name.split(" × ")) if y == x]
        for x in design.factors
    }
    for e in found:
        t = e.test
        ci = f"[{fmt(t.ci_low)}, {fmt(t.ci_high)}]" if math.isfinite(t.ci_low) else "–"
        said = words(e.kind, t.verdict)
        if e.kind == "main" and depends.get(e.name):
            said += f"; depends on {', '.join(f'{code(x)}' for x in depends[e.name])}: see the simple effects below"
        lines.append(f"| {text(e.name)} | {e.kind} | {t.n} | {signed(t.diff_mean)} | {ci} | {said} |")
        tests.append(
            f"| {text(e.name)} | {p_fmt(t.t_p)} | {p_fmt(t.perm_p)} | {p_fmt(t.p_holm)} | {p_fmt(t.tost_holm)} |"
        )
    lines += tests + [""]
    if unshown:
        values, scale = effects.exact(counts)
        lines += [
            "Where an interaction is not shown to be within the margin, a main effect may average over effects that "
            "differ, so it is not the answer on its own: the simple effects below give each factor's effect without and "
            "with the other (mean over seeds, points, with the 95% t interval; descriptive, outside the Holm family "
            f"above). An interaction is {link('tost', 'equivalent')} when the simple effects differ by less than the "
            f"margin ±{fmt(analysis.margin)}: its contrast, half that difference, within ±{fmt(analysis.margin / 2)}.",
            "",
            "| interaction | simple effect | seeds | mean (points) | 95% CI |",
            "|---|---|---|---|---|",
        ]
        for e in unshown:
            a, b = e.name.split(" × ")
            for name, per_seed in effects.simple_effects(design, values, a, b, scale).items():
                t = stats.differences(per_seed, analysis)
                ci = f"[{fmt(t.ci_low)}, {fmt(t.ci_high)}]" if math.isfinite(t.ci_low) else "–"
                lines.append(f"| {text(e.name)} | {text(name)} | {t.n} | {signed(t.diff_mean)} | {ci} |")
        lines.append("")
    rows = pd.DataFrame(
        [
            {"label": e.name, "diff": e.test.diff_mean, "ci_low": e.test.ci_low, "ci_high": e.test.ci_high}
            for e in found
            if e.test.n >= 1
        ]
    )
    if len(rows):
        from harness.report import plots  # drawn only when a report is written: `export` never imports seaborn

        plots.forest(rows, "effect on test accuracy (points, 95% CI, paired by seed)", folder / FIGURES[0])
        lines += [
            f"![effects]({FIGURES[0]})",
            "",
            "*Each effect with its 95% confidence interval: an interval that excludes "
            "zero is an effect the seeds resolve before correction (the Holm p in the table decides); one that crosses zero "
            "is inconclusive, not evidence of no effect.*",
            "",
        ]
    pairs = [e for e in found if e.kind == "interaction" and math.isfinite(e.test.diff_mean)]
    if pairs:
        top = max(pairs, key=lambda e: abs(e.test.diff_mean))
        a, b = top.name.split(" × ")
        from harness.report import plots

        plots.interaction(effects.interaction_means(design, test_acc, a, b), a, b, folder / FIGURES[1])
        lines += [
            f"![interaction]({FIGURES[1]})",
            "",
            f"*The largest interaction, {top.name}: mean test accuracy without and "
            f"with {code(a)}, for the cells without and with {code(b)} (averaged over the other factors and the seeds). Parallel lines "
            "would mean no interaction.*",
            "",
        ]
    return lines


def metrics(
    design: Design, counts: dict[str, dict[int, tuple[int, int]]], analysis: stats.Analysis = stats.Analysis()
) -> dict[str, float]:
    """The effects as MLflow metrics: effect.NAME (mean), .ci_low, .ci_high, .p_holm, .seeds."""
    out = {}
    for e in effects.analyse(design, counts, analysis):
        key = "effect." + e.name.replace(" × ", "_x_").replace(" − ", "_minus_")
        t = e.test
        out.update(
            {
                key: t.diff_mean,
                f"{key}.ci_low": t.ci_low,
                f"{key}.ci_high": t.ci_high,
                f"{key}.p_holm": t.p_holm,
                f"{key}.seeds": float(t.n),
            }
        )
    return out
