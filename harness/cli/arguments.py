"""The command line's flags: one sub-command parser each, and bad flags as one line (exit 2)."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, like every other bad input (argparse prints its usage block otherwise)."""
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


class RaisingParser(_Parser):
    """For the Python API: a bad flag raises the UsageError the command line would print."""

    def error(self, message: str):
        from harness.base.errors import UsageError

        raise UsageError(f"{message} (see {self.prog} --help)")


def parser(cls: type[argparse.ArgumentParser] = _Parser) -> argparse.ArgumentParser:
    top = cls(
        prog="python -m harness",
        description="Train CNN ablation variants on one seeded split of CIFAR-10 (or another dataset), track them in MLflow and report the comparison.",
    )
    top.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train variants × seeds and write the report")
    run.add_argument(
        "--experiment", help="a shipped experiment (default, quick, tutorial), one in ./experiments/, or a .toml path"
    )
    run.add_argument("--variants", help="comma-separated variant names (see `list`)")
    _components(run)
    run.add_argument(
        "--design",
        help="list (default: the --variants), factorial (every subset of --factors), leave-one-out "
        "(the full model of --factors, it without each one, and the baseline) or variance (each of the "
        "--variants with one source of randomness varied at a time, and all of them: where the noise comes from)",
    )
    run.add_argument(
        "--factors",
        help="with --design: comma-separated components, e.g. dropout,batchnorm,augment; with --design variance "
        "the sources to vary, from init,order,dropout,augment,split (default: all)",
    )
    run.add_argument("--yes", action="store_true", help="allow a factorial design of more than 6 factors (64+ cells)")
    run.add_argument(
        "--seeds",
        help="a count (e.g. 3: seeds 2021, 2022, 2023) or a list (2021,2022); a lone number is always a count; name one seed as '7,'; "
        "auto: add paired seeds in rounds until every comparison with the baseline is decided",
    )
    run.add_argument(
        "--max-seeds", type=_integer, help="with --seeds auto: the most seeds any variant gets (default 20)"
    )
    run.add_argument(
        "--margin",
        type=float,
        help="points: differences within ±margin count as equivalent (analysis.margin, default 0.5)",
    )
    run.add_argument("--epochs", type=_integer, help="epochs per run")
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    run.add_argument(
        "--fuse",
        help="off (default), auto (the group size measured fastest on the device) or K: train up to K runs "
        "that share a network as one fused program (train.fuse; docs/performance.md)",
    )
    run.add_argument(
        "--data-dir",
        help="directory holding the dataset's npz file, e.g. cifar10.npz (default: $HARNESS_DATA_DIR, else ./data)",
    )
    run.add_argument(
        "--dataset",
        help="cifar10 (default), cifar100, digits, folder:PATH (one subfolder per class) or npz:PATH (data.dataset)",
    )
    _store(run)
    run.add_argument(
        "--tuned",
        action="store_true",
        help="use the best parameters `tune` wrote for each variant (reports/EXPERIMENT/tuning/)",
    )
    run.add_argument(
        "--params-from",
        action="append",
        default=[],
        metavar="FILE",
        help="a TOML file of [params.<variant>] tables (as `tune` writes)",
    )
    run.add_argument(
        "--jobs-per-device",
        type=_integer,
        default=1,
        metavar="K",
        help="train K (variant, seed) runs at once per GPU, or K at once on the CPU, in separate processes (default 1)",
    )
    run.add_argument("--executor", default="local", help="local (default), ray or slurm (docs/scaling-out.md)")
    run.add_argument(
        "--ray-address", help="the Ray cluster to run on (with --executor ray), e.g. 10.0.0.5:6379 or auto"
    )
    run.add_argument(
        "--gpus-per-run",
        type=float,
        help="GPUs each run asks for: with ray a fraction (default 0.25 on a cluster with GPUs, else 0); "
        "with slurm a whole number (default 0)",
    )
    run.add_argument(
        "--cpus-per-run",
        type=float,
        default=1.0,
        help="with --executor ray or slurm: CPUs each run asks for (default 1; whole with slurm)",
    )
    run.add_argument(
        "--partition", help="with --executor slurm: the partition the array tasks run in (default: the cluster's)"
    )
    run.add_argument(
        "--time",
        help="with --executor slurm: each task's time limit, as sbatch takes it (90, 1:30:00, 2-00:00; default 60 minutes); "
        "a task near its limit requeues itself and resumes",
    )
    run.add_argument(
        "--array-parallelism",
        type=_integer,
        help="with --executor slurm: at most this many tasks at once (default 256)",
    )
    run.add_argument(
        "--slurm-setup",
        action="append",
        default=[],
        metavar="LINE",
        help="with --executor slurm: a shell line each task runs first, e.g. 'module load cuda' (repeatable)",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="with --executor slurm: submit and return at once; a last job writes the report",
    )
    run.add_argument(
        "--redesign",
        action="store_true",
        help="with --seeds auto: allow changing a started design's seeds, margin, alpha, test or variants (the report discloses it)",
    )
    run.add_argument(
        "--rerun",
        action="store_true",
        help="train finished runs again (by default they are skipped and interrupted ones resumed)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. train.lr=0.01, params.dropout.p=0.3 or train.precision=bf16",
    )

    report = sub.add_parser("report", help="rebuild an experiment's report from the MLflow store")
    report.add_argument(
        "--experiment", default="default", help="the experiment's name (or its .toml); default: default, as for run"
    )
    _store(report)
    report.add_argument(
        "--reports-dir", help="where reports go (default: the experiment file's reports_dir, else reports)"
    )

    export = sub.add_parser("export", help="one of the report's tables as CSV, JSON or LaTeX (for pandas or a paper)")
    export.add_argument(
        "--experiment", default="default", help="the experiment's name (or its .toml); default: default, as for run"
    )
    export.add_argument("--format", required=True, help="csv, json (tidy, for pandas) or latex (booktabs)")
    export.add_argument(
        "--table",
        default="comparison",
        help="comparison (default: one row per variant), compact (variant, Δ [CI], verdict: for a paper), statistics "
        "(every paired test), effects (a factorial or leave-one-out design's) or runs (one row per run, with MLflow run ids)",
    )
    export.add_argument(
        "--name-in-caption", action="store_true", help="LaTeX: start the caption with the experiment's name"
    )
    export.add_argument("--out", help="the file to write (default: standard output); an existing one only with --force")
    export.add_argument("--force", action="store_true", help="replace --out if it exists (never the store itself)")
    _store(export)

    tune = sub.add_parser("tune", help="search a variant's hyperparameters with Optuna (validation data only)")
    tune.add_argument("--variant", required=True, help="the variant to tune")
    _components(tune)
    tune.add_argument(
        "--experiment",
        help="experiment whose [search.<variant>] space is used (default: harness/experiments/default.toml)",
    )
    tune.add_argument(
        "--trials", type=_integer, default=20, help="total trials of the study, counting earlier ones (default 20)"
    )
    tune.add_argument("--epochs", type=_integer, help="epochs per trial")
    tune.add_argument(
        "--seeds", help="seeds each trial trains (a count or a list, as for run; default: the experiment's first seed)"
    )
    tune.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tune.add_argument("--workers", type=_integer, default=1, help="trial processes on this machine (default 1)")
    tune.add_argument("--study", help="study name (default: EXPERIMENT-VARIANT); the same name resumes")
    tune.add_argument(
        "--storage",
        help="Optuna storage: a journal file (default optuna/EXPERIMENT.journal) or a database URL shared by many machines",
    )
    tune.add_argument("--pruner", default="median", help="median (default), percentile, hyperband or none")
    tune.add_argument("--data-dir", help="directory holding the dataset's npz file")
    _store(tune)
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any setting")
    tune.add_argument("--worker-share", type=int, help=argparse.SUPPRESS)
    tune.add_argument("--parent-run", help=argparse.SUPPRESS)

    bench = sub.add_parser("bench", help="time one epoch: the tutorial's pipeline vs the harness engine vs the floor")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bench.add_argument("--repeats", type=_integer, default=3, help="repeats per way; medians are reported (default 3)")
    bench.add_argument("--data-dir", help="directory holding cifar10.npz (bench times CIFAR-10)")
    bench.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="also time the engine with these settings, e.g. precision=bf16,compile=default (repeatable)",
    )
    bench.add_argument(
        "--jobs",
        metavar="K,K,...",
        help="instead, measure the aggregate throughput of K training processes at once per device, e.g. 1,2,4,8",
    )
    bench.add_argument(
        "--fused",
        metavar="K,K,...",
        help="instead, time K runs as one fused group against K separate runs, e.g. 1,2,4,8 (train.fuse)",
    )
    bench.add_argument("--epochs", type=_integer, default=1, help="with --jobs: epochs each process trains (default 1)")
    bench.add_argument(
        "--train-images",
        type=_integer,
        help="training images per epoch (default: the first 80%% of the training set, 40,000 of CIFAR-10)",
    )
    bench.add_argument(
        "--val-images", type=_integer, help="validation images per epoch (default: the other 20%%, 10,000 of CIFAR-10)"
    )
    bench.add_argument(
        "--out",
        help="where the JSON goes (default reports/bench.json, with --jobs reports/bench-scaling.json); "
        "an existing file of your choosing only with --force",
    )
    bench.add_argument("--force", action="store_true", help="replace --out if it exists")

    listing = sub.add_parser("list", help="list the registered components and where each comes from")
    _components(listing)

    plan = sub.add_parser(
        "plan", help="how many seeds each comparison needs, from the spread of paired differences in the store"
    )
    plan.add_argument(
        "--experiment", default="default", help="the experiment's name (or its .toml); default: default, as for run"
    )
    plan.add_argument(
        "--effect",
        type=float,
        help="the true difference to find, in points (default: the experiment's [analysis] margin)",
    )
    plan.add_argument(
        "--sd",
        type=float,
        help="the standard deviation of paired differences, in points (default: pooled from the store)",
    )
    plan.add_argument(
        "--comparisons",
        type=_integer,
        help="variants compared with the baseline (default: as in the store; 1 for a variance design)",
    )
    plan.add_argument("--power", type=float, default=0.8, help="the chance of finding the effect (default 0.8)")
    plan.add_argument(
        "--vary",
        metavar="SOURCE,...",
        help="with a variance design in the store: the sources the planned comparison "
        "varies with the seed, e.g. init,order, or all (the table always has all and each alone)",
    )
    _store(plan)

    promote = sub.add_parser(
        "promote", help="register a variant's best seed run (by validation) in the MLflow Model Registry"
    )
    promote.add_argument(
        "--experiment", default="default", help="the experiment's name (or its .toml); default: default, as for run"
    )
    promote.add_argument("--variant", required=True, help="the variant whose best seed run's model is registered")
    promote.add_argument(
        "--name", required=True, help="the registered model's name (1 to 100 letters, digits, '-', '_' or '.')"
    )
    promote.add_argument(
        "--again", action="store_true", help="register the run's model again when it already is a version of --name"
    )
    _store(promote)

    verify = sub.add_parser(
        "verify",
        help="re-train a few finished runs in a scratch store and compare their per-image ledgers with the stored ones",
    )
    verify.add_argument(
        "--experiment", default="default", help="the experiment's name (or its .toml); default: default, as for run"
    )
    verify.add_argument(
        "--runs", type=_integer, default=2, help="how many sampled finished runs to re-train (default 2)"
    )
    verify.add_argument(
        "--margin",
        type=float,
        help="on another platform: the accuracy difference in points the re-trained runs must be shown within "
        "(default: the experiment's [analysis] margin)",
    )
    verify.add_argument("--data-dir", help="where the data is, if not where the runs read it (default: as they did)")
    verify.add_argument(
        "--device", help="train on this device (cpu, cuda, cuda:N) instead of the one the runs asked for"
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON (for CI)")
    _components(verify)
    _store(verify)

    ui = sub.add_parser("ui", help="start the MLflow UI on the store")
    _store(ui)
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    ui.add_argument("--port", type=_integer, default=5000)
    return top


def _store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")


def _components(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--components",
        action="append",
        default=[],
        metavar="FILE_OR_MODULE",
        help="import your own components first: a .py file or a module (e.g. mypkg.ablations); repeatable or comma-separated",
    )


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def component_entries(values: list[str]) -> list[str]:
    """`--components a.py,b.py --components mypkg.x` as one list of entries; an empty one is refused."""
    from harness.base.errors import UsageError

    parts = [part.strip() for value in values for part in value.split(",")]
    if any(not p for p in parts):
        raise UsageError(
            f"--components: {','.join(values)!r} has an empty entry; expected .py files or module names, e.g. my_components.py"
        )
    return parts
