"""An experiment from settings to report, as library functions: what `python -m harness run` and
`harness.run(...)` both call.

- `configure`: the experiment file, tuned parameters, flags and `--set` as one checked configuration.
- `run`: check the execution, prepare the data, train every pair on the chosen executor, then `finish`.
- `finish`: tag the experiment, read its runs back, analyse them once, log the comparisons on the
  variants' parent runs and write the report. A report or store that fails is a `problem`: the
  runs stay in the store and the caller says so (the CLI: one line each on stderr, exit 1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from harness.base.errors import UsageError
from harness.running import execution
from harness.running.console import Console
from harness.running.execution import Execution
from harness.running.outcomes import Outcome, summary
from harness.settings.config import ExperimentConfig

if TYPE_CHECKING:  # preflight imports torch: `configure` and its refusals answer without it
    from harness.running import preflight


@dataclasses.dataclass
class Finished:
    """What a `run` left: its experiment, store and reports folder, one outcome per pair, the
    report's path (None when it could not be written or the runs were detached) and the problems
    to report (the runs are safe in the store whatever they say)."""

    name: str
    uri: str
    reports_folder: Path
    outcomes: list[Outcome]
    report: Path | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    detached: bool = False

    @property
    def failed(self) -> bool:
        """Whether the command failed: a problem, or a pair that did not finish."""
        return bool(self.problems) or any(o.status != "FINISHED" for o in self.outcomes)


def configure(
    experiment: str | None = None,
    sets: list[str] = (),
    params_files: list[str] = (),
    components: list[str] = (),
    tuned: bool = False,
    **flags,
) -> tuple[ExperimentConfig, list[str]]:
    """The checked configuration (experiment_file.load_experiment with `flags` as dotted settings,
    e.g. {"train.epochs": 2}) and the files of tuned parameters it used: `params_files`, and with
    `tuned` the ones `tune` wrote for each variant."""
    from harness.settings import experiment_file
    from harness.settings.designs import bases

    seeds, max_seeds = flags.get("seeds"), flags.get("max_seeds")
    if max_seeds is not None and seeds is not None and seeds != "auto":
        shown = seeds if isinstance(seeds, (str, int)) else ",".join(map(str, seeds))
        raise UsageError(f"--max-seeds: only with --seeds auto (seeds on demand), not with --seeds {shown}")
    files = list(params_files)
    if tuned:
        base = experiment_file.load_experiment(experiment, sets, components=components, **flags)
        folder = base.reports_folder / "tuning"
        # v@SOURCE runs use v's
        found = [str(p) for p in (folder / f"{v}.toml" for v in bases(base.variants)) if p.is_file()]
        if not found:
            raise UsageError(
                f"--tuned: no tuned parameters in {str(folder)!r}; run `python -m harness tune --variant NAME` first"
            )
        files += found
    return experiment_file.load_experiment(experiment, sets, files, components, **flags), files


def run(
    cfg: ExperimentConfig,
    ex: Execution = Execution(),
    console: Console | None = None,
    params_files: list[str] = (),
    command: str | None = None,
    report: bool = True,
) -> Finished:
    """Train every (variant, seed) pair of `cfg` not finished yet (all of them with `ex.rerun`),
    on `ex.executor`, then `finish`. Bad input raises UsageError before any work starts. `command`:
    what the runs record as their command (default: this process's command line). Without
    `report` (`verify`'s scratch runs) it stops once the runs are recorded: no comparison, no report."""
    from harness.data import user_data
    from harness.running import preflight
    from harness.running import runner as runner_mod

    slurm = execution.check(ex)
    execution.check_with(ex, cfg)
    console = console or Console()
    ready = preflight.prepare(cfg)
    for path in params_files:
        console.line(f"parameters from {path}")
    console.line(_headline(cfg, ready))
    if user_data.is_user_dataset(cfg.data.dataset):  # say what it is (and, for a folder, where its test set comes from)
        console.line(f"data: {ready.data.source.dataset.source}")
    for variant, sources in cfg.design.skipped:
        console.line(
            f"variance design: {variant} draws nothing from {', '.join(sources)}; not varied for it (each run would be the same)"
        )
    estimate = _estimate(cfg, ready)
    if estimate:
        console.line(estimate)
    runner = runner_mod.Runner(cfg, ready.data, ready.uri, ready.device, console, ex.rerun, command)
    if cfg.sequential:
        from harness.tracking import experiment_tags

        frozen = preflight.freeze_design(ready.uri, cfg, ex.redesign)
        runner.rule = experiment_tags.rule_of(frozen)  # a design keeps the rule it started with
    else:
        frozen = preflight.keep_sequential(ready.uri, cfg, ex.redesign)
    outcomes = _train(runner, ex, slurm, console, ready.data.source.identity)
    if outcomes is None:  # detached: a last Slurm job writes the report; what it reads is the experiment's tags
        from harness.tracking import store

        store.set_experiment_tags(ready.uri, cfg.name, _tags(cfg, frozen, runner.collect()))
        return Finished(cfg.name, ready.uri, cfg.reports_folder, [], detached=True)
    console.line("")
    console.line(summary(outcomes))
    if not report:
        return Finished(cfg.name, ready.uri, cfg.reports_folder, outcomes)
    return finish(cfg, ready.uri, outcomes, frozen, console, runner)


LONG_SECONDS = 300.0  # a study estimated longer than this says so before it starts
SLOWEST_STEP = 1.0  # seconds: a study with fewer steps than LONG_SECONDS / this is short without timing it


def _estimate(cfg: ExperimentConfig, ready: preflight.Prepared) -> str:
    """One line before a long study: its size and about how long it trains, from three timed steps
    of the baseline's network on this device ('' for a short one, or under torch.compile)."""
    from harness.running.assembly import assemble
    from harness.running.console import duration
    from harness.settings import config
    from harness.training import engine

    if cfg.runtime.compile != "off":
        return ""
    seeds = cfg.sequential.max_seeds if cfg.sequential else len(cfg.seeds)
    runs, epochs, t = len(cfg.variants) * seeds, cfg.train.epochs, ready.data.tensors
    spec = config.resolve(cfg, cfg.baseline if cfg.baseline in cfg.variants else cfg.variants[0], cfg.seeds[0])
    # a step per training batch, and evaluation (forward only) at about a third of a step per batch
    steps = -(-len(t.y_train) // spec.train.batch_size) + len(t.y_val) / spec.train.batch_size / 3
    if runs * epochs * steps * SLOWEST_STEP < LONG_SECONDS:
        return ""  # short even at a second a step: not worth timing
    build, _ = assemble(spec, ready.data.source.dataset)
    step = engine.time_step(build, t.x_train, t.y_train, spec.train, cfg.runtime)
    seconds = runs * epochs * steps * step
    if seconds < LONG_SECONDS:
        return ""
    return (
        f"size: {runs} runs × {epochs} epochs; about {duration(seconds)} of training on {ready.device} "
        f"({1000 * step:.0f} ms a step of {cfg.baseline}; fused groups and finished runs take less). "
        "--epochs or fewer --seeds to shorten; Ctrl-C keeps what finished"
    )


def _headline(cfg: ExperimentConfig, ready: preflight.Prepared) -> str:
    if cfg.sequential:
        seeds = f"seeds on demand ({cfg.sequential.min_seeds} to {cfg.sequential.max_seeds}, group-sequential)"
    else:
        seeds = f"{len(cfg.seeds)} seed(s)"
    split = "drawn per seed" if cfg.data.split_seed == "per_seed" else ready.data.split.fingerprint
    return (
        f"experiment {cfg.name}: {len(cfg.variants)} variant(s) × {seeds}, {cfg.train.epochs} epoch(s) on {ready.device}; "
        f"data {ready.data.source.identity}, split {cfg.data.split} {split}; store {ready.uri}"
    )


def _train(runner, ex: Execution, slurm, console: Console, identity: str) -> list[Outcome] | None:
    """Every pair on the executor; None when Slurm's runs were submitted detached. `identity`: the
    data as this command checked it (the processes of --jobs-per-device train on it or stop)."""
    from harness.running import outcomes

    if ex.executor == "ray":
        from harness.running import ray_executor

        failures = ray_executor.run_on_ray(runner, ex.ray_address, ex.gpus_per_run, ex.cpus_per_run)
        return outcomes.with_errors(runner.collect(), failures)
    if ex.executor == "slurm":
        from harness.running import slurm_executor

        failures = slurm_executor.run_on_slurm(runner, slurm)
        return None if slurm.detach else outcomes.with_errors(runner.collect(), failures)
    if ex.jobs_per_device > 1:
        from harness.running import processes

        processes.run_in_processes(runner.cfg, runner.device, ex.jobs_per_device, console, identity)
        return runner.collect()
    try:
        return runner.run_all()
    finally:
        console.close()


def _tags(cfg: ExperimentConfig, frozen: dict[str, str], outcomes: list[Outcome]) -> dict[str, str]:
    """The experiment's tags: its design and analysis settings (what the report and the MLflow UI read)."""
    from harness.tracking import experiment_tags, names

    kind = {names.EXPERIMENT_KIND_TAG: names.EXPERIMENT_KIND}  # an experiment made before MLflow 3 gets it too
    return {**kind, **frozen, **experiment_tags.of_run(cfg, [o.parent_id for o in outcomes])}


def finish(
    cfg: ExperimentConfig,
    uri: str,
    outcomes: list[Outcome],
    frozen: dict[str, str] | None = None,
    console: Console | None = None,
    runner=None,
) -> Finished:
    """Tag the experiment, read its runs back, analyse them once, log each variant's comparison on
    its parent run (and a factorial design's effects) and write the report. `runner`: the one that
    trained, whose store error (a full disk, a read-only store) is reported here."""
    from harness.report import comparisons, effects_section, markdown
    from harness.running import stored
    from harness.settings import checks, designs
    from harness.tracking import readback, store

    console = console or Console()
    store_error = runner.store_error if runner is not None else ""
    tags = _tags(cfg, frozen or {}, outcomes)
    try:  # what the report and the MLflow UI say about the experiment; a store that takes no writes skips it
        store.set_experiment_tags(uri, cfg.name, tags)
    except store.StoreError as e:
        store_error = store_error or str(e)
    runs = readback.read_runs(uri, cfg.name)
    analysed = markdown.analysed(runs, cfg.design, cfg.analysis, tags)
    parents = {r.variant: r.parent_id for r in runs}
    try:
        compared = analysed.comparisons
        store.log_comparisons(
            uri, {parents[v]: (comparisons.parent_metrics(c), c.verdict) for v, c in compared.items()}
        )
        if cfg.design.kind in designs.CELLS:
            tracker = runner.tracker if runner is not None else store.Tracker(uri, cfg.name, cfg.checkpoint_folder)
            tracker.log_analysis(effects_section.metrics(cfg.design, comparisons.counts(runs), cfg.analysis))
    except store.StoreError as e:
        store_error = store_error or str(e)
    for line in markdown.chance_lines(runs):
        console.line(f"warning: {line.replace('`', '')}")
    done = Finished(cfg.name, uri, cfg.reports_folder, outcomes)
    try:
        done.report = markdown.write(runs, cfg.name, cfg.reports_folder, cfg.design, cfg.analysis, tags, analysed)
        console.line(f"report: {done.report} and {done.report.with_suffix('.html').name}")
        try:  # read again after this command's last write: the export that follows reads no runs
            stored.keep_exports(uri, cfg.name)
        except Exception:  # noqa: BLE001 - kept exports only save time; an export computes what it needs itself
            pass
    except OSError as e:  # the runs are safe in the store; `report` rebuilds it later
        rebuild = f"python -m harness report {checks.experiment_flag(cfg.name)}"
        done.problems.append(f"report: {e}; the runs are in the store, rebuild with `{rebuild}`")
        return done
    if store_error:
        finished = sum(1 for r in runs if r.status == "FINISHED")
        done.problems.append(
            f"tracking_uri: {uri}: {store_error}; the {finished} finished run(s) are in the store and in the report; "
            "make room and rerun the same command to train the rest"
        )
    return done
