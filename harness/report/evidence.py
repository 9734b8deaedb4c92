"""The report's evidence: one figure per comparison with the baseline, with its numbers in the
caption: each seed's paired difference, the interval that decided the verdict against zero and
±margin, both learning curves, and each variant's seed spread beside its test-set floor.

The test-set floor is the binomial standard deviation of an accuracy p measured on n images,
100 · √(p(1 − p)/n) points: what a finite test set alone contributes, whatever the seeds.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.analysis import stats
from harness.report.comparisons import Comparison
from harness.report.glossary import link
from harness.report.stats_section import ci, fmt, signed

PATTERN = "evidence-*.png"


def floor(accuracy: float, images: int) -> float:
    """The binomial sd (points) of an accuracy (points) measured on `images` test images."""
    q = accuracy / 100.0
    return 100.0 * math.sqrt(q * (1.0 - q) / images) if images and 0.0 <= q <= 1.0 else math.nan


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "variant"


def file_name(i: int, variant: str) -> str:
    return f"evidence-{i}-{_slug(variant)}.png"


def _spread(seeds: dict[int, tuple[int, int]]) -> tuple[float, float, int]:
    """(seed sd, test-set floor at the mean accuracy, test images) of one variant's counts."""
    acc = [100.0 * k / n for k, n in seeds.values()]
    images = next(iter(seeds.values()))[1] if seeds else 0
    s = stats.summarize(acc)
    return s.std, floor(s.mean, images), images


def section(comparisons: dict[str, Comparison], baseline: str, counts: dict[str, dict[int, tuple[int, int]]],
            curves: pd.DataFrame, analysis: stats.Analysis, sequential: dict[str, tuple[float, float, str]], folder: Path) -> list[str]:
    """Markdown lines of "Evidence" (none when nothing is comparable); writes its figures into
    `folder`. `sequential`: the seeds-on-demand interval of the variants that rule decided."""
    from harness.report import plots

    shown = {v: c for v, c in comparisons.items() if c.test is not None and c.test.n >= 1}
    if not shown:
        return []
    margin = analysis.margin
    lines = ["## Evidence", "",
             f"One figure per comparison with `{baseline}`. Top left: the paired difference on each seed (variant minus baseline, "
             f"points), with zero and ±{fmt(margin)} ({link('tost', 'the margin')}) as lines. Top right: the interval that decided "
             f"the {link('verdict', 'verdict')} (thick) and the {link('intervals', 'simultaneous')} one (thin) around Δ. Bottom left: "
             "mean validation (solid) and training (dashed) accuracy of both. Bottom right: each variant's seed standard deviation "
             f"of test accuracy beside its {link('floor', 'test-set floor')}.", ""]
    base_sd, base_floor, images = _spread(counts.get(baseline, {}))
    for i, (v, c) in enumerate(shown.items(), start=1):
        t = c.test
        d = stats.count_differences(counts.get(baseline, {}), counts.get(v, {}))
        low, high, text = sequential.get(v) or (t.ci_low, t.ci_high, f"95% CI {ci(t.ci_low, t.ci_high)}")
        sd, fl, _ = _spread(counts.get(v, {}))
        panel = {"baseline": baseline, "variant": v, "seeds": list(d), "diffs": list(d.values()), "delta": t.diff_mean,
                 "low": low, "high": high, "sim_low": t.sim_low, "sim_high": t.sim_high, "interval": text, "verdict": t.verdict or "no verdict",
                 "margin": margin, "curves": curves[curves["variant"].isin([baseline, v])] if len(curves) else curves,
                 "spread": {baseline: (_zero(base_sd), _zero(base_floor)), v: (_zero(sd), _zero(fl))}}
        name = file_name(i, v)
        plots.evidence(panel, folder / name)
        per_seed = ", ".join(f"{s}: {signed(x)}" for s, x in d.items())
        lines += [f"### {v} against {baseline}", "", f"![evidence: {v} against {baseline}]({name})", "",
                  f"*Per seed ({per_seed}); Δ {signed(t.diff_mean)}, {text}, simultaneous {ci(t.sim_low, t.sim_high)}: "
                  f"**{t.verdict or 'no verdict'}**. Seed sd {fmt(base_sd)} (`{baseline}`) and {fmt(sd)} (`{v}`) against a "
                  f"test-set floor of {fmt(base_floor)} and {fmt(fl)} points ({images:,} test images).*", ""]
    return lines


def _zero(x: float) -> float:
    """A bar's height: nothing is drawn for an undefined value (one seed)."""
    return x if math.isfinite(x) else 0.0
