"""`harness.run(...)` and `harness.load(...)`: the command line's `run`, `report` and `export` from
Python, for a notebook or a script.

`run` turns its keyword arguments into the `run` command's flags (`variants`, `seeds`, `epochs`,
`design`, `factors`, `experiment`, `components`, `device`, `dataset`, `data_dir`, `tracking_uri`,
`margin`, `max_seeds`, `jobs_per_device`, `executor`, `tuned`, `params_from`, `rerun`, ...) and every
other setting into `--set` (`name=`, `lr=`, `batch_size=`, `weight_decay=`, `split=`, `alpha=`, ...),
then runs the very function the CLI runs, so a bad value raises the `UsageError` whose message the
CLI prints. Progress is one tqdm.auto bar (a widget in Jupyter) and one line per run.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import tomli_w

from harness.base.errors import UsageError

FLAGS = ("experiment", "variants", "seeds", "epochs", "design", "factors", "components", "device", "fuse", "dataset", "data_dir", "tracking_uri",
         "margin", "max_seeds", "jobs_per_device", "executor", "ray_address", "gpus_per_run", "cpus_per_run", "params_from",
         "partition", "time", "array_parallelism", "slurm_setup")
SWITCHES = ("tuned", "rerun", "yes", "redesign", "detach")


def _sections() -> dict[str, str]:
    """Where a bare setting name lives: `lr` -> train.lr, `split` -> data.split, `alpha` -> analysis.alpha."""
    from harness.settings import checks
    from harness.settings.analysis import Analysis
    from harness.settings.config import DataConfig

    out = {k: "train" for k in checks.TRAIN_FIELDS + checks.RUNTIME_FIELDS}
    out |= {f.name: "data" for f in dataclasses.fields(DataConfig)}
    out |= {f.name: "analysis" for f in dataclasses.fields(Analysis)}
    return out | {"name": "", "baseline": "", "reports_dir": "", "checkpoint_dir": ""}


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
        return ",".join(parts) + ("," if len(parts) == 1 else "")  # one item stays a list: `--seeds 7,`
    return str(value)


def _paths(key: str, value: Any) -> list[str]:
    """A path or a list of paths (components, params_from, set) as strings; anything else is refused."""
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, os.PathLike)) and str(v).strip() for v in items):
        raise UsageError(f"{key}: {value!r} is not allowed; expected a string or a list of strings")
    return [str(v) for v in items]


def _scalar(key: str, value: Any, kinds: tuple = (bool, int, float, str)) -> Any:
    if not isinstance(value, kinds):
        raise UsageError(f"{key}: {value!r} is not allowed; expected {' or '.join(k.__name__ for k in kinds)}")
    return value


def arguments(**kwargs: Any) -> list[str]:
    """The `run` command line these keyword arguments stand for."""
    sections = _sections()
    argv = ["run"]
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in SWITCHES:
            argv += [f"--{key}"] if _scalar(key, value, (bool,)) else []
        elif key in FLAGS:
            flag = "--" + key.replace("_", "-")
            if key in ("components", "params_from", "slurm_setup"):
                argv += [x for v in _paths(key, value) for x in (flag, v)]
            elif key in ("variants", "seeds", "factors") and isinstance(value, (list, tuple)):
                if not value or not all(isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() and "," not in str(v) for v in value):
                    raise UsageError(f"{key}: {value!r} is not allowed; expected a non-empty list of names or numbers, one per item (no commas)")
                argv += [flag, _text(value)]
            else:
                argv += [flag, str(_scalar(key, value, (int, float, str)))]
        elif key == "set":
            argv += [x for a in _paths(key, value) for x in ("--set", a)]
        elif key in sections:
            dotted = f"{sections[key]}.{key}" if sections[key] else key
            argv += ["--set", f"{dotted}={tomli_w.dumps({'v': _scalar(dotted, value)})[4:].strip()}"]
        else:
            allowed = sorted({*FLAGS, *SWITCHES, *sections, "set"})
            raise UsageError(f"run: unknown setting {key!r}; allowed: {', '.join(allowed)}")
    return argv


def run(variants: list[str] | str | None = None, seeds: int | list[int] | str | None = None, epochs: int | None = None,
        design: str | None = None, **settings: Any) -> "Study":
    """Train the variants × seeds (skipping finished runs, resuming interrupted ones) and write the
    report, as `python -m harness run` does; returns the experiment as a `Study`."""
    from harness.cli import arguments as cli_arguments
    from harness.cli import commands

    argv = arguments(variants=variants, seeds=seeds, epochs=epochs, design=design, **settings)
    args = cli_arguments.parser(cli_arguments.RaisingParser).parse_args(argv)
    args.argv, args.debug = argv, False
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    before = os.environ.get("HARNESS_CONSOLE")
    os.environ["HARNESS_CONSOLE"] = before or "notebook"
    try:
        commands.cmd_run(args)
    finally:
        if before is None:
            os.environ.pop("HARNESS_CONSOLE", None)
        else:
            os.environ["HARNESS_CONSOLE"] = before
    name, uri, folder = args.resolved
    return Study(name, uri, folder)


def load(experiment: str, tracking_uri: str | None = None, reports_dir: str | None = None) -> "Study":
    """The experiment `experiment` (a name or its .toml) as it is in the store, without training;
    its report is written when there is none yet."""
    from harness.cli import store_commands
    from harness.tracking import readback, store

    if not isinstance(experiment, (str, os.PathLike)):
        raise UsageError(f"experiment: {experiment!r} is not allowed; expected the experiment's name or its .toml path")
    name, cfg = store_commands.named(str(experiment))
    uri = store.resolve_uri(tracking_uri or (cfg.paths.tracking_uri if cfg else ""))
    readback.require_store(uri)
    folder = Path(reports_dir or (cfg.paths.reports_dir if cfg else "reports")) / name
    study = Study(name, uri, folder)
    if not study._read().runs:
        raise UsageError(f"experiment: the store {uri} holds no runs of experiment {name!r}; run it first")
    return study


class Study:
    """An experiment in the store: its tables as pandas DataFrames, its runs, its report."""

    def __init__(self, experiment: str, tracking_uri: str, reports_folder: Path) -> None:
        self.experiment, self.tracking_uri, self.reports_folder = experiment, tracking_uri, Path(reports_folder).resolve()
        self._study = None

    def __repr__(self) -> str:
        return f"Study({self.experiment!r}, tracking_uri={self.tracking_uri!r}, reports={str(self.reports_folder)!r})"

    def _read(self):
        from harness.report import tables

        if self._study is None:
            self._study = tables.read(self.tracking_uri, self.experiment)
        return self._study

    def _table(self, name: str):
        from harness.report import tables

        return tables.table(self._read(), name)

    def table(self):
        """The comparison: one row per variant (test accuracy, its difference from the baseline, Holm's p, the verdict)."""
        return self._table("comparison")

    def statistics(self):
        """Every paired test of each variant against the baseline."""
        return self._table("statistics")

    def effects(self):
        """A factorial or leave-one-out design's effects (other designs are refused, as `export --table effects` refuses them)."""
        return self._table("effects")

    def runs(self):
        """One row per (variant, seed) run, with its MLflow run id and its parent's."""
        return self._table("runs")

    @property
    def report_path(self) -> Path:
        """report.md, written from the store when it is not there yet."""
        path = self.reports_folder / "report.md"
        if not path.is_file():
            from harness.report import markdown

            markdown.build(self.tracking_uri, self.experiment, self.reports_folder)
        return path

    def export(self, format: str = "csv", table: str = "comparison", out: str | os.PathLike | None = None) -> str:
        """The table as CSV, JSON or LaTeX (as `python -m harness export`); written to `out` when given."""
        from harness.report import export, tables

        if format not in export.FORMATS:
            raise UsageError(f"format: {format!r} is not allowed; expected one of {', '.join(export.FORMATS)}")
        if table not in tables.TABLES:
            raise UsageError(f"table: {table!r} is not allowed; expected one of {', '.join(tables.TABLES)}")
        text = export.render(self._table(table), format, table, self.experiment)
        if out is not None:
            export.write(text, Path(_paths("out", out)[0]), "out")
        return text

    def _repr_markdown_(self) -> str:
        """The report inline in Jupyter, its figures linked from the report's folder."""
        text = self.report_path.read_text(encoding="utf-8")
        folder = os.path.relpath(self.reports_folder, Path.cwd())

        def relink(m: re.Match) -> str:
            target = m.group(2)
            if "://" in target or target.startswith(("#", "/")):
                return m.group(0)
            return f"{m.group(1)}({Path(folder, target).as_posix()})"

        return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", relink, text)
