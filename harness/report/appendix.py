"""The report's closing sections, after the statistics: per-class results, the runs that did not
finish, what `tune` wrote, and how the report was made (commands, commit, data, packages)."""

from __future__ import annotations

from pathlib import Path

from harness.base import credentials
from harness.base.escaping import code
from harness.report.stats_section import text
from harness.settings import checks
from harness.tracking import names
from harness.tracking.readback import SeedRun

ENV_KEYS = ("torch", "cuda", "cudnn", "device", "threads", "cudnn_deterministic", "deterministic_algorithms")
FAILURES_ANCHOR = "r-failures"
PER_TABLE = 7  # variants per per-class table: with the class column, 8 columns at most


def per_class(order, by_variant, classes) -> list[str]:
    """Precision / recall / F1 per class and variant, at most PER_TABLE variants to a table."""
    from harness.training.evaluation import per_class as scores_of

    lines = [
        "## Per-class results (test set)",
        "",
        "Precision / recall / F1 (%) per class, from each variant's confusion matrix summed over its seeds.",
        "",
    ]
    variants = [v for v in order if any(_has_matrix(r, classes) for r in by_variant[v])]
    if not variants:
        return lines + [f"No finished run has a readable confusion matrix ({names.CONFUSION}).", ""]
    summed = {v: sum(1 for r in by_variant[v] if _has_matrix(r, classes)) for v in variants}
    short = [
        f"{code(v)} from {summed[v]} of its {len(by_variant[v])} finished seeds"
        for v in variants
        if summed[v] < len(by_variant[v])
    ]
    if short:
        lines += [
            f"> **Note:** confusion matrices are missing from the store (or unreadable) for some runs, so these are summed over fewer seeds: "
            f"{'; '.join(short)}.",
            "",
        ]
    scores = {v: scores_of(sum(r.confusion for r in by_variant[v] if _has_matrix(r, classes))) for v in variants}
    for start in range(0, len(variants), PER_TABLE):
        chunk = variants[start : start + PER_TABLE]
        lines += ["| class | " + " | ".join(map(text, chunk)) + " |", "|---|" + "---|" * len(chunk)]
        for i, name in enumerate(classes):
            cells = [
                f"{100 * s['precision'][i]:.1f} / {100 * s['recall'][i]:.1f} / {100 * s['f1'][i]:.1f}"
                for s in (scores[v] for v in chunk)
            ]
            lines.append(f"| {text(name)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def failures(runs: list[SeedRun]) -> list[str]:
    bad = [r for r in runs if r.status != "FINISHED"]
    if not bad:
        return []
    lines = [
        f'## <a id="{FAILURES_ANCHOR}"></a>Runs that did not finish',
        "",
        "They are left out of every number above.",
        "",
        "| variant | seed | state | reason |",
        "|---|---|---|---|",
    ]
    for r in bad:
        reason = text(r.tags.get(names.ERROR_TAG, ""))
        lines.append(f"| {text(r.variant)} | {r.seed} | {r.status} | {reason or '–'} |")
    return lines + [""]


def tuning(folder: Path) -> list[str]:
    """The sections `tune` wrote into `tuning/`, one per tuned variant."""
    sections = sorted((folder / "tuning").glob("*.md"))
    if not sections:
        return []
    lines = [
        "## Tuning",
        "",
        "Each variant's search used validation accuracy only; "
        "`python -m harness run --tuned` reruns the tuned variants over several seeds for the comparison above.",
        "",
    ]
    for path in sections:
        lines += path.read_text(encoding="utf-8").rstrip().splitlines() + [""]
    return lines


def _has_matrix(run: SeedRun, classes: tuple[str, ...]) -> bool:
    return bool(classes) and run.classes == classes and run.confusion is not None


def provenance(runs: list[SeedRun]) -> list[str]:
    latest = max(runs, key=lambda r: r.start_time)
    t = latest.tags
    lines = ["## How it was made", ""]
    commands = sorted({credentials.mask(r.tags.get(names.COMMAND_TAG, "")) for r in runs} - {""})
    # a code block: one line each, shown as written + [""]
    lines += ["Command(s):", ""] + [f"    {' '.join(c.split())}" for c in commands]
    commits = sorted({r.tags.get(names.COMMIT_TAG, "") or "not in git" for r in runs})
    lines.append(f"- git commit: {text(', '.join(commits))}")
    lines.append(
        f"- data (dataset:content hash): {text(', '.join(sorted({r.tags.get(names.DATASET_TAG, '?') for r in runs})))}"
    )
    fingerprints = sorted({r.tags.get(names.SPLIT_TAG, "?") for r in runs})
    per_seed = any(r.params.get("data.split_seed") == "per_seed" for r in runs)
    lines.append(
        f"- split fingerprint: {text(', '.join(fingerprints))}"
        + (" (a split per seed, the same for every variant of a seed)" if per_seed else "")
    )
    lines.append(f"- device: {text(', '.join(sorted({r.tags.get(names.DEVICE_TAG, '?') for r in runs})))}")
    env = ", ".join(
        f"{k} {', '.join(sorted({r.tags.get(names.ENV_PREFIX + k, '?') for r in runs}))}"
        for k in ENV_KEYS
        if k != "device"
    )
    lines.append(f"- determinism: {text(env)}")
    versions = sorted(k for k in t if k.startswith(names.VERSION_PREFIX))
    lines.append("- packages: " + text(", ".join(f"{k.split('.')[-1]} {t[k]}" for k in versions)))
    lines.append(
        f"- rebuild: `python -m harness report {checks.experiment_flag(t.get(names.EXPERIMENT_TAG, '?'))}` (reads the MLflow store only)"
    )
    return lines
