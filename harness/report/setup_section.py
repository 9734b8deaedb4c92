"""What was compared, so the report can be read on its own: the training settings every run shares
and, per variant, what it changes from the tutorial (as `list` prints it), the settings it runs
with that differ from the baseline's (tuned or set per variant), its hypothesis and its MLflow
parent run (tests/report/test_report.py::test_the_report_says_what_each_variant_changes_and_how_every_run_trained)."""

from __future__ import annotations

from harness.base.escaping import code
from harness.report.stats_section import text
from harness.tracking import names
from harness.tracking.readback import SeedRun

# the settings line, in this order: (param, how the line names it)
SETTINGS = (
    ("train.epochs", "epochs"),
    ("train.batch_size", "batch size"),
    ("train.lr", "learning rate"),
    ("train.weight_decay", "weight decay"),
    ("train.precision", "precision"),
    ("train.select", "selected by"),
)
_SAME_FOR_ALL = ("experiment", "variant", "seed")


def section(runs: list[SeedRun], order: list[str], baseline: str) -> list[str]:
    if not runs:
        return []
    finished = [r for r in runs if r.status == "FINISHED"] or runs
    reference = next((r for r in finished if r.variant == baseline), finished[0])
    shared = [f"{label} {text(reference.params[key])}" for key, label in SETTINGS if key in reference.params]
    devices = sorted({r.tags.get(names.DEVICE_TAG, "") for r in runs} - {""})
    lines = [
        "## What was compared",
        "",
        f"The runs of {code(reference.variant)} trained with {', '.join(shared) or 'the settings of its config.toml'}"
        + (f", on {text(', '.join(devices))}" if devices else "")
        + ". The optimizer is Adam unless a variant replaces it (below).",
        "",
        "| variant | what it changes | settings unlike the baseline's | hypothesis | MLflow parent run |",
        "|---|---|---|---|---|",
    ]
    for v in order:
        mine = [r for r in runs if r.variant == v]
        if not mine:
            continue
        latest = max([r for r in mine if r.status == "FINISHED"] or mine, key=lambda r: r.start_time)
        changes = latest.tags.get(names.CHANGES_TAG, "")
        hypothesis = latest.tags.get(names.HYPOTHESIS_TAG, "")
        lines.append(
            f"| {code(v)} | {text(changes) or '–'} | {_differences(latest, reference) or '–'} | "
            f"{text(hypothesis) or '–'} | {code(latest.parent_id)} |"
        )
    return lines + [""]


def _differences(run: SeedRun, reference: SeedRun) -> str:
    """The run's training and model settings whose values are not the reference run's."""
    keys = sorted(k for k in run.params.keys() | reference.params.keys() if k.startswith(("train.", "model.")))
    out = [
        f"{k} {text(run.params.get(k, '–'))}"
        for k in keys
        if run.params.get(k) != reference.params.get(k) and k not in _SAME_FOR_ALL
    ]
    return "; ".join(out)
