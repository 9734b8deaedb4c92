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

from harness.base import credentials, faults, files, parent
from harness.base.errors import StoreError, Terminated, UsageError
from harness.cli import store_commands
from harness.cli.arguments import EXIT_USAGE, component_entries, parser

EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 130, 143


def cmd_run(args: argparse.Namespace) -> int:
    from harness.cli import listing
    from harness.running import experiment
    from harness.running.console import Console

    components = component_entries(args.components)
    shipped_only = not (args.experiment or components or any(s.strip().startswith("components") for s in args.set))
    if shipped_only and args.variants is not None:
        refuse_unknown_components(args.variants, listing.cached_names())
    cfg, params_files = experiment.configure(
        args.experiment, args.set, args.params_from, components, args.tuned, **run_flags(args)
    )
    if shipped_only:  # the next refusal of an unknown name answers without torch
        listing.remember_names()
    done = experiment.run(cfg, execution_of(args), Console(), params_files)
    for problem in done.problems:
        print(f"error: {credentials.mask(problem)}", file=sys.stderr)
    return EXIT_FAILED_RUNS if done.failed else 0


def refuse_unknown_components(variants: str, known: list[str] | None) -> None:
    """`--variants` naming a component that is not registered, refused in one line before torch is
    imported (about 2 s), from the names the last `list` or successful `run` saw for the same
    variant files. Only for the shipped components alone (no experiment file, `--components` or
    installed entry point: their names may depend on code the saved key does not cover); anything
    else, or no names saved yet, is left to the registry's own checks."""
    from harness.base.errors import unknown_component
    from harness.settings import config

    if known is None:
        return
    for variant in config.parse_variant_list(variants):
        parts = [p.strip() for p in variant.split("+")]
        if not all(parts):
            return  # the registry says what is wrong with an empty component
        for part in parts:
            if part != "baseline" and part not in known:
                raise UsageError(f"variants: {unknown_component(part, known)}")


def run_flags(args: argparse.Namespace) -> dict:
    """The `run` flags that are settings, as dotted keys of the experiment's table."""
    from harness.settings import config, designs, experiment_file

    return {
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
        **designs.flags(args.design, args.factors, args.yes),
    }


def execution_of(args: argparse.Namespace):
    """The `run` flags that say where and how it trains."""
    from harness.running.execution import Execution

    return Execution(
        executor=args.executor,
        jobs_per_device=args.jobs_per_device,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        partition=args.partition,
        time=args.time,
        array_parallelism=args.array_parallelism,
        slurm_setup=tuple(args.slurm_setup),
        detach=args.detach,
        rerun=args.rerun,
        redesign=args.redesign,
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from harness.settings import experiment_file
    from harness.tuning import session

    flags = {"train.epochs": args.epochs, "data.dir": args.data_dir, "tracking_uri": args.tracking_uri}
    cfg = experiment_file.load_experiment(
        args.experiment, args.set, components=component_entries(args.components), **flags
    )
    seeds = experiment_file.parse_seed_flag(args.seeds) if args.seeds else None
    req = session.request(
        cfg, args.variant, args.trials, seeds, args.timeout, args.workers, args.study, args.storage, args.pruner
    )
    if args.worker_share is not None:  # one of the processes of `--workers N`
        session.work(cfg, req, args.worker_share, args.parent_run)
    else:
        session.tune(cfg, req)
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
        raise UsageError(
            "--fused: not with --jobs or --engine; it times the engine's default settings, fused and separate"
        )
    if jobs and len(args.engine) > 1:
        raise UsageError("--engine: give at most one with --jobs (every process trains with the same settings)")
    device = provenance.resolve_device(args.device)
    extra = {text: bench.parse_engine_settings(text, device) for text in args.engine}
    folder = loading.data_dir(args.data_dir or "")
    arrays = loading.read_source(datasets.get("cifar10"), folder).arrays
    total = len(arrays.y_train)
    default_train = int(total * 0.8)  # the tutorial's 80/20 hold-out: 40,000 and 10,000 of CIFAR-10's 50,000
    sizes = (
        default_train if args.train_images is None else args.train_images,
        total - default_train if args.val_images is None else args.val_images,
    )
    if min(sizes) < 1 or sum(sizes) > total:
        raise UsageError(
            f"--train-images/--val-images: {sizes[0]} + {sizes[1]} is not allowed; expected at least 1 each and "
            f"at most {total} in all (the training images in {folder})"
        )
    out = Path(
        args.out
        or (
            "reports/bench-scaling.json"
            if jobs
            else "reports/bench-fused.json"
            if fused_sizes
            else "reports/bench.json"
        )
    )
    if (
        args.out is not None
    ):  # a file of the user's choosing: checked like export's (the defaults are the harness's own)
        files.check_target(args.out, "--out", args.force)
    elif out.is_dir():
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


COMMANDS = {
    "run": cmd_run,
    "tune": cmd_tune,
    "bench": cmd_bench,
    "report": store_commands.cmd_report,
    "export": store_commands.cmd_export,
    "plan": store_commands.cmd_plan,
    "promote": store_commands.cmd_promote,
    "verify": store_commands.cmd_verify,
    "list": cmd_list,
    "ui": cmd_ui,
}


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
    if args.debug:  # a failed run's traceback on the console too (harness/running/failures.py); children inherit it
        os.environ["HARNESS_DEBUG"] = "1"
    signal.signal(signal.SIGTERM, _raise_terminated)
    parent.watch()  # a child of `--jobs-per-device` or `--workers` stops when its parent is gone
    try:
        faults.check()
        code = COMMANDS[args.command](args)
        if faults.missed():
            print(faults.missed(), file=sys.stderr)
        return code
    except UsageError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)  # masked: a UsageError masks any password itself
        return EXIT_USAGE
    except StoreError as e:
        print(
            f"error: tracking_uri: {e}; what the store already holds is unchanged",  # a StoreError masks itself
            file=sys.stderr,
        )
        return EXIT_FAILED_RUNS
    except OSError:
        if _cwd_exists():
            raise
        print(
            "error: the working directory was deleted while the command ran, and with it what the command writes there "
            "(relative paths: the store, checkpoints, reports); nothing more can be written",
            file=sys.stderr,
        )
        return EXIT_FAILED_RUNS
    except KeyboardInterrupt:
        print("interrupted (SIGINT): finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated (SIGTERM): finished runs are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED
