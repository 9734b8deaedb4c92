#!/usr/bin/env bash
# The GPU measurements of docs/performance.md (linked from the README), in one go (about 10 minutes on an
# H100; needs torch and the data, not MLflow unless RUN_ABLATION=1):
#   HARNESS_DATA_DIR=/path/to/cifar10 bash benchmarks/gpu.sh [OUT_DIR]
# 1. the tutorial pipeline vs the engine (default settings and each speed setting) vs the floor;
# 2. the aggregate throughput of K = 1, 2, 4, 8 training processes sharing the GPU;
# 3. with RUN_ABLATION=1, the tutorial's four-variant, 100-epoch ablation end to end, timed.
set -euo pipefail
OUT=${1:-reports/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/card.txt" 2>/dev/null || echo "no nvidia-smi" > "$OUT/card.txt"
cat "$OUT/card.txt"

$PY -m harness bench --device "$DEVICE" --repeats "${REPEATS:-5}" --out "$OUT/bench.json" \
  --engine precision=bf16 \
  --engine memory_format=channels_last \
  --engine precision=bf16,memory_format=channels_last \
  --engine determinism=fast \
  --engine eval_batch_size=2048 \
  --engine compile=default \
  $([[ $DEVICE == cuda* ]] && echo --engine compile=reduce-overhead) \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"

$PY -m harness bench --device "$DEVICE" --jobs "${JOBS:-1,2,4,8}" --epochs "${EPOCHS:-3}" --out "$OUT/scaling.json" \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/scaling.log"

if [ "${RUN_ABLATION:-0}" = 1 ]; then
  start=$(date +%s%N)
  $PY -m harness run --experiment tutorial --device "$DEVICE" --jobs-per-device "${ABLATION_JOBS:-4}" \
    --tracking-uri "sqlite:///$OUT/mlflow.db" --set "reports_dir='$OUT/reports'" --set "checkpoint_dir='$OUT/checkpoints'" \
    ${ABLATION_ARGS:-} 2>&1 | tail -20 | tee "$OUT/ablation.log"
  end=$(date +%s%N)
  echo "ablation wall time: $(( (end - start) / 1000000 )) ms" | tee -a "$OUT/ablation.log"
fi
