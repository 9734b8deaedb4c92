"""What the commands after `run` do with an experiment already in the store, as library functions:
`locate` it, rebuild its `report`, read one of its report's `table`s, `plan` the seeds a comparison needs, `promote` a
variant's best seed run into the MLflow Model Registry. `report`, `export`, `plan` and `promote`
(harness/cli/store_commands.py) and the Python API's `Study` (harness/api/study.py) both call them."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from harness.base.errors import UsageError
from harness.settings.config import ExperimentConfig


def locate(experiment: str, tracking_uri: str | None = None) -> tuple[str, ExperimentConfig | None, str]:
    """An experiment as `report`, `export`, `plan`, `promote` and `harness.load` name it (a name, or
    its .toml, which is read): its name, its file's configuration (None for a name) and its store's
    address: `tracking_uri`, else the file's, else the default ($MLFLOW_TRACKING_URI, sqlite:///mlflow.db)."""
    from harness.settings import experiment_file
    from harness.tracking import store

    name, cfg = experiment_file.named(experiment)
    return name, cfg, store.resolve_uri(tracking_uri or (cfg.paths.tracking_uri if cfg else ""))


def store_file(uri: str) -> Path | None:
    """The file of a SQLite store (which no command writes a table or a result over), else None."""
    from harness.tracking import addresses

    return addresses.sqlite_path(uri) if uri.startswith("sqlite:///") else None


def report(uri: str, name: str, folder: Path) -> Path:
    """Rebuild the report of experiment `name` from the store into `folder`; returns report.md's path.
    A write that fails leaves the previous report whole (atomic writes) and says so in one line."""
    from harness.report import markdown
    from harness.running import preflight
    from harness.tracking import readback

    preflight.check_writable(folder, "--reports-dir")
    readback.require_store(uri)
    try:
        path = markdown.build(uri, name, folder)
    except OSError as e:
        raise UsageError(f"report: {e}; the previous report, if any, is left whole") from None
    try:
        keep_exports(uri, name)
    except Exception:  # noqa: BLE001 - kept exports only save time; an export computes what it needs itself
        pass
    return path


def table(uri: str, name: str, which: str):
    """The report's table `which` of experiment `name` (a DataFrame); an experiment with no runs is refused in one line."""
    from harness.report import export
    from harness.tracking import experiment_tags, readback

    readback.require_store(uri)
    tags = _tags(uri, name)
    export.check_design(name, experiment_tags.design_of(tags), which)  # before minutes of reading a large store
    from harness.report import tables  # pandas, SciPy and MLflow: only once the arguments are known to be good

    study = tables.read(uri, name, tags)
    if not study.runs:
        raise UsageError(f"--experiment: the store {uri} holds no runs of experiment {name!r}; run it first")
    return tables.table(study, which)


FORMATS = (("csv", False), ("json", False), ("latex", False), ("latex", True))  # (format, name in the caption)


def keep_exports(uri: str, name: str) -> None:
    """After `run` and `report`: every table of experiment `name` in every format, kept for `export`
    (harness/running/export_cache.py) so the export that follows reads no runs. Read here, as an
    export reads them, and kept only when the store did not change meanwhile; nothing for a store
    sqlite3 cannot read or one that holds no runs of the experiment."""
    from harness.report import export, tables
    from harness.running import export_cache
    from harness.settings import designs
    from harness.tracking import readback

    before = export_cache.state(uri, name)
    if before is None:
        return
    texts = {}
    with _teed(echo=False) as stderr:  # the caller's own read has said whatever this one would
        runs = readback.read_runs(uri, name)
        if not runs:
            return
        study = tables.study(name, runs, _tags(uri, name))
        for which in export.TABLES:
            if which == "effects" and study.design.kind not in designs.CELLS:
                continue
            df = tables.table(study, which)
            texts.update({(which, fmt, flag): export.render(df, fmt, which, name, flag) for fmt, flag in FORMATS})
    if export_cache.state(uri, name) == before:
        export_cache.write(before, texts, stderr.getvalue())


def exported(uri: str, name: str, which: str, fmt: str, name_in_caption: bool = False) -> str:
    """The text `export` prints: the table `which` of experiment `name` in `fmt`, as kept for an
    unchanged local SQLite store (harness/running/export_cache.py: about 0.3 s against 5 here,
    benchmarks/store_commands.py), else read through MLflow (and kept)."""
    import sys

    from harness.report import export
    from harness.running import export_cache
    from harness.tracking import readback

    readback.require_store(uri)
    before = export_cache.state(uri, name)
    kept = export_cache.read(before, which, fmt, name_in_caption)
    if kept is not None:
        print(kept[1], end="", file=sys.stderr)
        return kept[0]
    with _teed() as stderr:
        text = export.render(table(uri, name, which), fmt, which, name, name_in_caption)
    if before is not None and export_cache.state(uri, name) == before:
        export_cache.write(before, {(which, fmt, name_in_caption): text}, stderr.getvalue())
    return text


class _Tee:
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def _teed(echo: bool = True):
    """A copy of what is written to standard error meanwhile (yielded); with `echo`, it is written
    there too."""
    import io
    import sys

    copy = io.StringIO()
    with contextlib.redirect_stderr(_Tee(sys.stderr, copy) if echo else copy):
        yield copy


def _tags(uri: str, name: str) -> dict[str, str]:
    """The experiment's tags: from the SQLite file itself where it can be read so (no MLflow import), else through MLflow."""
    from harness.tracking import direct, readback

    path = store_file(uri)
    tags = direct.experiment_tags(path, name) if path is not None else None
    return tags if tags is not None else readback.experiment_tags(uri, name)


def plan(name: str, cfg: ExperimentConfig | None, uri: str, req) -> list[str]:
    """The lines of `plan`: how many seeds each comparison needs (`req`: an analysis.planning.Request),
    from the spread of paired differences in the store, or from `req.sd` where the store has none; for
    a variance design, what each source of randomness would cost. Checked before the store is read."""
    from harness.analysis import planning, stats
    from harness.report import markdown
    from harness.tracking import experiment_tags, readback

    planning.check(req)
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
        if req.vary and design.kind != "variance":
            raise UsageError(
                f"--vary: needs a variance design's runs in the store (`run --design variance`); experiment {name} has none"
            )
        if design.kind == "variance" and req.sd is None:
            decomposed = _decomposed(runs, design, analysis)
            return [
                f"plan for experiment {name}:",
                *planning.variance_lines(req, analysis, decomposed, _training_seconds(runs)),
            ]
        baseline, _, compared = markdown.analyse(runs, design, analysis, tags)
        tested = {v: c.test for v, c in compared.items() if c.test is not None}
    return [f"plan for experiment {name}:", *planning.lines(req, analysis, baseline, tested)]


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


def promote(uri: str, experiment: str, variant: str, name: str, again: bool = False) -> tuple:
    """Register the model of `variant`'s best seed run (highest validation accuracy at its selected
    epoch; never the test set) as a new version of the registered model `name`, tagged with the
    report's verdict and paired difference. Returns (the model version, the seed run, its tags)."""
    from harness.report import markdown
    from harness.settings import checks, config
    from harness.tracking import experiment_tags, models, names, readback

    checks.checked("", "name", name, str, "--name")
    variant = config.canonical_names([variant], "--variant")[0]
    readback.require_store(uri)
    runs = readback.read_runs(uri, experiment)
    mine = [r for r in runs if r.variant == variant and r.status == "FINISHED"]
    if not mine:
        known = sorted({r.variant for r in runs if r.status == "FINISHED"})
        raise UsageError(
            f"--variant: {variant!r} has no finished run in experiment {experiment!r}; its variants: {', '.join(known) or 'none'}"
        )
    best = max(mine, key=lambda r: (r.metrics.get("selected_val_acc", float("-inf")), -r.seed))
    registry = models.Registry(uri)
    if not registry.has_model(best.run_id):
        raise UsageError(
            f"--variant: run {best.run_id} ({variant} seed {best.seed}) has no logged model (it was trained before runs "
            f"logged their models); train it again with `python -m harness run --rerun`"
        )
    made = [v for m, v in registry.versions_of(best.run_id) if m == name]
    if made and not again:
        raise UsageError(
            f"--name: run {best.run_id} ({variant} seed {best.seed}) is already {name} version {made[-1]}; "
            "nothing new would be registered (pass --again for another version of the same run)"
        )
    tags = readback.experiment_tags(uri, experiment)
    baseline, _, compared = markdown.analyse(
        runs, experiment_tags.design_of(tags), experiment_tags.analysis_of(tags), tags
    )
    c = compared.get(variant)
    version_tags = {
        names.EXPERIMENT_TAG: experiment,
        names.VARIANT_TAG: variant,
        names.SEED_TAG: str(best.seed),
        names.SELECTED_VAL_ACC_TAG: f"{best.metrics.get('selected_val_acc', float('nan')):.2f}",
        names.VERDICT_TAG: "reference" if variant == baseline else c.verdict if c else "not compared",
        names.BASELINE_TAG: baseline,
    }
    if c is not None and c.test is not None:
        version_tags[names.PAIRED_DELTA_TAG] = f"{c.test.diff_mean:+.2f} ({c.test.n} pairs)"
    return registry.register(best.run_id, name, version_tags), best, version_tags
