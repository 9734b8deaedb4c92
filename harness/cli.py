"""The command line: `run`, `tune`, `bench`, `report`, `list` and `ui`.

Bad input ends with one line on stderr and exit code 2 before any work starts (a traceback only
with --debug). Heavy libraries (MLflow, seaborn, Optuna) are imported only by the commands that
need them, so `list` and `--help` answer quickly.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.errors import Terminated, UsageError

EXIT_USAGE, EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, like every other bad input (argparse prints its usage block otherwise)."""
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m harness",
        description="Train CNN ablation variants on one seeded split of CIFAR-10 (or another dataset), track them in MLflow and report the comparison.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train variants × seeds and write the report")
    run.add_argument("--experiment", help="experiment name in experiments/ (e.g. tutorial, quick) or a .toml path")
    run.add_argument("--variants", help="comma-separated variant names (see `list`)")
    run.add_argument("--design", help="list (default: the --variants), factorial (every subset of --factors) or leave-one-out "
                                      "(the full model of --factors, it without each one, and the baseline)")
    run.add_argument("--factors", help="with --design: comma-separated components, e.g. dropout,batchnorm,augment")
    run.add_argument("--yes", action="store_true", help="allow a factorial design of more than 6 factors (64+ cells)")
    run.add_argument("--seeds", help="a count (e.g. 3: seeds 2021, 2022, 2023) or a list (2021,2022); one seed below 33: write it as '7,'")
    run.add_argument("--epochs", type=_int("--epochs"), help="epochs per run")
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--data-dir", help="directory holding the dataset's npz file, e.g. cifar10.npz (default: $HARNESS_DATA_DIR, else ./data)")
    run.add_argument("--dataset", help="cifar10 (default), cifar100 or digits (data.dataset)")
    run.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    run.add_argument("--tuned", action="store_true", help="use the best parameters `tune` wrote for each variant (reports/EXPERIMENT/tuning/)")
    run.add_argument("--params-from", action="append", default=[], metavar="FILE", help="a TOML file of [params.<variant>] tables (as `tune` writes)")
    run.add_argument("--jobs-per-device", type=_int("--jobs-per-device"), default=1, metavar="K",
                     help="train K (variant, seed) runs at once per GPU, or K at once on the CPU, in separate processes (default 1)")
    run.add_argument("--executor", default="local", help="local (default) or ray")
    run.add_argument("--ray-address", help="the Ray cluster to run on (with --executor ray), e.g. 10.0.0.5:6379 or auto")
    run.add_argument("--gpus-per-run", type=float, help="with --executor ray: GPU fraction each run asks for (default 0.25 on a cluster with GPUs, else 0)")
    run.add_argument("--cpus-per-run", type=float, default=1.0, help="with --executor ray: CPUs each run asks for (default 1)")
    run.add_argument("--rerun", action="store_true", help="train finished runs again (by default they are skipped and interrupted ones resumed)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting, e.g. train.lr=0.01, params.dropout.p=0.3 or train.precision=bf16")

    report = sub.add_parser("report", help="rebuild an experiment's report from the MLflow store")
    report.add_argument("--experiment", required=True, help="the experiment's name (or its .toml)")
    report.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    report.add_argument("--reports-dir", default="reports", help="where reports go (default: reports)")

    tune = sub.add_parser("tune", help="search a variant's hyperparameters with Optuna (validation data only)")
    tune.add_argument("--variant", required=True, help="the variant to tune")
    tune.add_argument("--experiment", help="experiment whose [search.<variant>] space is used (default: experiments/default.toml)")
    tune.add_argument("--trials", type=_int("--trials"), default=20, help="total trials of the study, counting earlier ones (default 20)")
    tune.add_argument("--epochs", type=_int("--epochs"), help="epochs per trial")
    tune.add_argument("--seeds", help="seeds each trial trains (a count or a list, as for run; default: the experiment's first seed)")
    tune.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tune.add_argument("--workers", type=_int("--workers"), default=1, help="trial processes on this machine (default 1)")
    tune.add_argument("--study", help="study name (default: EXPERIMENT-VARIANT); the same name resumes")
    tune.add_argument("--storage", help="Optuna storage: a journal file (default optuna/EXPERIMENT.journal) or a database URL shared by many machines")
    tune.add_argument("--pruner", default="median", help="median (default), percentile, hyperband or none")
    tune.add_argument("--data-dir", help="directory holding the dataset's npz file")
    tune.add_argument("--tracking-uri", help="MLflow store")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting")
    tune.add_argument("--worker-share", type=int, help=argparse.SUPPRESS)
    tune.add_argument("--parent-run", help=argparse.SUPPRESS)

    bench = sub.add_parser("bench", help="time one epoch: the tutorial's pipeline vs the harness engine vs the floor")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bench.add_argument("--repeats", type=_int("--repeats"), default=3, help="repeats per way; medians are reported (default 3)")
    bench.add_argument("--data-dir", help="directory holding cifar10.npz (bench times CIFAR-10)")
    bench.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE,...",
                       help="also time the engine with these settings, e.g. precision=bf16,compile=default (repeatable)")
    bench.add_argument("--jobs", metavar="K,K,...", help="instead, measure the aggregate throughput of K training processes at once per device, e.g. 1,2,4,8")
    bench.add_argument("--epochs", type=_int("--epochs"), default=1, help="with --jobs: epochs each process trains (default 1)")
    bench.add_argument("--train-images", type=_int("--train-images"), help="training images per epoch (default: the first 80%% of the training set, 40,000 of CIFAR-10)")
    bench.add_argument("--val-images", type=_int("--val-images"), help="validation images per epoch (default: the other 20%%, 10,000 of CIFAR-10)")
    bench.add_argument("--out", help="where the JSON goes (default reports/bench.json, with --jobs reports/bench-scaling.json)")

    sub.add_parser("list", help="list the registered variants")

    ui = sub.add_parser("ui", help="start the MLflow UI on the store")
    ui.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    ui.add_argument("--port", type=_int("--port"), default=5000)
    return parser


def _int(flag: str):
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None

    return parse


def cmd_run(args: argparse.Namespace) -> int:
    from harness import config, experiment_file
    from harness.console import Console

    flags = {
        "variants": config.parse_variant_list(args.variants) if args.variants is not None else None,
        "seeds": experiment_file.parse_seed_flag(args.seeds) if args.seeds is not None else None,
        "train.epochs": args.epochs,
        "train.device": args.device,
        "data.dir": args.data_dir,
        "data.dataset": args.dataset,
        "tracking_uri": args.tracking_uri,
        **design_flags(args),
    }
    if not 1 <= args.jobs_per_device <= 64:
        raise UsageError(f"--jobs-per-device: {args.jobs_per_device} is not allowed; expected an integer from 1 to 64")
    if args.executor not in ("local", "ray"):
        raise UsageError(f"--executor: {args.executor!r} is not allowed; expected local or ray")
    if args.executor == "ray" and not args.ray_address:
        raise UsageError("--ray-address: required with --executor ray (the cluster's head, e.g. 10.0.0.5:6379, or auto)")
    if args.gpus_per_run is not None and not 0 <= args.gpus_per_run <= 8:
        raise UsageError(f"--gpus-per-run: {args.gpus_per_run} is not allowed; expected a number from 0 to 8")
    if not 0 < args.cpus_per_run <= 256:
        raise UsageError(f"--cpus-per-run: {args.cpus_per_run} is not allowed; expected a number above 0, at most 256")
    if args.jobs_per_device > 1 and args.rerun:
        raise UsageError("--rerun: not allowed with --jobs-per-device > 1 (each process would train the others' runs again); rerun with one process")
    params_files = list(args.params_from)
    console = Console()
    if args.tuned:
        base = experiment_file.load_experiment(args.experiment, args.set, **flags)
        folder = base.reports_folder / "tuning"
        found = [str(p) for p in (folder / f"{v}.toml" for v in base.variants) if p.is_file()]
        if not found:
            raise UsageError(f"--tuned: no tuned parameters in {str(folder)!r}; run `python -m harness tune --variant NAME` first")
        params_files += found
    cfg = experiment_file.load_experiment(args.experiment, args.set, params_files, **flags)
    from harness import designs, outcomes, report, report_effects, runner, tracking

    uri, device, loaded = _prepare(cfg)
    for path in params_files:
        console.line(f"parameters from {path}")
    console.line(f"experiment {cfg.name}: {len(cfg.variants)} variant(s) × {len(cfg.seeds)} seed(s), {cfg.train.epochs} epoch(s) on {device}; "
                 f"data {loaded.source.identity}, split {cfg.data.split} {loaded.split.fingerprint}; store {uri}")
    run = runner.Runner(cfg, loaded, uri, device, console, rerun=args.rerun)
    if args.executor == "ray":
        from harness import ray_executor

        ray_executor.run_on_ray(run, args.ray_address, args.gpus_per_run, args.cpus_per_run)
        results = run.collect()
    elif args.jobs_per_device > 1:
        from harness import processes

        processes.run_in_processes(device, args.argv, args.jobs_per_device, console)
        results = run.collect()
    else:
        results = run.run_all()
    console.line("")
    console.line(outcomes.summary(results))
    tracking.set_experiment_tags(uri, cfg.name, {tracking.REPORT_PARENTS_TAG: ",".join(dict.fromkeys(o.parent_id for o in results if o.parent_id)),
                                                 tracking.DESIGN_TAG: designs.to_tag(cfg.design)})
    runs = tracking.read_runs(uri, cfg.name)
    if cfg.design.kind != "list":
        run.tracker.log_analysis(report_effects.metrics(cfg.design, report.test_accuracy(runs)))
    try:
        path = report.write(runs, cfg.name, cfg.reports_folder, cfg.design)
        console.line(f"report: {path}")
    except OSError as e:  # the runs are safe in the store; `report` rebuilds it later
        print(f"error: report: {e}; the runs are in the store, rebuild with `python -m harness report --experiment {cfg.name}`", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return EXIT_FAILED_RUNS if any(o.status != "FINISHED" for o in results) else 0


def design_flags(args: argparse.Namespace) -> dict:
    """`--design KIND --factors a,b` as [design] settings (`factors`, or `full` for leave-one-out)."""
    if args.design is None:
        if args.factors is not None:
            raise UsageError("--factors: give it with --design factorial or --design leave-one-out")
        return {"design.allow_large": True} if args.yes else {}
    if args.design != "list" and args.factors is None:
        raise UsageError(f"--factors: required with --design {args.design}, e.g. --factors dropout,batchnorm")
    key = "design.full" if args.design == "leave-one-out" else "design.factors"
    return {"design.kind": args.design, **({key: args.factors.split(",")} if args.factors is not None else {}),
            **({"design.allow_large": True} if args.yes else {})}


def _prepare(cfg, with_test: bool = True):
    """Every check before any work, then the experiment's data on the device: (uri, device, data)."""
    from harness import data, datasets, preflight

    uri, device = preflight.check(cfg)
    source = data.read_source(datasets.get(cfg.data.dataset), data.data_dir(cfg.paths.data_dir))
    return uri, device, data.load_split(source, cfg.data.split, cfg.data.train_ratio, cfg.data.split_seed, device, with_test)


def cmd_tune(args: argparse.Namespace) -> int:
    from harness import experiment_file

    flags = {"train.epochs": args.epochs, "data.dir": args.data_dir, "tracking_uri": args.tracking_uri}
    cfg = experiment_file.load_experiment(args.experiment, args.set, **flags)
    seeds = experiment_file.parse_seed_flag(args.seeds) if args.seeds else cfg.seeds[:1]
    from harness import tuning

    req = tuning.TuneRequest(
        variant=args.variant, trials=args.trials, seeds=seeds, timeout=args.timeout, workers=args.workers,
        study=args.study or f"{cfg.name}-{args.variant}", storage=args.storage or str(Path("optuna") / f"{cfg.name}.journal"),
        pruner=args.pruner,
    )
    tuning.check_request(cfg, req)
    uri, _, loaded = _prepare(cfg, with_test=False)  # tuning never loads the test set onto the device

    def say(text: str) -> None:
        print(text, flush=True)

    if args.worker_share is not None:  # one of the processes of `--workers N`
        from harness import tracking

        tracker = tracking.Tracker(uri, cfg.name, cfg.checkpoint_folder)
        tuning.optimize(cfg, loaded, req, tuning.load_study(req, worker=os.getpid()), args.worker_share, args.parent_run, tracker, say)
        return 0
    study = tuning.coordinate(cfg, loaded, uri, req, args.argv, say)
    params_path, _ = tuning.write_results(study, req, cfg.reports_folder / "tuning")
    best = study.best_trial
    say(f"best: trial {best.number}, validation accuracy {best.value:.2f}, {tuning.format_params(best.params)}")
    say(f"parameters: {params_path}")
    from harness import report

    try:
        say(f"report: {report.build(uri, cfg.name, cfg.reports_folder)}")
    except UsageError:
        pass  # no `run` in this experiment yet: the tuning section joins the report when there is one
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness import bench, data, datasets, provenance

    if args.repeats < 1:
        raise UsageError(f"--repeats: {args.repeats} is not allowed; expected an integer >= 1")
    if not 1 <= args.epochs <= 1000:
        raise UsageError(f"--epochs: {args.epochs} is not allowed; expected an integer from 1 to 1000")
    jobs = _parse_jobs(args.jobs) if args.jobs is not None else None
    if jobs and len(args.engine) > 1:
        raise UsageError("--engine: give at most one with --jobs (every process trains with the same settings)")
    device = provenance.resolve_device(args.device)
    extra = {text: bench.parse_engine_settings(text, device) for text in args.engine}
    folder = data.data_dir(args.data_dir or "")
    arrays = data.read_source(datasets.get("cifar10"), folder).arrays
    total = len(arrays.y_train)
    default_train = int(total * 0.8)  # the tutorial's 80/20 hold-out: 40,000 and 10,000 of CIFAR-10's 50,000
    sizes = (args.train_images or default_train, args.val_images or total - default_train)
    if min(sizes) < 1 or sum(sizes) > total:
        raise UsageError(f"--train-images/--val-images: {sizes[0]} + {sizes[1]} is not allowed; expected at least 1 each and "
                         f"at most {total} in all (the training images in {folder})")
    if jobs:
        bench.scaling(folder, device, jobs, args.epochs, Path(args.out or "reports/bench-scaling.json"), *sizes, extra)
    else:
        bench.run(arrays.x_train, arrays.y_train, device, args.repeats, Path(args.out or "reports/bench.json"), *sizes, extra)
    return 0


def _parse_jobs(text: str) -> list[int]:
    try:
        ks = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        ks = []
    if not ks or any(not 1 <= k <= 64 for k in ks) or len(set(ks)) != len(ks):
        raise UsageError(f"--jobs: {text!r} is not allowed; expected distinct integers from 1 to 64, e.g. 1,2,4,8")
    return ks


def cmd_report(args: argparse.Namespace) -> int:
    from harness import experiment_file, report, tracking

    name = args.experiment
    if name.endswith(".toml") or "/" in name:
        name = experiment_file.load_experiment(name).name
    uri = tracking.resolve_uri(args.tracking_uri or "")
    path = report.build(uri, name, Path(args.reports_dir) / name)
    print(f"report: {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from harness import listing
    from harness.console import table

    print(table(listing.HEADERS, listing.rows()))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from harness import tracking, ui

    return ui.launch_ui(tracking.resolve_uri(args.tracking_uri or ""), args.host, args.port)


COMMANDS = {"run": cmd_run, "tune": cmd_tune, "bench": cmd_bench, "report": cmd_report, "list": cmd_list, "ui": cmd_ui}


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted (SIGINT): finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated (SIGTERM): finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED
