"""The report of a variance design: its answer (which source dominates each variant's noise, and
what that means for the next experiment) and the *Sources of variation* section: each source's
variance with its interval, the test-set floor, their shares as a table and a bar plot. The
numbers are harness/analysis/variance.py's."""

from __future__ import annotations

import math
from pathlib import Path

from harness.analysis import variance
from harness.analysis.variance import TEST_SET, Decomposition
from harness.base.escaping import code
from harness.report import comparisons
from harness.report.glossary import link
from harness.report.stats_section import fmt, text
from harness.settings import designs
from harness.settings.designs import Design

FIGURE_PREFIX = "variance-"  # variance-{i}.png, one per decomposed variant


def decompositions(
    design: Design, counts: dict[str, dict[int, tuple[int, int]]], confidence: float = 0.95
) -> list[Decomposition]:
    """One decomposition per variant of the design whose `v@all` runs finished, from test counts,
    over the design's sources and any other source whose runs the store holds (a later, narrower
    design over the same runs must not hide a source that was measured)."""
    held = {designs.split_source(v)[1] for v in counts}
    sources = tuple(s for s in designs.VARIANCE_SOURCES if s in design.factors or s in held)
    groups: dict[str, dict[str | None, list[float]]] = {}  # variant -> source -> its runs' test accuracies
    for name, by_seed in comparisons.accuracy(counts).items():
        base, source = designs.split_source(name)
        groups.setdefault(base, {})[source] = list(by_seed.values())
    out = []
    for base, acc in groups.items():
        if designs.ALL not in acc:
            continue
        images = next(iter(counts[f"{base}@{designs.ALL}"].values()))[1]
        out.append(variance.decompose(base, acc, images, sources, confidence))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "–"


def meaning(d: Decomposition) -> str:
    """What the dominant part says about narrowing this variant's interval."""
    top = d.dominant
    if not top:
        return "too few finished runs to tell which source dominates."
    share = _pct(d.shares[top])
    if top == TEST_SET:
        return (
            f"the finite test set dominates ({share} of the variance, {d.images:,} test images): more seeds will not narrow "
            "its interval much; a larger test set, or the paired per-image analysis (the bootstrap over seeds × test images), will."
        )
    return (
        f"the {code(top)} source dominates ({share}): more seeds narrow the interval (its width falls as 1/√seeds), and "
        f"comparisons should vary {code(top)} with the seed, as the default does; pinning it would hide this spread, not remove it."
    )


def answer(found: list[Decomposition]) -> list[str]:
    lines = ["## Answer", ""]
    if not found:
        return lines + ["No variant of this variance design has finished runs varying all its sources yet.", ""]
    for d in found:
        lines.append(f"- **{text(d.variant)}**: {meaning(d)}")
    return lines + [""]


def section(found: list[Decomposition], folder: Path, design: Design, confidence: float = 0.95) -> list[str]:
    """The markdown lines of *Sources of variation*; writes one bar plot per variant into `folder`."""
    level = f"{round(confidence * 100)}%"
    lines = [
        "## Sources of variation",
        "",
        f"Each source was varied alone over the seeds, the other sources pinned to the first seed, and then all together "
        f"(`@all`); the {link('source-variance', 'variance')} of test accuracy (points²) each produced, with its exact "
        f"chi-square {level} interval, beside the {link('floor', 'test-set floor')} p(1 − p)/n. The share is of the sources' "
        f"variances and the floor summed. Sources: {', '.join(f'{code(c.source)}' for c in found[0].components) if found else '–'}.",
        "",
    ]
    for i, d in enumerate(found, 1):
        lines += [
            f"### {text(d.variant)}",
            "",
            f"| source | runs | mean test acc | variance (points²) | {level} interval | sd (points) | share |",
            "|---|---|---|---|---|---|---|",
        ]
        shares = d.shares
        for c in d.components:
            note = " (no spread: every run scored the same)" if c.variance == 0 else ""
            lines.append(
                f"| {code(c.source)}{note} | {c.n} | {fmt(c.mean)} | {_var(c.variance)} | {_interval(c)} | {fmt(c.sd)} | "
                f"{_pct(shares[c.source])} |"
            )
        lines.append(
            f"| {TEST_SET} (floor, {d.images:,} images) | – | – | {_var(d.floor)} | – (binomial) | "
            f"{fmt(math.sqrt(d.floor)) if math.isfinite(d.floor) else '–'} | {_pct(shares[TEST_SET])} |"
        )
        t = d.total
        lines.append(
            f"| all sources together | {t.n} | {fmt(t.mean)} | {_var(t.variance)} | {_interval(t)} | {fmt(t.sd)} | – |"
        )
        add, said = d.additivity, meaning(d)
        lines += [
            "",
            f"{said[:1].upper()}{said[1:]} "
            + (
                f"The one-at-a-time variances sum to {add:.2f}× the all-sources variance "
                f"({'close to additive' if 0.5 <= add <= 2 else 'far from additive: the sources interact, or the runs are too few to tell'})."
                if math.isfinite(add)
                else ""
            ),
            "",
        ]
        name = f"{FIGURE_PREFIX}{i}.png"
        rows = [(c.source, c.variance, c.low, c.high) for c in d.components] + [(TEST_SET, d.floor, d.floor, d.floor)]
        from harness.report import plots  # drawn only when a report is written

        plots.variance_bars(rows, f"{d.variant}: spread of test accuracy by source", folder / name)
        lines += [f"![Sources of variation of {text(d.variant)}]({name})", ""]
    return lines


def figures(folder: Path) -> tuple[str, ...]:
    """The section's figure names present in `folder` (so an unlinked one is removed)."""
    return tuple(p.name for p in folder.glob(f"{FIGURE_PREFIX}*.png"))


def _var(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "–"


def _interval(c: variance.Component) -> str:
    return f"[{_var(c.low)}, {_var(c.high)}]" if math.isfinite(c.low) else "–"
