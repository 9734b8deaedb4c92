#!/usr/bin/env bash
# The GPU checks and measurements of docs/performance.md in one prepared script (about 10 minutes
# on an H100 with the defaults). Each step runs under `timeout` with its wall time printed; a step
# that fails is reported and the others still run; the script exits 1 if any step failed.
#
#   HARNESS_DATA_DIR=/path/to/cifar10 bash benchmarks/gpu.sh [OUT_DIR]
#
# 1. env: torch, CUDA, cuDNN, the card, bf16 support, the TF32 flags a fp32 run sets.
# 2. smoke: `run --fuse 8` over baseline, dropout, weight_decay, batchnorm, augment and a member at
#    another learning rate (a component written to OUT_DIR), SMOKE_SEEDS seeds, SMOKE_EPOCHS epochs;
#    then the same under determinism=strict, precision=bf16 and (CUDA only) compile=reduce-overhead.
# 3. resume: the smoke study killed (SIGKILL) after its second checkpoint, then resumed to the end.
# 4. bench: the engine rows (`bench`) and K fused against K separate (`bench --fused 1,2,4,8`).
# 5. ablation: the tutorial's 4 variants × ABLATION_SEEDS (5) seeds × ABLATION_EPOCHS (10) epochs,
#    unfused and with `--fuse auto`, each printing its training seconds beside its wall seconds.
# It needs what `pip install -e .` installs; on a machine without network, WHEELS=/folder/of/wheels
# installs from there first. DEVICE=cpu with small sizes runs it as a smoke test (tests/project/test_gpu_script.py).
set -uo pipefail
OUT=${1:-reports/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
SMOKE_SEEDS=${SMOKE_SEEDS:-2}
SMOKE_EPOCHS=${SMOKE_EPOCHS:-1}
BENCH_ARGS=${BENCH_ARGS:-}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
failed=()
summary=()

step() {  # step NAME COMMAND...: run it under timeout, log to OUT/NAME.log, print its tail and wall time
  local name=$1; shift
  local start end rc
  start=$(date +%s%N)
  timeout "$STEP_TIMEOUT" bash -c '"$@"' step "$@" > "$OUT/$name.log" 2>&1  # bash -c: a step may be a function below
  rc=$?
  end=$(date +%s%N)
  local ms=$(( (end - start) / 1000000 ))
  echo "== $name: exit $rc, wall $(( ms / 1000 )).$(( ms % 1000 / 100 )) s"
  tail -n "${TAIL:-12}" "$OUT/$name.log"
  summary+=("$name: exit $rc, ${ms} ms")
  [ "$rc" = 0 ] || failed+=("$name")
  return $rc
}

if [ -n "${WHEELS:-}" ] && ! $PY -c "import mlflow, optuna, tomli_w, torchvision" 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links "$WHEELS" -e . || echo "pip install from $WHEELS failed"
fi

step env $PY - <<EOF
import importlib, platform, torch
from harness.training import engine
from harness.tracking import provenance
dev = torch.device("$DEVICE")
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
for name in ("torchvision", "mlflow", "optuna", "tomli_w", "numpy"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except ImportError as e:
        print(name, "MISSING:", e)
if dev.type == "cuda":
    p = torch.cuda.get_device_properties(dev)
    print("card", p.name, f"{p.total_memory / 2**30:.1f} GiB", f"sm_{p.major}{p.minor}", "bf16", torch.cuda.is_bf16_supported())
engine.set_float_precision("fp32")
print("fp32 run:", {k: v for k, v in provenance.determinism(dev).items() if k.startswith("tf32") or k.startswith("cudnn")})
EOF

cat > "$OUT/fast_lr.py" <<'EOF'
from harness.variants.registry import Change, register


@register("fast_lr", hypothesis="Three times the learning rate trains faster.", train={"lr": 3e-3})
def fast_lr():
    return Change()
EOF

study() {  # study NAME [--set KEY=VALUE ...]: the smoke study in a fresh store under OUT/NAME
  local name=$1; shift
  [ -n "${KEEP:-}" ] || rm -rf "${OUT:?}/$name"  # KEEP=1: the same store again (a resume)
  mkdir -p "$OUT/$name"
  $PY -m harness run --variants baseline,dropout,weight_decay,batchnorm,augment,fast_lr --components "$OUT/fast_lr.py" \
    --seeds "$SMOKE_SEEDS" --epochs "$SMOKE_EPOCHS" --device "$DEVICE" --fuse 8 --set "name='$name'" \
    --tracking-uri "sqlite:///$OUT/$name/mlflow.db" --set "reports_dir='$OUT/$name/reports'" \
    --set "checkpoint_dir='$OUT/$name/checkpoints'" "$@"
}

# Killed (SIGKILL) after its second checkpoint, a checkpoint after every epoch: the fused group's
# second and last epoch, before its metrics are logged; then resumed: the resume must say so and
# finish every run.
resume_check() {
  HARNESS_FAULT=checkpointed:2:KILL study smoke_resume --epochs 2 --set train.checkpoint_seconds=0
  echo "killed run exited $? (137: SIGKILL, as asked)"
  KEEP=1 study smoke_resume --epochs 2 | tee "$OUT/smoke_resume.second.log"
  grep -q "resume the fused group" "$OUT/smoke_resume.second.log"
}
export OUT DEVICE PY SMOKE_SEEDS SMOKE_EPOCHS
export -f study resume_check

step smoke study smoke
step smoke_strict study smoke_strict --set "train.determinism='strict'"
step smoke_bf16 study smoke_bf16 --set "train.precision='bf16'"
if [[ $DEVICE == cuda* ]]; then
  step smoke_graphs study smoke_graphs --set "train.compile='reduce-overhead'"
fi

step resume resume_check

step bench $PY -m harness bench --device "$DEVICE" --repeats "${REPEATS:-3}" --out "$OUT/bench.json" \
  --engine precision=bf16 --engine determinism=strict --engine memory_format=channels_last \
  $([[ $DEVICE == cuda* ]] && echo --engine compile=reduce-overhead) $BENCH_ARGS
step bench_fused $PY -m harness bench --device "$DEVICE" --fused "${FUSED:-1,2,4,8}" --repeats "${REPEATS:-3}" \
  --out "$OUT/fused.json" $BENCH_ARGS

if [ "${RUN_ABLATION:-1}" = 1 ]; then
  for mode in off "${FUSE:-auto}"; do
    rm -rf "${OUT:?}/ablation-$mode"
    mkdir -p "$OUT/ablation-$mode"
    TAIL=4 step "ablation_$mode" $PY -m harness run --experiment tutorial --device "$DEVICE" --seeds "${ABLATION_SEEDS:-5}" \
      --epochs "${ABLATION_EPOCHS:-10}" --fuse "$mode" --tracking-uri "sqlite:///$OUT/ablation-$mode/mlflow.db" \
      --set "reports_dir='$OUT/ablation-$mode/reports'" --set "checkpoint_dir='$OUT/ablation-$mode/checkpoints'"
    grep -E "train.fuse = auto|runs finished|^training: " "$OUT/ablation_$mode.log" || true
  done
fi

echo
echo "steps:"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "all steps passed"
