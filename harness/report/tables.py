"""The report's numbers as tidy tables (one row per variant, comparison, effect or run; one column
per quantity, in points), for `export` (CSV, JSON, LaTeX) and the Python API's DataFrames. They
are computed by the same functions as report.md, from the same store, so they agree with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.analysis import effects, stats
from harness.report import comparisons as comparisons_mod
from harness.report import export, markdown
from harness.settings import designs
from harness.tracking import experiment_tags, readback
from harness.tracking.readback import SeedRun

TABLES = export.TABLES


@dataclass(frozen=True)
class StudyData:
    """An experiment as read back from the store: its runs and what the report concludes."""

    experiment: str
    runs: list[SeedRun]
    design: designs.Design
    analysis: stats.Analysis
    baseline: str
    order: list[str]
    compared: dict[str, comparisons_mod.Comparison]


def read(uri: str, experiment: str, tags: dict[str, str] | None = None) -> StudyData:
    """The experiment's runs read back and analysed (`tags`: its experiment tags, when the caller has them)."""
    tags = readback.experiment_tags(uri, experiment) if tags is None else tags
    return study(experiment, readback.read_runs(uri, experiment), tags)


def study(experiment: str, runs: list[SeedRun], tags: dict[str, str]) -> StudyData:
    """These runs of the experiment analysed under its experiment `tags` (design, [analysis], seeds on demand)."""
    design, analysis = experiment_tags.design_of(tags), experiment_tags.analysis_of(tags)
    baseline, order, compared = markdown.analyse(runs, design, analysis, tags)
    return StudyData(experiment, runs, design, analysis, baseline, order, compared)


def _num(x: float) -> float | None:
    """A number, or None where there is none: NaN, and an interval's infinite end (fewer than 3 pairs)."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def comparison(study: StudyData) -> pd.DataFrame:
    """One row per variant: its test accuracy over seeds, and against the baseline the paired
    difference, its interval, Holm's p and the verdict."""
    done = [r for r in study.runs if r.status == "FINISHED"]
    accuracy = comparisons_mod.accuracy(comparisons_mod.counts(done))
    rows = []
    for v in study.order:
        s = stats.summarize(list(accuracy.get(v, {}).values()))
        c = study.compared.get(v)
        t = c.test if c is not None else None
        rows.append(
            {
                "variant": v,
                "seeds": s.n,
                "test_acc_mean": _num(s.mean),
                "test_acc_sd": _num(s.std),
                "diff_vs_baseline": _num(t.diff_mean) if t else None,
                "ci_low": _num(t.ci_low) if t else None,
                "ci_high": _num(t.ci_high) if t else None,
                "p_holm": _num(t.p_holm) if t else None,
                "verdict": "baseline" if v == study.baseline else (c.verdict if c is not None else "no baseline"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "variant",
            "seeds",
            "test_acc_mean",
            "test_acc_sd",
            "diff_vs_baseline",
            "ci_low",
            "ci_high",
            "p_holm",
            "verdict",
        ],
    )


def statistics(study: StudyData) -> pd.DataFrame:
    """One row per comparison with the baseline: every test the report's statistics section shows."""
    rows = []
    for v, c in study.compared.items():
        t = c.test
        row = {"variant": v, "baseline": study.baseline, "verdict": c.verdict, "reason": c.reason}
        if t is not None:
            row |= {
                "pairs": t.n,
                "diff_mean": _num(t.diff_mean),
                "diff_sd": _num(t.sd),
                "ci_low": _num(t.ci_low),
                "ci_high": _num(t.ci_high),
                "t_p": _num(t.t_p),
                "permutation_p": _num(t.perm_p),
                "tost_t_p": _num(t.tost_t_p),
                "tost_permutation_p": _num(t.tost_perm_p),
                "hedges_g": _num(t.hedges_g),
                "p_holm": _num(t.p_holm),
                "tost_holm": _num(t.tost_holm),
                "wins": t.wins,
                "ties": t.ties,
                "decided_by": t.decided_by,
                "seeds_needed": c.seeds_needed or None,
            }
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "variant",
            "baseline",
            "pairs",
            "diff_mean",
            "diff_sd",
            "ci_low",
            "ci_high",
            "t_p",
            "permutation_p",
            "tost_t_p",
            "tost_permutation_p",
            "hedges_g",
            "p_holm",
            "tost_holm",
            "wins",
            "ties",
            "decided_by",
            "seeds_needed",
            "verdict",
            "reason",
        ],
    )


def effects_table(study: StudyData) -> pd.DataFrame:
    """A factorial or leave-one-out design's effects (main, interaction, contribution, total); empty for other designs."""
    rows = []
    if study.design.kind in designs.CELLS:
        counts = comparisons_mod.counts([r for r in study.runs if r.status == "FINISHED"])
        for e in effects.analyse(study.design, counts, study.analysis):
            t = e.test
            rows.append(
                {
                    "effect": e.name,
                    "kind": e.kind,
                    "pairs": t.n,
                    "estimate": _num(t.diff_mean),
                    "ci_low": _num(t.ci_low),
                    "ci_high": _num(t.ci_high),
                    "p_holm": _num(t.p_holm),
                    "verdict": t.verdict,
                }
            )
    return pd.DataFrame(rows, columns=["effect", "kind", "pairs", "estimate", "ci_low", "ci_high", "p_holm", "verdict"])


def compact(study: StudyData) -> pd.DataFrame:
    """The comparison as a paper prints it: each variant's Δ from the baseline, its interval and verdict."""
    return comparison(study)[["variant", "diff_vs_baseline", "ci_low", "ci_high", "verdict"]]


def runs_table(study: StudyData) -> pd.DataFrame:
    """One row per (variant, seed) run: its status, its MLflow run ids and its accuracies."""
    rows = [
        {
            "variant": r.variant,
            "seed": r.seed,
            "status": r.status,
            "run_id": r.run_id,
            "parent_run_id": r.parent_id,
            "test_acc": _num(r.metrics.get("test_acc", math.nan)),
            "best_val_acc": _num(r.metrics.get("best_val_acc", math.nan)),
            "epochs": r.params.get("train.epochs"),
        }
        for r in study.runs
    ]
    return pd.DataFrame(
        rows, columns=["variant", "seed", "status", "run_id", "parent_run_id", "test_acc", "best_val_acc", "epochs"]
    )


def table(study: StudyData, name: str) -> pd.DataFrame:
    """The table `name` of TABLES; `effects` of a design without effects is refused in one line."""
    export.check_design(study.experiment, study.design, name)
    tables = {"comparison": comparison, "compact": compact, "statistics": statistics, "effects": effects_table}
    return {**tables, "runs": runs_table}[name](study)
