#!/usr/bin/env bash
# The GPU measurements of docs/performance.md (linked from the README), in one go, each step's wall
# time printed (needs torch and the data, not MLflow unless RUN_ABLATION=1):
#   HARNESS_DATA_DIR=/path/to/cifar10 bash benchmarks/gpu.sh [OUT_DIR]
# 1. the tutorial pipeline vs the engine (default settings and each speed setting) vs the floor;
# 2. the aggregate throughput of K = 1, 2, 4, 8 training processes sharing the GPU;
# 3. K = 1, 2, 4, 8 runs trained as one fused group against K separate runs, and the group size
#    `train.fuse = "auto"` measures and picks on this card;
# 4. with RUN_ABLATION=1, the tutorial's four variants × 5 seeds × 100 epochs end to end, unfused
#    and then fused (FUSE, default auto), each with its wall time (ABLATION_EPOCHS, ABLATION_SEEDS
#    shorten it).
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

$PY -m harness bench --device "$DEVICE" --fused "${FUSED:-1,2,4,8}" --repeats "${REPEATS:-5}" --out "$OUT/fused.json" \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/fused.log"

if [ "${RUN_ABLATION:-0}" = 1 ]; then
  for mode in off "${FUSE:-auto}"; do
    # a fresh store each time: a store of an earlier invocation would skip its finished runs
    rm -rf "$OUT/mlflow-$mode.db" "$OUT/reports-$mode" "$OUT/checkpoints-$mode"
    start=$(date +%s%N)
    $PY -m harness run --experiment tutorial --device "$DEVICE" --seeds "${ABLATION_SEEDS:-5}" --epochs "${ABLATION_EPOCHS:-100}" \
      --fuse "$mode" --tracking-uri "sqlite:///$OUT/mlflow-$mode.db" --set "reports_dir='$OUT/reports-$mode'" \
      --set "checkpoint_dir='$OUT/checkpoints-$mode'" ${ABLATION_ARGS:-} > "$OUT/ablation-$mode.log" 2>&1 \
      || { tail -40 "$OUT/ablation-$mode.log"; echo "ablation (fuse $mode) failed"; exit 1; }
    end=$(date +%s%N)
    # the groups it trained (auto's choice included), then the summary
    { grep -E "train.fuse = auto|== fused group" "$OUT/ablation-$mode.log" | head -8; tail -30 "$OUT/ablation-$mode.log"; } || true
    echo "ablation (fuse $mode) wall time: $(( (end - start) / 1000000 )) ms" | tee -a "$OUT/ablation-$mode.log"
  done
fi
