"""`harness.run(...)` and `harness.load(...)`: the command line's `run`, `report` and `export` from
Python, for a notebook or a script.

`run` takes the `run` command's flags as keyword arguments (`variants`, `seeds`, `epochs`, `design`,
`factors`, `experiment`, `components`, `device`, `dataset`, `data_dir`, `tracking_uri`, `margin`,
`max_seeds`, `tuned`, `params_from`, and the fields of `Execution`: `executor`, `jobs_per_device`,
`rerun`, ...) and every other setting by its name (`name=`, `lr=`, `batch_size=`, `weight_decay=`,
`split=`, `alpha=`, ...), and calls the library functions the CLI calls (harness/running/experiment.py),
so a bad value raises the `UsageError` whose message the CLI prints. Progress is one tqdm.auto bar
(a widget in Jupyter) and one line per run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from harness.api import isolation
from harness.base import credentials
from harness.base.errors import UsageError

# flags that are settings
SETTINGS = {
    "epochs": "train.epochs",
    "device": "train.device",
    "fuse": "train.fuse",
    "margin": "analysis.margin",
    "dataset": "data.dataset",
    "data_dir": "data.dir",
    "tracking_uri": "tracking_uri",
    "max_seeds": "max_seeds",
}
LISTS = ("variants", "seeds", "factors")  # a comma-separated text or a list
FILES = ("components", "params_from", "set")  # one path (or assignment) or a list of them
SWITCHES = ("tuned", "yes")


def _sections() -> dict[str, str]:
    """Where a bare setting name lives: `lr` -> train.lr, `split` -> data.split, `alpha` -> analysis.alpha."""
    from harness.settings import checks
    from harness.settings.analysis import Analysis
    from harness.settings.config import DataConfig

    out = {k: "train" for k in checks.TRAIN_FIELDS + checks.RUNTIME_FIELDS}
    out |= {f.name: "data" for f in dataclasses.fields(DataConfig)}
    out |= {f.name: "analysis" for f in dataclasses.fields(Analysis)}
    return out | {"name": "", "baseline": "", "reports_dir": "", "checkpoint_dir": ""}


def _text(key: str, value: Any) -> str:
    """A list flag as the command line writes it: seeds `[7]` is `7,` (one seed, not a count of 7)."""
    if not isinstance(value, (list, tuple)):
        return str(_scalar(key, value, (int, str)))
    if not value or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() and "," not in str(v) for v in value
    ):
        raise UsageError(
            f"{key}: {value!r} is not allowed; expected a non-empty list of names or numbers, one per item (no commas)"
        )
    parts = [str(v) for v in value]
    return ",".join(parts) + ("," if len(parts) == 1 and key == "seeds" else "")


def _paths(key: str, value: Any) -> list[str]:
    """A path or a list of paths (components, params_from, set) as strings; anything else is refused."""
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(v, (str, os.PathLike)) and str(v).strip() for v in items
    ):
        raise UsageError(f"{key}: {value!r} is not allowed; expected a string or a list of strings")
    return [str(v) for v in items]


def _scalar(key: str, value: Any, kinds: tuple = (bool, int, float, str)) -> Any:
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise UsageError(f"{key}: {value!r} is not allowed; expected {' or '.join(k.__name__ for k in kinds)}")
    return value


def _kinds(cls: type) -> dict[str, tuple | None]:
    """The Python types each field of `cls` takes (None: a tuple of strings), from its annotations."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        members = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else (hint,)
        kind = next(m for m in members if m is not type(None))
        origin = typing.get_origin(kind)
        out[name] = (
            None
            if origin is tuple
            else (str,)
            if origin is typing.Literal
            else (int, float)
            if kind is float
            else (kind,)
        )
    return out


def arguments(**kwargs: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The keyword arguments of `run`, sorted: (experiment.configure's arguments, its dotted
    settings, Execution's fields). Unknown names and values of the wrong type are refused."""
    from harness.running.execution import Execution
    from harness.settings import config, designs, experiment_file

    sections, fields = _sections(), _kinds(Execution)
    setup, flags, options = {"tuned": False}, {}, {}
    given = {k: v for k, v in kwargs.items() if v is not None}
    for key, value in given.items():
        if key in fields:
            options[key] = tuple(_paths(key, value)) if fields[key] is None else _scalar(key, value, fields[key])
        elif key in SWITCHES:
            _scalar(key, value, (bool,))
        elif key == "experiment":
            setup[key] = str(_scalar(key, value, (str, os.PathLike)))
        elif key in FILES:
            setup[key] = _paths(key, value)
        elif key == "variants":
            flags["variants"] = config.parse_variant_list(_text(key, value))
        elif key == "seeds":
            flags["seeds"] = experiment_file.parse_seed_flag(_text(key, value), auto=True)
        elif key in SETTINGS:
            flags[SETTINGS[key]] = _scalar(SETTINGS[key], value, (int, float, str))
        elif key in sections:
            dotted = f"{sections[key]}.{key}" if sections[key] else key
            flags[dotted] = _scalar(dotted, value)
        elif key not in ("design", "factors"):
            allowed = sorted({*SETTINGS, *LISTS, *FILES, *SWITCHES, *fields, *sections, "experiment", "design"})
            raise UsageError(f"run: unknown setting {key!r}; allowed: {', '.join(allowed)}")
    factors = _text("factors", given["factors"]).rstrip(",") if "factors" in given else None
    design = _scalar("design", given["design"], (str,)) if "design" in given else None
    flags |= designs.flags(design, factors, given.get("yes", False))
    setup["tuned"] = given.get("tuned", False)
    return setup, flags, options


@isolation.isolated(trains=True)
def run(
    variants: list[str] | str | None = None,
    seeds: int | list[int] | str | None = None,
    epochs: int | None = None,
    design: str | None = None,
    check: bool = True,
    **settings: Any,
) -> "Study":
    """Train the variants × seeds (skipping finished runs, resuming interrupted ones) and write the
    report, as `python -m harness run` does; returns the experiment as a `Study`. Where the CLI
    would exit 1 (a run failed, the report or the store could not be written) it raises `RunsFailed`,
    which carries the `Study`; `check=False` returns the Study instead. The progress bar is a widget
    only in a notebook (elsewhere the CLI's console: live on a terminal, plain lines when piped)."""
    from harness.running import experiment
    from harness.running.console import Console
    from harness.running.execution import Execution

    _scalar("check", check, (bool,))
    setup, flags, options = arguments(variants=variants, seeds=seeds, epochs=epochs, design=design, **settings)
    cfg, files = experiment.configure(
        setup.get("experiment"),
        setup.get("set", []),
        setup.get("params_from", []),
        setup.get("components", []),
        setup["tuned"],
        **flags,
    )
    call = ", ".join(
        f"{k}={v!r}"
        for k, v in dict(variants=variants, seeds=seeds, epochs=epochs, design=design, **settings).items()
        if v is not None
    )
    console = Console(mode="notebook" if _in_notebook() else None)
    done = experiment.run(cfg, Execution(**options), console, files, f"harness.run({call})")
    study = Study(done.name, done.uri, done.reports_folder)
    failed = [
        f"{o.variant} seed {o.seed}: {o.status}" + (f" ({o.error})" if o.error else "")
        for o in done.outcomes
        if o.status != "FINISHED"
    ]
    if check and done.failed:
        raise RunsFailed(study, failed, done.problems)
    for problem in done.problems:
        print(f"error: {credentials.mask(problem)}", file=sys.stderr)
    return study


class Exported(str):
    """An export's text (a `str`) that a notebook shows as itself, lines and all, not as an escaped
    one-line repr."""

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # IPython's display hook
        printer.text(str(self))


class RunsFailed(RuntimeError):
    """`harness.run` ended where the CLI exits 1: runs that did not finish (`failed`, one line each)
    or problems writing the report or the store (`problems`). The finished runs are in the store;
    `study` is the experiment as it stands in the store."""

    def __init__(self, study: "Study", failed: list[str], problems: list[str]) -> None:
        self.study, self.failed, self.problems = study, failed, problems
        lines = failed + problems
        shown = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
        super().__init__(
            f"{len(failed)} run(s) did not finish and {len(problems)} problem(s): {shown}; "
            "the finished runs are in the store (this error's .study)"
        )


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell), where tqdm.auto draws a widget."""
    return type(isolation.ipython_shell()).__name__ == "ZMQInteractiveShell"


@isolation.isolated(trains=True)
def tune(
    variant: str,
    trials: int = 20,
    seeds: int | list[int] | str | None = None,
    epochs: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    study: str | None = None,
    storage: str | None = None,
    pruner: str = "median",
    **settings: Any,
):
    """Search `variant`'s hyperparameters with Optuna on validation data (never the test set), as
    `python -m harness tune` does: its `[search.<variant>]` space, `trials` in all (counting earlier
    ones of the same study), then the best parameters written for `run(tuned=True)`. `settings`: the
    experiment, components, data and store as `run` takes them. Returns the session's `Tuned`
    (the Optuna study, the parameters' file, the report's path)."""
    from harness.settings import experiment_file
    from harness.tuning import session

    setup, flags, options = arguments(epochs=epochs, **settings)
    if options or set(setup) - {"experiment", "components", "set", "tuned"} or flags.get("variants"):
        extra = sorted(options) or sorted(set(setup) - {"experiment", "components", "set", "tuned"}) or ["variants"]
        raise UsageError(f"tune: {extra[0]!r} is not a setting of tune; it tunes one variant (variant=...)")
    cfg = experiment_file.load_experiment(
        setup.get("experiment"), setup.get("set", []), components=setup.get("components", []), **flags
    )
    chosen = experiment_file.parse_seed_flag(_text("seeds", seeds)) if seeds is not None else None  # each trial's seeds
    req = session.request(
        cfg,
        _scalar("variant", variant, (str,)),
        _scalar("trials", trials, (int,)),
        chosen,
        _scalar("timeout", timeout, (int, float)) if timeout is not None else None,
        _scalar("workers", workers, (int,)),
        study,
        storage,
        _scalar("pruner", pruner, (str,)),
    )
    return session.tune(cfg, req)


@isolation.isolated(trains=False)
def load(experiment: str, tracking_uri: str | None = None, reports_dir: str | None = None) -> "Study":
    """The experiment `experiment` (a name or its .toml) as it is in the store, without training;
    its report is written when there is none yet."""
    from harness.running import stored
    from harness.tracking import readback

    if not isinstance(experiment, (str, os.PathLike)):
        raise UsageError(f"experiment: {experiment!r} is not allowed; expected the experiment's name or its .toml path")
    name, cfg, uri = stored.locate(str(experiment), tracking_uri)
    readback.require_store(uri)
    folder = Path(reports_dir or (cfg.paths.reports_dir if cfg else "reports")) / name
    study = Study(name, uri, folder)
    if not study._read().runs:
        raise UsageError(f"experiment: the store {uri} holds no runs of experiment {name!r}; run it first")
    return study


class Study:
    """An experiment in the store: its tables as pandas DataFrames, its runs, its report."""

    def __init__(self, experiment: str, tracking_uri: str, reports_folder: Path) -> None:
        self.experiment, self.tracking_uri, self.reports_folder = (
            experiment,
            tracking_uri,
            Path(reports_folder).resolve(),
        )
        self._study = None

    def __repr__(self) -> str:
        return f"Study({self.experiment!r}, tracking_uri={self.tracking_uri!r}, reports={str(self.reports_folder)!r})"

    @isolation.isolated(trains=False)
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
    @isolation.isolated(trains=False)
    def report_path(self) -> Path:
        """report.md, written from the store when it is not there yet."""
        path = self.reports_folder / "report.md"
        if not path.is_file():
            from harness.report import markdown

            markdown.build(self.tracking_uri, self.experiment, self.reports_folder)
        return path

    @isolation.isolated(trains=False)
    def export(
        self,
        format: str = "csv",
        table: str = "comparison",
        out: str | os.PathLike | None = None,
        force: bool = False,
        name_in_caption: bool = False,
    ) -> str:
        """The table as CSV, JSON or LaTeX (as `python -m harness export`); written to `out` when given
        (an existing file only with `force=True`, never the store)."""
        from harness.base import files
        from harness.report import export
        from harness.running import stored

        export.check(format, table, ("format", "table"))
        target = None
        if out is not None:
            target = files.check_target(_paths("out", out)[0], "out", force, stored.store_file(self.tracking_uri))
        text = export.render(self._table(table), format, table, self.experiment, name_in_caption)
        if target is not None:
            export.write(text, target, "out")
        return Exported(text)

    @isolation.isolated(trains=False)
    def plan(
        self,
        effect: float | None = None,
        sd: float | None = None,
        comparisons: int | None = None,
        power: float = 0.8,
        vary: str | list[str] = (),
    ) -> str:
        """How many seeds each comparison needs, as `python -m harness plan` prints it."""
        from harness.analysis import planning
        from harness.running import stored

        sources = tuple(s.strip() for s in (vary.split(",") if isinstance(vary, str) else vary) if s.strip())
        req = planning.Request(effect, sd, comparisons, power, sources)
        return "\n".join(stored.plan(self.experiment, None, self.tracking_uri, req))

    @isolation.isolated(trains=False)
    def promote(self, variant: str, name: str, again: bool = False):
        """Register `variant`'s best seed run (by validation) as a new version of the registered
        model `name`, as `python -m harness promote` does; returns MLflow's ModelVersion."""
        from harness.running import stored

        version, _, _ = stored.promote(self.tracking_uri, self.experiment, variant, name, again)
        return version

    @isolation.isolated(trains=False)
    def _repr_markdown_(self) -> str:
        """The report inline in Jupyter, its figures linked from the report's folder."""
        text = self.report_path.read_text(encoding="utf-8")
        folder = os.path.relpath(self.reports_folder, Path.cwd())

        def relink(m: re.Match) -> str:
            target = m.group(2)
            if "://" in target or target.startswith(("#", "/")):
                return m.group(0)
            return f"{m.group(1)}({Path(folder, target).as_posix()})"

        return re.sub(r"(?<!\\)(!?\[[^\]]*\])\(([^)\s]+)\)", relink, text)

    @isolation.isolated(trains=False)
    def _repr_html_(self) -> str:
        """The report inline in Jupyter as report.html shows it, its figures embedded: a shared
        notebook keeps them (markdown's relative links break once it leaves the folder)."""
        from harness.report import html

        return html.fragment(self.report_path.read_text(encoding="utf-8"), self.reports_folder)
