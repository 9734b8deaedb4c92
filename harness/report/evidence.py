"""The report's evidence: one figure per comparison with the baseline, with its numbers in the
caption: each seed's paired difference, the interval that decided the verdict against zero and
±margin, both learning curves, and each variant's seed spread beside its test-set floor.

The test-set floor is `stats.test_set_floor`: the binomial standard deviation of an accuracy p
measured on n images, 100 · √(p(1 − p)/n) points.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.analysis import stats
from harness.base.escaping import code
from harness.report.comparisons import Comparison
from harness.report.glossary import link
from harness.report.sequential_section import Decision
from harness.report.stats_section import ci, fmt, signed, text

PATTERN = "evidence-*.png"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "variant"


def file_name(i: int, variant: str) -> str:
    return f"evidence-{i}-{_slug(variant)}.png"


def spread(seeds: dict[int, tuple[int, int]]) -> tuple[float, float, int]:
    """(seed sd, test-set floor at the mean accuracy, test images) of one variant's counts."""
    acc = [100.0 * k / n for k, n in seeds.values()]
    images = next(iter(seeds.values()))[1] if seeds else 0
    s = stats.summarize(acc)
    return s.std, stats.test_set_floor(s.mean, images), images


def section(
    comparisons: dict[str, Comparison],
    baseline: str,
    counts: dict[str, dict[int, tuple[int, int]]],
    curves: pd.DataFrame,
    analysis: stats.Analysis,
    rules: dict[str, Decision],
    folder: Path,
) -> list[str]:
    """Markdown lines of "Evidence" (none when nothing is comparable); writes its figures into
    `folder`. `rules`: the seeds-on-demand decision of the variants that rule decided."""
    from harness.report import plots

    shown = {v: c for v, c in comparisons.items() if c.test is not None and c.test.n >= 1}
    if not shown:
        return []
    margin = analysis.margin
    lines = [
        "## Evidence",
        "",
        f"One figure per comparison with {code(baseline)}. Top left: the paired difference on each seed (variant minus baseline, "
        f"points), with zero and ±{fmt(margin)} ({link('tost', 'the margin')}) as lines. Top right: the interval that decided "
        f"the {link('verdict', 'verdict')} (thick) and the {link('intervals', 'simultaneous')} one (thin) around Δ. Bottom left: "
        "mean validation (solid) and training (dashed) accuracy of both. Bottom right: each variant's seed standard deviation "
        f"of test accuracy beside its {link('floor', 'test-set floor')}.",
        "",
    ]
    base_sd, base_floor, images = spread(counts.get(baseline, {}))
    for i, (v, c) in enumerate(shown.items(), start=1):
        t = c.test
        d = stats.count_differences(counts.get(baseline, {}), counts.get(v, {}))
        rule = rules.get(v)
        if rule is not None:
            low, high, interval = rule.low, rule.high, rule.text
            verdict = "open" if rule.still_open else t.verdict
            at = f"Δ {signed(rule.mean)} at the deciding look ({rule.n} pairs; {signed(t.diff_mean)} over all {t.n})"
        else:
            low, high, interval, verdict = t.ci_low, t.ci_high, f"95% CI {ci(t.ci_low, t.ci_high)}", t.verdict
            if t.verdict == "equivalent" and math.isfinite(t.eq_low):  # the interval that decided it
                low, high = t.eq_low, t.eq_high
                interval = f"{100 * t.eq_confidence:.3g}% equivalence interval {ci(low, high)}"
            at = f"Δ {signed(t.diff_mean)}"
        sd, fl, _ = spread(counts.get(v, {}))
        panel = {
            "baseline": baseline,
            "variant": v,
            "seeds": list(d),
            "diffs": list(d.values()),
            "delta": rule.mean if rule else t.diff_mean,
            "low": low,
            "high": high,
            "sim_low": t.sim_low,
            "sim_high": t.sim_high,
            "interval": interval,
            "verdict": verdict,
            "margin": margin,
            "curves": curves[curves["variant"].isin([baseline, v])] if len(curves) else curves,
            "spread": {baseline: (_zero(base_sd), _zero(base_floor)), v: (_zero(sd), _zero(fl))},
        }
        name = file_name(i, v)
        plots.evidence(panel, folder / name)
        per_seed = ", ".join(f"{s}: {signed(x)}" for s, x in d.items())
        lines += [
            f"### {text(v)} against {text(baseline)}",
            "",
            f"![evidence: {text(v)} against {text(baseline)}]({name})",
            "",
            f"*Per seed ({per_seed}); {at}, {interval}, simultaneous {ci(t.sim_low, t.sim_high)}: "
            f"**{verdict}**. Seed sd {fmt(base_sd)} ({code(baseline)}) and {fmt(sd)} ({code(v)}) against a "
            f"test-set floor of {fmt(base_floor)} and {fmt(fl)} points ({images:,} test images).*",
            "",
        ]
    return lines


def _zero(x: float) -> float:
    """A bar's height: nothing is drawn for an undefined value (one seed)."""
    return x if math.isfinite(x) else 0.0
