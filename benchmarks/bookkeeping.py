"""What a study pays outside training: per command, per run and per run-epoch, measured by
differencing study sizes, so that what one size pays once cancels out.

    python benchmarks/bookkeeping.py [--images 2000] [--data-dir ../shared/data/cifar10]

Three `python -m harness run` commands in fresh folders on the first 2,000 training images of
CIFAR-10 (1,000 test images), variants baseline and dropout: 2 seeds × 2 epochs (4 runs, 8
run-epochs), 6 seeds × 2 epochs (12, 24) and 6 seeds × 12 epochs (12, 144). For each, the
overhead is the command's wall time minus its runs' training time (the store's `epoch_seconds` of
every epoch); overhead = command + runs × per_run + run_epochs × per_run_epoch, solved from the
three. Prints one JSON object; docs/performance.md has the before and after. Run it on a quiet
machine, with `--repeats 3` for figures to quote: the per-run and per-run-epoch figures are
differences of seconds, and one command's overhead varies by a second or two here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((2, 2), (6, 2), (6, 12))  # (seeds, epochs) of baseline and dropout


def small_copy(data_dir: Path, images: int, folder: Path) -> Path:
    """The first `images` training and images // 2 test images of the CIFAR-10 copy, as a cifar10.npz of their own."""
    with np.load(data_dir / "cifar10.npz") as a:
        arrays = {
            "x_train": a["x_train"][:images],
            "y_train": a["y_train"][:images],
            "x_test": a["x_test"][: images // 2],
            "y_test": a["y_test"][: images // 2],
        }
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "cifar10.npz", **arrays)
    return folder


def study(data: Path, seeds: int, epochs: int, extra: list[str], code: Path = ROOT) -> tuple[float, float, int]:
    """(wall seconds, training seconds, runs) of one `run` command in a fresh folder."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HARNESS_DATA_DIR": str(data), "PYTHONPATH": str(code), "HARNESS_CONSOLE": "plain"}
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness",
                "run",
                "--variants",
                "baseline,dropout",
                "--seeds",
                str(seeds),
                "--epochs",
                str(epochs),
                *extra,
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"run failed: {proc.stderr[-2000:]}")
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
        exp = client.get_experiment_by_name("default")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")
        trained = sum(m.value for r in runs for m in client.get_metric_history(r.info.run_id, "epoch_seconds"))
        return wall, trained, len(runs)


def measure(data: Path, extra: list[str], code: Path = ROOT, repeats: int = 1) -> dict:
    rows = []
    for seeds, epochs in SIZES:
        tries = [study(data, seeds, epochs, extra, code) for _ in range(repeats)]
        # the try of median overhead: one slow start or a busy second does not move the figures
        wall, trained, runs = sorted(tries, key=lambda t: t[0] - t[1])[len(tries) // 2]
        rows.append(
            {
                "seeds": seeds,
                "epochs": epochs,
                "runs": runs,
                "run_epochs": runs * epochs,
                "wall_s": round(wall, 2),
                "training_s": round(trained, 2),
                "overhead_s": round(wall - trained, 2),
            }
        )
    (a, b, c) = rows
    per_run_epoch = (c["overhead_s"] - b["overhead_s"]) / (c["run_epochs"] - b["run_epochs"])
    per_run = (b["overhead_s"] - a["overhead_s"] - per_run_epoch * (b["run_epochs"] - a["run_epochs"])) / (
        b["runs"] - a["runs"]
    )
    per_command = a["overhead_s"] - a["runs"] * per_run - a["run_epochs"] * per_run_epoch
    return {
        "per_command_s": round(per_command, 2),
        "per_run_s": round(per_run, 3),
        "per_run_epoch_ms": round(1000 * per_run_epoch, 1),
        "studies": rows,
        "extra": extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    parser.add_argument(
        "--code", default=str(ROOT), help="the checkout whose harness runs (another commit's, to compare)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="commands per study size; each size's median overhead counts"
    )
    parser.add_argument("extra", nargs="*", help="more `run` arguments, e.g. --set train.checkpoint_seconds=0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = small_copy(Path(args.data_dir), args.images, Path(tmp) / "data")
        print(json.dumps(measure(data, args.extra, Path(args.code).resolve(), args.repeats)))


if __name__ == "__main__":
    main()
