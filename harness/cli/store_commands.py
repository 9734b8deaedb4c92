"""The commands that read a store the runs are already in: `report`, `export`, `plan`, `promote` and `verify`. Each
takes `--experiment` as a name (the same rule as `run`: it names folders) or an experiment file, and
calls the library (harness/running/stored.py) that the Python API's `Study` calls too."""

from __future__ import annotations

import argparse
import io
from pathlib import Path


def cmd_report(args: argparse.Namespace) -> int:
    from harness.running import stored

    name, cfg, uri = stored.locate(args.experiment, args.tracking_uri)
    folder = Path(args.reports_dir or (cfg.paths.reports_dir if cfg else "reports")) / name  # the flag, else the file's
    path = stored.report(uri, name, folder)
    print(f"report: {path} and {path.with_suffix('.html').name}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """One table of the report as CSV, JSON or LaTeX, on standard output or into --out (whole or not at all)."""
    from harness.base import files
    from harness.report import export
    from harness.running import stored

    export.check(args.format, args.table)
    name, _, uri = stored.locate(args.experiment, args.tracking_uri)
    out = None if args.out is None else files.check_target(args.out, "--out", args.force, stored.store_file(uri))
    text = stored.exported(uri, name, args.table, args.format, args.name_in_caption)
    if args.out is None:
        print(text, end="")
    else:
        print(f"{args.table} table ({args.format}): {export.write(text, out)}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.analysis import planning
    from harness.running import stored

    vary = tuple(s.strip() for s in args.vary.split(",")) if args.vary is not None else ()
    req = planning.Request(args.effect, args.sd, args.comparisons, args.power, vary)
    planning.check(req)
    name, cfg, uri = stored.locate(args.experiment, args.tracking_uri)
    print("\n".join(stored.plan(name, cfg, uri, req)))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from harness.running import stored
    from harness.settings import checks, config
    from harness.tracking import names

    checks.checked("", "name", args.name, str, "--name")
    variant = config.canonical_names([args.variant], "--variant")[0]
    name, _, uri = stored.locate(args.experiment, args.tracking_uri)
    version, run, tags = stored.promote(uri, name, variant, args.name, args.again)
    print(
        f"registered {args.name} version {version.version}: run {run.run_id} ({variant} seed {run.seed}, validation accuracy "
        f"{run.metrics.get('selected_val_acc', float('nan')):.2f} at its selected epoch), verdict {tags[names.VERDICT_TAG]}; "
        f"load it with mlflow.pytorch.load_model('models:/{args.name}/{version.version}')"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the re-trained ledgers match (bit for bit on the same platform, within the margin
    elsewhere), 1 with one line naming what did not."""
    import json

    from harness.cli.arguments import component_entries
    from harness.running import stored, verify
    from harness.running.console import Console
    from harness.variants import plugins

    if args.components:
        plugins.load(component_entries(args.components), "--components")
    name, _, uri = stored.locate(args.experiment, args.tracking_uri)
    out = verify.verify(
        uri, name, args.runs, args.margin, args.data_dir, Console(io.StringIO() if args.json else None), args.device
    )
    if args.json:
        print(json.dumps(out.as_dict(), indent=2, allow_nan=False))
    else:
        for c in out.checks:
            where = "same platform" if not c.differs else f"bits not expected to match ({'; '.join(c.differs)})"
            same = "bit-identical" if c.identical else f"{100 * c.agreement:.2f}% of images given the same class"
            deltas = ", ".join(f"{k} {v:+.4g}" for k, v in c.deltas.items())
            print(f"{c.variant} seed {c.seed} (run {c.run_id}): {where}: {same}; {deltas}")
        print(out.line)
    return 0 if out.ok else 1
