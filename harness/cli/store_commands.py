"""The commands that read a store the runs are already in: `report`, `export`, `plan` and `promote`. Each
takes `--experiment` as a name (the same rule as `run`: it names folders) or an experiment file."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from harness.base.errors import UsageError


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import markdown
    from harness.running import experiment, preflight
    from harness.tracking import readback

    name, cfg, uri = experiment.stored(
        args.experiment, args.tracking_uri
    )  # a file's store and reports folder, unless the flags say otherwise
    folder = Path(args.reports_dir or (cfg.paths.reports_dir if cfg else "reports")) / name
    preflight.check_writable(folder, "--reports-dir")
    readback.require_store(uri)
    try:
        path = markdown.build(uri, name, folder)
    except OSError as e:  # atomic writes: the previous report (if any) is whole, the store unchanged
        raise UsageError(f"report: {e}; the previous report, if any, is left whole") from None
    print(f"report: {path} and {path.with_suffix('.html').name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """One table of the report as CSV, JSON or LaTeX, on standard output or into --out (whole or not at all)."""
    from harness.report import export
    from harness.running import experiment

    export.check(args.format, args.table)
    name, _, uri = experiment.stored(args.experiment, args.tracking_uri)
    text = export.render(study_table(uri, name, args.table), args.format, args.table, name)
    if args.out is None:
        print(text, end="")
    else:
        print(f"{args.table} table ({args.format}): {export.write(text, Path(args.out))}")
    return 0


def study_table(uri: str, name: str, table: str):
    """The `table` of experiment `name` (a DataFrame); an experiment with no runs is refused in one line."""
    from harness.report import tables
    from harness.tracking import readback

    readback.require_store(uri)
    study = tables.read(uri, name)
    if not study.runs:
        raise UsageError(f"--experiment: the store {uri} holds no runs of experiment {name!r}; run it first")
    return tables.table(study, table)


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.analysis import planning, stats
    from harness.report import markdown
    from harness.running import experiment
    from harness.tracking import experiment_tags, readback

    vary = tuple(s.strip() for s in args.vary.split(",")) if args.vary is not None else ()
    req = planning.Request(args.effect, args.sd, args.comparisons, args.power, vary)
    planning.check(req)
    name, cfg, uri = experiment.stored(args.experiment, args.tracking_uri)
    analysis, baseline, tested = cfg.analysis if cfg else stats.Analysis(), cfg.baseline if cfg else "baseline", {}
    try:
        readback.require_store(uri)
        runs = readback.read_runs(uri, name)
    except UsageError:
        if req.sd is None:
            raise
    else:
        tags = readback.experiment_tags(uri, name)
        analysis, design = experiment_tags.analysis_of(tags), experiment_tags.design_of(tags)
        if vary and design.kind != "variance":
            raise UsageError(
                f"--vary: needs a variance design's runs in the store (`run --design variance`); experiment {name} has none"
            )
        if design.kind == "variance" and req.sd is None:
            table = planning.variance_lines(req, analysis, _decomposed(runs, design, analysis), _training_seconds(runs))
            print(f"plan for experiment {name}:")
            print("\n".join(table))
            return 0
        baseline, _, compared = markdown.analyse(runs, design, analysis, tags)
        tested = {v: c.test for v, c in compared.items() if c.test is not None}
    print(f"plan for experiment {name}:")
    print("\n".join(planning.lines(req, analysis, baseline, tested)))
    return 0


def _decomposed(runs, design, analysis):
    from harness.report import variance_section
    from harness.report.comparisons import counts

    return variance_section.decompositions(design, counts(runs), 1 - analysis.alpha)  # counts reads finished runs only


def _training_seconds(runs) -> float:
    """The mean training time of the finished runs (their mean epoch time × their epochs), NaN if none."""
    times = [
        r.metrics["epoch_seconds_mean"] * int(r.params["train.epochs"])
        for r in runs
        if r.status == "FINISHED"
        and math.isfinite(r.metrics.get("epoch_seconds_mean", math.nan))
        and r.params.get("train.epochs", "").isdigit()
    ]
    return sum(times) / len(times) if times else math.nan


def cmd_promote(args: argparse.Namespace) -> int:
    from harness.cli import promote
    from harness.running import experiment
    from harness.settings import checks, config
    from harness.tracking import names, readback

    checks.checked("", "name", args.name, str, "--name")
    variant = config.canonical_names([args.variant], "--variant")[0]
    name, cfg, uri = experiment.stored(args.experiment, args.tracking_uri)
    readback.require_store(uri)
    version, run, tags = promote.promote(uri, name, variant, args.name, args.again)
    print(
        f"registered {args.name} version {version.version}: run {run.run_id} ({variant} seed {run.seed}, validation accuracy "
        f"{run.metrics.get('selected_val_acc', float('nan')):.2f} at its selected epoch), verdict {tags[names.VERDICT_TAG]}; "
        f"load it with mlflow.pytorch.load_model('models:/{args.name}/{version.version}')"
    )
    return 0
