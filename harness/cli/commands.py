"""The command line: what `run`, `tune`, `bench`, `report`, `export`, `plan`, `promote`, `list` and `ui` do (their flags: harness/cli/arguments.py).

Bad input ends with one line on stderr and exit code 2 before any work starts (a traceback only
with --debug). Heavy libraries (MLflow, seaborn, Optuna) are imported only by the commands that
need them, so `list` and `--help` answer quickly.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.base import faults, parent
from harness.base.errors import StoreError, Terminated, UsageError
from harness.cli import executors, store_commands
from harness.cli.arguments import EXIT_USAGE, component_entries, parser

EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 130, 143


def cmd_run(args: argparse.Namespace) -> int:
    from harness.running.console import Console
    from harness.settings import config, experiment_file

    flags = {
        "variants": config.parse_variant_list(args.variants) if args.variants is not None else None,
        "seeds": experiment_file.parse_seed_flag(args.seeds, auto=True) if args.seeds is not None else None,
        "max_seeds": args.max_seeds,
        "analysis.margin": args.margin,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "train.fuse": (int(args.fuse) if args.fuse.isdigit() else args.fuse) if args.fuse is not None else None,
        "data.dir": args.data_dir,
        "data.dataset": args.dataset,
        "tracking_uri": args.tracking_uri,
        **design_flags(args),
    }
    if not 1 <= args.jobs_per_device <= 64:
        raise UsageError(f"--jobs-per-device: {args.jobs_per_device} is not allowed; expected an integer from 1 to 64")
    slurm = executors.check(args)
    if args.jobs_per_device > 1 and args.rerun:
        raise UsageError("--rerun: not allowed with --jobs-per-device > 1 (each process would train the others' runs again); rerun with one process")
    if args.max_seeds is not None and args.seeds is not None and flags["seeds"] != "auto":
        raise UsageError(f"--max-seeds: only with --seeds auto (seeds on demand), not with --seeds {args.seeds}")
    params_files = list(args.params_from)
    console = Console()
    components = component_entries(args.components)
    if args.tuned:
        base = experiment_file.load_experiment(args.experiment, args.set, components=components, **flags)
        folder = base.reports_folder / "tuning"
        from harness.settings.designs import bases

        found = [str(p) for p in (folder / f"{v}.toml" for v in bases(base.variants)) if p.is_file()]  # v@SOURCE runs use v's
        if not found:
            raise UsageError(f"--tuned: no tuned parameters in {str(folder)!r}; run `python -m harness tune --variant NAME` first")
        params_files += found
    cfg = experiment_file.load_experiment(args.experiment, args.set, params_files, components, **flags)
    if cfg.sequential and (args.executor != "local" or args.jobs_per_device > 1):
        raise UsageError(f"--seeds auto: its rounds run in one process; not with {'--executor ' + args.executor if args.executor != 'local' else '--jobs-per-device > 1'}")
    if cfg.runtime.fuse != "off" and args.executor != "local":
        raise UsageError(f"train.fuse: {cfg.runtime.fuse!r} is only for the local executor; with --executor {args.executor} each run is a task of its own (fuse = \"off\")")
    from harness.data import user_data
    from harness.report import comparisons, effects_section, markdown
    from harness.running import outcomes, preflight, runner
    from harness.settings import checks, designs
    from harness.tracking import experiment_tags, readback, store

    uri, device, loaded = _prepare(cfg)
    args.resolved = (cfg.name, uri, cfg.reports_folder)  # what the Python API reads back (harness/api)
    for path in params_files:
        console.line(f"parameters from {path}")
    seeds = (f"seeds on demand ({cfg.sequential.min_seeds} to {cfg.sequential.max_seeds}, group-sequential)" if cfg.sequential
             else f"{len(cfg.seeds)} seed(s)")
    console.line(f"experiment {cfg.name}: {len(cfg.variants)} variant(s) × {seeds}, {cfg.train.epochs} epoch(s) on {device}; "
                 f"data {loaded.source.identity}, split {cfg.data.split} "
                 f"{'drawn per seed' if cfg.data.split_seed == 'per_seed' else loaded.split.fingerprint}; store {uri}")
    if user_data.is_user_dataset(cfg.data.dataset):  # say what it is (and, for a folder, where its test set comes from)
        console.line(f"data: {loaded.source.dataset.source}")
    run = runner.Runner(cfg, loaded, uri, device, console, rerun=args.rerun)
    frozen = preflight.freeze_design(uri, cfg, args.redesign) if cfg.sequential else {}
    if args.executor == "ray":
        from harness.running import ray_executor

        failures = ray_executor.run_on_ray(run, args.ray_address, args.gpus_per_run, args.cpus_per_run)
        results = outcomes.with_errors(run.collect(), failures)
    elif args.executor == "slurm":
        from harness.running import slurm_executor

        failures = slurm_executor.run_on_slurm(run, slurm)
        if slurm.detach:  # what the report job reads: the experiment's design and analysis settings
            store.set_experiment_tags(uri, cfg.name, {**frozen, **experiment_tags.of_run(cfg, [o.parent_id for o in run.collect()])})
            return 0
        results = outcomes.with_errors(run.collect(), failures)
    elif args.jobs_per_device > 1:
        from harness.running import processes

        processes.run_in_processes(device, args.argv, args.jobs_per_device, console)
        results = run.collect()
    else:
        try:
            results = run.run_all()
        finally:
            console.close()
    console.line("")
    console.line(outcomes.summary(results))
    store_error = run.store_error
    tags = {**frozen, **experiment_tags.of_run(cfg, [o.parent_id for o in results])}
    try:  # what the report and the MLflow UI say about the experiment; a store that takes no writes skips it
        store.set_experiment_tags(uri, cfg.name, tags)
    except store.StoreError as e:
        store_error = store_error or str(e)
    runs = readback.read_runs(uri, cfg.name)
    _, _, compared = markdown.analyse(runs, cfg.design, cfg.analysis, tags)
    parents = {v: r.parent_id for r in runs for v in [r.variant]}
    try:
        store.log_comparisons(uri, {parents[v]: (comparisons.parent_metrics(c), c.verdict) for v, c in compared.items()})
        if cfg.design.kind in designs.CELLS:
            run.tracker.log_analysis(effects_section.metrics(cfg.design, comparisons.counts(runs), cfg.analysis))
    except store.StoreError as e:
        store_error = store_error or str(e)
    try:
        path = markdown.write(runs, cfg.name, cfg.reports_folder, cfg.design, cfg.analysis, tags)
        console.line(f"report: {path} and {path.with_suffix('.html').name}")
    except OSError as e:  # the runs are safe in the store; `report` rebuilds it later
        print(f"error: report: {e}; the runs are in the store, rebuild with `python -m harness report {checks.experiment_flag(cfg.name)}`", file=sys.stderr)
        return EXIT_FAILED_RUNS
    if store_error:
        done = sum(1 for r in runs if r.status == "FINISHED")
        print(f"error: tracking_uri: {uri}: {store_error}; the {done} finished run(s) are in the store and in the report; "
              "make room and rerun the same command to train the rest", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return EXIT_FAILED_RUNS if any(o.status != "FINISHED" for o in results) else 0


def design_flags(args: argparse.Namespace) -> dict:
    """`--design KIND --factors a,b` as [design] settings (`factors`, `full` for leave-one-out, `sources` for variance)."""
    from harness.settings import designs

    if args.design is None:
        if args.factors is not None:
            raise UsageError("--factors: give it with --design factorial, leave-one-out or variance")
        return {"design.allow_large": True} if args.yes else {}
    if args.design in designs.CELLS and args.factors is None:
        raise UsageError(f"--factors: required with --design {args.design}, e.g. --factors dropout,batchnorm")
    key = f"design.{designs.TABLE_KEY.get(args.design, 'factors')}"
    return {"design.kind": args.design, **({key: [f.strip() for f in args.factors.split(",")]} if args.factors is not None else {}),
            **({"design.allow_large": True} if args.yes else {})}


def _prepare(cfg, with_test: bool = True):
    """Every check before any work, then the experiment's data on the device: (uri, device, data)."""
    from harness.data import datasets, loading
    from harness.running import preflight

    uri, device = preflight.check(cfg)
    source = loading.read_source(datasets.get(cfg.data.dataset, cfg.data.image_size), loading.data_dir(cfg.paths.data_dir))
    split_seed = loading.split_seed_of(cfg.data.split_seed, cfg.seeds[0])  # per_seed: the first seed's split (the runner draws the others)
    return uri, device, loading.load_split(source, cfg.data.split, cfg.data.train_ratio, split_seed, device, with_test)


def cmd_tune(args: argparse.Namespace) -> int:
    from harness.settings import experiment_file

    flags = {"train.epochs": args.epochs, "data.dir": args.data_dir, "tracking_uri": args.tracking_uri}
    cfg = experiment_file.load_experiment(args.experiment, args.set, components=component_entries(args.components), **flags)
    seeds = experiment_file.parse_seed_flag(args.seeds) if args.seeds else cfg.seeds[:1]
    from harness.tuning import tuner

    req = tuner.TuneRequest(
        variant=args.variant, trials=args.trials, seeds=seeds, timeout=args.timeout, workers=args.workers,
        study=args.study or f"{cfg.name}-{args.variant}", storage=args.storage or str(Path("optuna") / f"{cfg.name}.journal"),
        pruner=args.pruner,
    )
    tuner.check_request(cfg, req)
    uri, _, loaded = _prepare(cfg, with_test=False)  # tuning never loads the test set onto the device

    def say(text: str) -> None:
        print(text, flush=True)

    if args.worker_share is not None:  # one of the processes of `--workers N`
        from harness.tracking import store

        tracker = store.Tracker(uri, cfg.name, cfg.checkpoint_folder)
        tuner.optimize(cfg, loaded, req, tuner.load_study(req, worker=os.getpid()), args.worker_share, args.parent_run, tracker, say)
        return 0
    study = tuner.coordinate(cfg, loaded, uri, req, args.argv, say)
    params_path, _ = tuner.write_results(study, req, cfg.reports_folder / "tuning")
    best = study.best_trial
    say(f"best: trial {best.number}, validation accuracy {best.value:.2f}, {tuner.format_params(best.params)}")
    say(f"parameters: {params_path}")
    from harness.report import markdown

    try:
        path = markdown.build(uri, cfg.name, cfg.reports_folder)
        say(f"report: {path} and {path.with_suffix('.html').name}")
    except UsageError:
        pass  # no `run` in this experiment yet: the tuning section joins the report when there is one
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.cli import bench
    from harness.data import datasets, loading
    from harness.running import preflight
    from harness.tracking import provenance

    if args.repeats < 1:
        raise UsageError(f"--repeats: {args.repeats} is not allowed; expected an integer >= 1")
    if not 1 <= args.epochs <= 1000:
        raise UsageError(f"--epochs: {args.epochs} is not allowed; expected an integer from 1 to 1000")
    jobs = _parse_jobs(args.jobs) if args.jobs is not None else None
    fused_sizes = _parse_jobs(args.fused, "--fused") if args.fused is not None else None
    if fused_sizes and (jobs or args.engine):
        raise UsageError("--fused: not with --jobs or --engine; it times the engine's default settings, fused and separate")
    if jobs and len(args.engine) > 1:
        raise UsageError("--engine: give at most one with --jobs (every process trains with the same settings)")
    device = provenance.resolve_device(args.device)
    extra = {text: bench.parse_engine_settings(text, device) for text in args.engine}
    folder = loading.data_dir(args.data_dir or "")
    arrays = loading.read_source(datasets.get("cifar10"), folder).arrays
    total = len(arrays.y_train)
    default_train = int(total * 0.8)  # the tutorial's 80/20 hold-out: 40,000 and 10,000 of CIFAR-10's 50,000
    sizes = (default_train if args.train_images is None else args.train_images, total - default_train if args.val_images is None else args.val_images)
    if min(sizes) < 1 or sum(sizes) > total:
        raise UsageError(f"--train-images/--val-images: {sizes[0]} + {sizes[1]} is not allowed; expected at least 1 each and "
                         f"at most {total} in all (the training images in {folder})")
    out = Path(args.out or ("reports/bench-scaling.json" if jobs else "reports/bench-fused.json" if fused_sizes else "reports/bench.json"))
    if out.is_dir():
        raise UsageError(f"--out: {str(out)!r} is a directory; expected the path of the JSON file to write")
    preflight.check_writable(out.parent, "--out")  # before minutes of measuring
    if fused_sizes:
        from harness.cli import bench_fused

        bench_fused.run(arrays.x_train, arrays.y_train, device, fused_sizes, args.repeats, out, *sizes)
    elif jobs:
        bench.scaling(folder, device, jobs, args.epochs, out, *sizes, extra)
    else:
        bench.run(arrays.x_train, arrays.y_train, device, args.repeats, out, *sizes, extra)
    return 0


def _parse_jobs(text: str, flag: str = "--jobs") -> list[int]:
    try:
        ks = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        ks = []
    if not ks or any(not 1 <= k <= 64 for k in ks) or len(set(ks)) != len(ks):
        raise UsageError(f"{flag}: {text!r} is not allowed; expected distinct integers from 1 to 64, e.g. 1,2,4,8")
    return ks


def cmd_list(args: argparse.Namespace) -> int:
    from harness.cli import listing
    from harness.running.console import table

    print(table(listing.HEADERS, listing.rows(component_entries(args.components))))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from harness.cli import ui
    from harness.tracking import store

    return ui.launch_ui(store.resolve_uri(args.tracking_uri or ""), args.host, args.port)


COMMANDS = {"run": cmd_run, "tune": cmd_tune, "bench": cmd_bench, "report": store_commands.cmd_report, "export": store_commands.cmd_export, "plan": store_commands.cmd_plan,
            "promote": store_commands.cmd_promote,
            "list": cmd_list, "ui": cmd_ui}


def _cwd_exists() -> bool:
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    # MLflow's usage telemetry (its documented switch): off unless the user turned it on themselves;
    # children (workers, the UI's server) inherit it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    parent.watch()  # a child of `--jobs-per-device` or `--workers` stops when its parent is gone
    try:
        faults.check()
        return COMMANDS[args.command](args)
    except UsageError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as e:
        print(f"error: tracking_uri: {e}; what the store already holds is unchanged", file=sys.stderr)
        return EXIT_FAILED_RUNS
    except OSError:
        if _cwd_exists():
            raise
        print("error: the working directory was deleted while the command ran, and with it what the command writes there "
              "(relative paths: the store, checkpoints, reports); nothing more can be written", file=sys.stderr)
        return EXIT_FAILED_RUNS
    except KeyboardInterrupt:
        print("interrupted (SIGINT): finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated (SIGTERM): finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED
