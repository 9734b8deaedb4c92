"""The report's "Calibration and images" section, from the runs' per-image ledgers
(harness/analysis/images.py): each variant's calibration (NLL, ECE, Brier as its runs logged
them, mean ± sd over seeds), churn and seed ensemble in one table, then per comparison with the
baseline a reliability diagram and a flip table. A store whose runs kept no class probabilities
(recorded before the ledger) gets no section: its report reads as it did."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.analysis import images, stats
from harness.base.escaping import code
from harness.report import evidence
from harness.report.stats_section import fmt, pm, text
from harness.tracking.readback import SeedRun

PATTERN = "reliability-*.png"
CALIBRATION = (("test_nll", 3), ("test_ece", 4), ("test_brier", 4))  # the logged metric, digits shown
TOP_CLASSES = 10  # rows of a flip table before "other classes"


def file_name(i: int, variant: str) -> str:
    return evidence.file_name(i, variant).replace("evidence-", "reliability-", 1)


def section(
    order: list[str],
    baseline: str,
    by_variant: dict[str, list[SeedRun]],
    compared: list[str],
    classes: tuple[str, ...],
    folder: Path,
) -> list[str]:
    """Markdown lines of the section (none when no finished run stored class probabilities);
    writes its figures into `folder`. `compared`: the variants compared with `baseline`."""
    ledgers = {v: [r.predictions for r in by_variant.get(v, []) if r.predictions is not None] for v in order}
    if not any(images.with_probs(g) for gs in ledgers.values() for g in gs):
        return []
    lines = [
        "## Calibration and images",
        "",
        "From each run's ledger (`predictions.npz`: per test image its label, predicted class and class probabilities, "
        "from the selected epoch's weights). NLL: the mean −log probability of the label. ECE: expected calibration "
        "error over 15 equal-width confidence bins, Σ (images in bin / N) · |accuracy − mean confidence|. Brier: the mean "
        "over images of Σ over classes (probability − one-hot)², from 0 to 2. Lower is better for all three; mean ± sd "
        "over seeds. Churn: the mean share of test images on which two seeds of the variant predict different classes. "
        "The seed ensemble averages the seeds' probabilities: a reference for what the seeds reach together, not a "
        "verdict.",
        "",
        "| variant | seeds | NLL | ECE | Brier | churn | ensemble acc | ensemble NLL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in order:
        runs = by_variant.get(v, [])
        cells = [pm(stats.summarize([r.metrics[k] for r in runs if k in r.metrics]), d) for k, d in CALIBRATION]
        churn = images.churn(ledgers[v])
        ens = images.ensemble(ledgers[v]) if len(ledgers[v]) >= 2 else None
        lines.append(
            f"| {text(v)} | {len(runs)} | {' | '.join(cells)} | "
            f"{fmt(100 * churn, 1) + '%' if math.isfinite(churn) else '–'} | "
            f"{fmt(ens[0]) if ens else '–'} | {fmt(ens[1], 3) if ens else '–'} |"
        )
    lines.append("")
    without = sorted(
        f"{code(r.variant)} seed {r.seed}"
        for v in order
        for r in by_variant.get(v, [])
        if not images.with_probs(r.predictions)
    )
    if without:
        lines += [
            f"No class probabilities in the ledgers of {', '.join(without)} (recorded before the ledger kept them): "
            "they count in churn and the flip tables; their variant has no ensemble or reliability diagram, and its "
            "calibration is over its other seeds.",
            "",
        ]
    from harness.report import plots

    for i, v in enumerate(compared, start=1):
        base, mine = ledgers.get(baseline, []), ledgers.get(v, [])
        lines += [f"### {text(v)} against {text(baseline)}: calibration and flips", ""]
        curves = {name: images.reliability(g) for name, g in ((baseline, base), (v, mine))}
        if all(c is not None for c in curves.values()):
            name = file_name(i, v)
            plots.reliability(curves, folder / name)
            lines += [
                f"![reliability: {text(v)} against {text(baseline)}]({name})",
                "",
                "*Accuracy against confidence per bin, every seed's test images pooled; on the dotted diagonal the "
                "confidence is the accuracy. Right: the share of images per bin.*",
                "",
            ]
        if not base or not mine:
            lines += [f"No flip table: {code(baseline if not base else v)} has no per-image ledger.", ""]
            continue
        lines += _flip_table(images.flips(base, mine, len(classes) or _classes(base + mine)), baseline, v, classes)
    return lines


def _classes(ledgers: list[dict]) -> int:
    return int(max(int(g["labels"].max()) for g in ledgers)) + 1 if ledgers else 0


def _flip_table(f: images.Flips | None, baseline: str, v: str, classes: tuple[str, ...]) -> list[str]:
    if f is None:
        return ["No flip table: the two variants' ledgers are not of one test set.", ""]
    names = list(classes) or [str(c) for c in range(len(f.fixed))]
    lines = [
        f"Flip table: the {f.images:,} test images that {code(v)} gets right on most of its {f.seeds[1]} seed(s) and "
        f"{code(baseline)} does not on most of its {f.seeds[0]} (fixed), and the reverse (broken), by true class "
        f"(a tie counts as not right). {int(f.fixed.sum())} fixed, {int(f.broken.sum())} broken.",
        "",
        f"| class | fixed by {code(v)} | broken by {code(v)} | net |",
        "|---|---|---|---|",
    ]
    order = sorted(range(len(names)), key=lambda c: (-(f.fixed[c] + f.broken[c]), c))
    shown = [c for c in order if f.fixed[c] + f.broken[c] > 0][:TOP_CLASSES]
    for c in shown:
        lines.append(f"| {text(names[c])} | {f.fixed[c]} | {f.broken[c]} | {int(f.fixed[c]) - int(f.broken[c]):+d} |")
    rest = [c for c in range(len(names)) if c not in shown]
    if rest and any(f.fixed[c] + f.broken[c] for c in rest):
        fixed, broken = int(np.sum(f.fixed[rest])), int(np.sum(f.broken[rest]))
        lines.append(f"| {len(rest)} other classes | {fixed} | {broken} | {fixed - broken:+d} |")
    lines.append(
        f"| **all** | {int(f.fixed.sum())} | {int(f.broken.sum())} | {int(f.fixed.sum() - f.broken.sum()):+d} |"
    )
    return lines + [""]
