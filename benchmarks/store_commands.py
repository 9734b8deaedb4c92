"""How long the store commands take from the shell: each command as a user types it, in a fresh
process, on the fixture store (tests/fixtures/store-before-layers.tar.gz: a 2×2 factorial design of
3 seeds and a seeds-on-demand list design), medians of `--repeats` runs, in the order a user meets
them: `report` first (it keeps every export, as `run` does), then the exports, then one with an
empty user cache. Issue 38's targets: an
`export` of a small table under 3 s and a one-line refusal under 1 s, on a quiet run of this
machine. It prints numbers only (no timed assertion anywhere in the tests).

    python benchmarks/store_commands.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "store-before-layers.tar.gz"

EXPORT = ["export", "--experiment", "factorial", "--table", "comparison", "--format", "csv"]
# (name, argv, cache): "kept" uses one user cache for the whole benchmark, after `report` (as after
# `run`) has kept the exports; "empty" gives each try an empty cache (a store no command here has
# read: the export reads it through MLflow)
COMMANDS = [
    ("report", ["report", "--experiment", "factorial"], "kept"),
    ("export a 3-row table", EXPORT, "kept"),
    (
        "export the effects table",
        ["export", "--experiment", "factorial", "--table", "effects", "--format", "csv"],
        "kept",
    ),
    ("export a 3-row table, nothing kept", EXPORT, "empty"),
    ("plan", ["plan", "--experiment", "factorial", "--effect", "1"], "kept"),
    (
        "refusal: effects of a list design",
        ["export", "--experiment", "ondemand", "--table", "effects", "--format", "csv"],
        "kept",
    ),
    ("refusal: an unknown variant, no run or list seen", ["run", "--variants", "nosuch"], "empty"),
    ("list (the first builds every component; later ones read the cache)", ["list"], "kept"),
    ("refusal: an unknown variant, after a list or run", ["run", "--variants", "nosuch"], "kept"),
    (
        "refusal: an unknown table",
        ["export", "--experiment", "factorial", "--table", "nosuch", "--format", "csv"],
        "kept",
    ),
    ("refusal: a plan's bad effect", ["plan", "--experiment", "factorial", "--effect", "-1"], "kept"),
    ("list --help", ["list", "--help"], "kept"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as work:
        with tarfile.open(FIXTURE) as tar:
            tar.extractall(work, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        for name, argv, cache in COMMANDS:
            seconds, code = [], None
            for i in range(args.repeats):
                folder = Path(work) / ("cache" if cache == "kept" else f"empty-{name}-{i}")
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "harness", *argv],
                    cwd=work,
                    env={**env, "HARNESS_CACHE_DIR": str(folder)},
                    capture_output=True,
                )
                seconds.append(time.perf_counter() - start)
                code = done.returncode
            print(
                f"{name:50} exit {code}  median {statistics.median(seconds):5.2f} s  (runs: {', '.join(f'{s:.2f}' for s in seconds)})"
            )


if __name__ == "__main__":
    main()
