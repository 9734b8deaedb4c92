#!/usr/bin/env bash
# Issue 24's real-data decomposition (the README and docs/variance.md quote it): the variance design
# on a tiny CIFAR-10 copy, on a CPU, in a scratch folder:
#   bash benchmarks/variance.sh [OUT_DIR]
# The copy: a seeded random 10,000 of the 50,000 training images (an 80/20 stratified split of them
# trains and validates) and 2,000 of the test images, from ../shared/data/cifar10 (or $CIFAR10_NPZ).
# The design: baseline and dropout, each source they draw from varied alone over 4 seeds (the others
# pinned to a seed no run varies) and all of them together over 4, 2 epochs each: the baseline has no
# dropout and neither augments, so those are skipped: 36 runs, a few minutes on 2 cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
OUT=$(realpath -m "${1:-reports/variance-tiny}")
PY=${PYTHON:-python}
SRC=${CIFAR10_NPZ:-$repo/../shared/data/cifar10/cifar10.npz}
mkdir -p "$OUT/data"
$PY - "$SRC" "$OUT/data/cifar10.npz" <<'PY'
import sys

import numpy as np

src = np.load(sys.argv[1])
rng = np.random.default_rng(24)
train = np.sort(rng.choice(len(src["y_train"]), 10_000, replace=False))
test = np.sort(rng.choice(len(src["y_test"]), 2_000, replace=False))
np.savez(sys.argv[2], x_train=src["x_train"][train], y_train=src["y_train"][train],
         x_test=src["x_test"][test], y_test=src["y_test"][test])
print(f"tiny copy: {len(train)} training and {len(test)} test images")
PY
cd "$OUT"
start=$(date +%s)
HARNESS_DATA_DIR="$OUT/data" PYTHONPATH="$repo" $PY -m harness run --design variance --variants baseline,dropout --seeds 1,2,3,4 \
  --epochs 2 --device cpu ${RUN_ARGS:-} | tail -3
echo "wall: $(( $(date +%s) - start )) s"
PYTHONPATH="$repo" $PY -m harness plan --experiment default --effect 1
sed -n '/^## Sources of variation/,/^## Details/p' reports/default/report.md | head -n -1
