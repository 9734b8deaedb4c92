"""What logging each seed run's MLflow model adds to a one-epoch run: trains `--seeds` one-epoch
runs of the baseline through the real runner and store, times every `models.log_model` call, and
prints each run's wall time, the model-logging time and their ratio (target: under 5%). With
`--no-model` the same runs log no model (and do not warm MLflow up): compare the run times, which
also count what the warm-up thread takes from the first run's training.

    HARNESS_DATA_DIR=/path/to/cifar10 python benchmarks/model_logging.py [--seeds 3] [--no-model] [--device cpu]

It works in a scratch folder (its own SQLite store) and prints numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-model", action="store_true", help="the same runs without logging models (the reference)")
    args = parser.parse_args()
    from harness.cli import commands
    from harness.tracking import models

    spent: list[float] = []
    log_model = models.log_model

    def timed(*a, **kw):
        start = time.perf_counter()
        if not args.no_model:
            log_model(*a, **kw)
        spent.append(time.perf_counter() - start)

    models.log_model = timed
    if args.no_model:
        models.warm_up = lambda: None
    data = os.environ.get("HARNESS_DATA_DIR", "")
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        from harness.running import units

        seconds: list[float] = []
        run_unit = units.run  # one (variant, seed) pair at a time: the runs are not fused here

        def timed_run(*a, **kw):
            start = time.perf_counter()
            out = run_unit(*a, **kw)
            seconds.append(time.perf_counter() - start)
            return out

        units.run = timed_run
        code = commands.main(
            [
                "run",
                "--variants",
                "baseline",
                "--seeds",
                str(args.seeds),
                "--epochs",
                "1",
                "--device",
                args.device,
                *(["--data-dir", data] if data else []),
            ]
        )
        assert code == 0, code
    print()
    for i, (run, model) in enumerate(zip(seconds, spent)):
        print(
            f"run {i + 1}: {run:.2f} s in all, of which logging the model {model:.3f} s ({100 * model / (run - model):.1f}% added)"
        )
    run, model = statistics.median(seconds), statistics.median(spent)
    print(
        f"median: a one-epoch run {run:.2f} s, logging its model {model:.3f} s: {100 * model / (run - model):.1f}% added (target < 5%)"
        + ("" if not args.no_model else " [--no-model: nothing logged]")
    )
    print(f"first run: {seconds[0]:.2f} s; all runs: {sum(seconds):.2f} s")


if __name__ == "__main__":
    main()
