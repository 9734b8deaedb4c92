#!/usr/bin/env bash
# Line coverage of harness/ over both test groups, subprocesses included (coverage.py's
# `patch = subprocess`: every `python -m harness` a test starts is measured too). Prints the
# report and writes OUT/times.md, each test file's count and time under coverage (benchmarks/test_times.py);
# about 2.5 times the two groups' own time on a 2-core machine. docs/testing.md quotes both.
#   bash benchmarks/coverage.sh [OUT]      (OUT: where the data and the report go; default a temporary folder)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
cat > "$out/coverage.rc" <<RC
[run]
source = harness
parallel = true
patch = subprocess
data_file = $out/.coverage
RC
cd "$repo"
export PYTHONPATH="$repo"
python -m pytest -q -p no:cacheprovider --durations=0 --cov --cov-config="$out/coverage.rc" --cov-report= > "$out/default.log" 2>&1 || echo "default suite: failures (see $out/default.log)"
python -m pytest -q -p no:cacheprovider -m slow --durations=0 --cov --cov-append --cov-config="$out/coverage.rc" --cov-report= > "$out/slow.log" 2>&1 || echo "slow group: failures (see $out/slow.log)"
cd "$out"
coverage combine --append --rcfile=coverage.rc -q 2>/dev/null || true  # --append: keep what pytest-cov combined
coverage report --rcfile=coverage.rc | tee report.txt | tail -1
python "$repo/benchmarks/test_times.py" default.log slow.log > times.md  # per-file test times under coverage
