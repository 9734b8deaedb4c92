"""The report of a variance design: its answer (which source's variance is largest, whether a test
shows it dominates, and what that means for the next experiment) and the *Sources of variation*
section: each source's variance with its interval, its per-image part and its share as a table
and a bar plot, and whether the sources add. The numbers are harness/analysis/variance.py's."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.analysis import variance
from harness.analysis.variance import Decomposition
from harness.base.escaping import code
from harness.report import comparisons
from harness.report.glossary import link
from harness.report.stats_section import fmt, text
from harness.settings import designs
from harness.settings.designs import Design

FIGURE_PREFIX = "variance-"  # variance-{i}.png, one per decomposed variant


def decompositions(
    design: Design,
    counts: dict[str, dict[int, tuple[int, int]]],
    confidence: float = 0.95,
    right: dict[str, dict[int, np.ndarray]] | None = None,
) -> list[Decomposition]:
    """One decomposition per variant of the design whose `v@all` runs finished, from test counts,
    over the design's sources and any other source whose runs the store holds (a later, narrower
    design over the same runs must not hide a source that was measured). `right`: each run's right
    or wrong per test image (comparisons.right), for the per-image part of each variance."""
    held = {designs.split_source(v)[1] for v in counts}
    sources = tuple(s for s in designs.VARIANCE_SOURCES if s in design.factors or s in held)
    right = right or {}
    groups: dict[str, dict[str | None, list[float]]] = {}  # variant -> source -> its runs' test accuracies
    images: dict[str, dict[str | None, np.ndarray]] = {}  # variant -> source -> its runs × images, right or wrong
    for name, by_seed in comparisons.accuracy(counts).items():
        base, source = designs.split_source(name)
        groups.setdefault(base, {})[source] = list(by_seed.values())
        stored = right.get(name, {})
        if all(s in stored for s in by_seed) and len({stored[s].shape for s in by_seed}) == 1:
            images.setdefault(base, {})[source] = np.stack([stored[s] for s in by_seed])
    out = []
    for base, acc in groups.items():
        if designs.ALL not in acc:
            continue
        n_images = next(iter(counts[f"{base}@{designs.ALL}"].values()))[1]
        skip = tuple(s for s in design.skipped_for(base) if s not in acc)  # runs held are decomposed
        out.append(variance.decompose(base, acc, n_images, sources, confidence, images.get(base), skip))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "–"


def meaning(d: Decomposition) -> str:
    """Which source's variance is largest, whether the F test shows that it dominates, and what
    that says about the next experiment."""
    top, test = d.largest, d.dominance
    if not top:
        return "too few finished runs, or no spread, to tell where the noise comes from."
    share = _pct(d.shares[top])
    if test is None:
        return f"{code(top)} is the only source measured ({share}); nothing to rank it against."
    f = f"F = {test.f:.2f}" if math.isfinite(test.f) else "F = ∞ (the next has no spread)"
    against = f"against {code(test.runner_up)}: {f}, df {test.df[0]}, {test.df[1]}, two-sided p = {_p(test.p)}"
    if d.dominant:
        return (
            f"the {code(top)} source dominates ({share} of the sources' summed variance; {against}): comparisons should "
            f"vary {code(top)} with the seed, as the default does; pinning it would hide this spread, not remove it."
        )
    return (
        f"the largest estimate is {code(top)} ({share} of the sources' summed variance), but the F test of the two largest "
        f"({against}) does not show that it dominates at α = {d.alpha:g}: these runs per source do not show which "
        "source is largest. More seeds per source narrow every variance's interval."
    )


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def answer(found: list[Decomposition]) -> list[str]:
    lines = ["## Answer", ""]
    if not found:
        return lines + ["No variant of this variance design has finished runs varying all its sources yet.", ""]
    for d in found:
        lines.append(f"- **{text(d.variant)}**: {meaning(d)}")
    return lines + [""]


def additivity(d: Decomposition) -> str:
    """The additivity sentence: the ratio, its interval and the label it supports."""
    a = d.additivity
    if not math.isfinite(a.ratio):
        return ""
    level = f"{round((1 - d.alpha) * 100)}%"
    shown = f"[{a.low:.2f}, {a.high:.2f}]" if math.isfinite(a.low) else "no interval: the sources have no spread"
    said = {
        "close": f"within {variance.ADDITIVE[0]:g}–{variance.ADDITIVE[1]:g}: close to additive",
        "interact": "it excludes 1: the sources interact (they do not add)",
        "unclear": "too few runs to tell whether the sources add",
    }[a.label]
    return (
        f"The one-at-a-time variances sum to {a.ratio:.2f}× the all-sources variance ({level} interval {shown}; "
        f"{said})."
    )


def section(found: list[Decomposition], folder: Path, design: Design, confidence: float = 0.95) -> list[str]:
    """The markdown lines of *Sources of variation*; writes one bar plot per variant into `folder`."""
    level = f"{round(confidence * 100)}%"
    lines = [
        "## Sources of variation",
        "",
        f"Each source was varied alone over the seeds, the other sources pinned to one seed no run varies, and then all "
        f"together (`@all`); the {link('source-variance', 'variance')} of test accuracy (points²) each produced, with its "
        f"exact chi-square {level} interval, and its {link('per-image', 'per-image part')}: the variance independent "
        f"per-image flips would give, from the runs' stored predictions. The share is of the sources' variances summed. A "
        f"source is *dominant* only when the two-sided F test of the two largest variances says so at α = {1 - confidence:g}. "
        f"Sources: {', '.join(f'{code(c.source)}' for c in found[0].components) if found else '–'}.",
        "",
    ]
    for i, d in enumerate(found, 1):
        lines += [
            f"### {text(d.variant)}",
            "",
            f"| source | runs | mean test acc | variance (points²) | {level} interval | sd (points) | share | per-image part |",
            "|---|---|---|---|---|---|---|---|",
        ]
        shares = d.shares
        for c in d.components:
            if c.skipped:
                lines.append(
                    f"| {code(c.source)} (skipped: {text(d.variant)} draws nothing from it) | 0 | – | 0 (exactly) | – | 0 | 0% | – |"
                )
                continue
            note = " (no spread: every run scored the same)" if c.variance == 0 else ""
            lines.append(
                f"| {code(c.source)}{note} | {c.n} | {fmt(c.mean)} | {_var(c.variance)} | {_interval(c)} | {fmt(c.sd)} | "
                f"{_pct(shares[c.source])} | {_image(c)} |"
            )
        t = d.total
        lines.append(
            f"| all sources together | {t.n} | {fmt(t.mean)} | {_var(t.variance)} | {_interval(t)} | {fmt(t.sd)} | – | {_image(t)} |"
        )
        said = meaning(d)
        lines += ["", f"{said[:1].upper()}{said[1:]} {additivity(d)}".rstrip(), ""]
        name = f"{FIGURE_PREFIX}{i}.png"
        rows = [(c.source, c.variance, c.low, c.high) for c in d.components if not c.skipped]
        from harness.report import plots  # drawn only when a report is written

        plots.variance_bars(rows, f"{d.variant}: spread of test accuracy by source", folder / name)
        lines += [f"![Sources of variation of {text(d.variant)}]({name})", ""]
    return lines


def _image(c: variance.Component) -> str:
    """The per-image part and its share of the variance."""
    if not math.isfinite(c.per_image):
        return "–"
    of = f" ({_pct(c.per_image / c.variance)} of it)" if c.variance > 0 else ""
    return f"{_var(c.per_image)}{of}"


def figures(folder: Path) -> tuple[str, ...]:
    """The section's figure names present in `folder` (so an unlinked one is removed)."""
    return tuple(p.name for p in folder.glob(f"{FIGURE_PREFIX}*.png"))


def _var(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "–"


def _interval(c: variance.Component) -> str:
    return f"[{_var(c.low)}, {_var(c.high)}]" if math.isfinite(c.low) else "–"
