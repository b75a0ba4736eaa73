#!/usr/bin/env bash
# One GPU session (issue 26, part 4): everything the plan and the packing default need from a lent
# GPU, in priority order, inside BUDGET_S seconds, all raw output under $OUT (at most 8 files):
#   1. debench calibrate --device cuda over every registered model (one model's failure or a
#      missing package, torchsde say, skips that model and lists it)  -> calibration_cuda.json
#   2. packing: 1/2/4/8 concurrent ResNet-20 `debench train` jobs on the one GPU (then ResNet-56 if
#      time allows), synthetic data unless .devdata/cifar10 exists     -> packing.json
#   3. the CIFAR ResNets calibrated again with the runs' default compile (CUDA graphs)
#                                                                     -> calibration_cuda_compiled.json
#   4. benchmarks/gpu_check.sh with the time left (asserted checks, then timings), its folder
#      tarred                                                         -> gpu_check.tar.gz
# plus session.log (everything printed) and env.txt (card, driver, packages).
#
#   OUT=/tmp/out BUDGET_S=520 bash benchmarks/gpu_session.sh
# Knobs for a CPU rehearsal (tests/test_gpu_session.py): DEVICE=cpu, MODELS="resnet20 mlp300_mnist",
# CAL_STEPS, CAL_WARMUP, PACK_MODELS, PACK_DATA=synthetic, PACK_JOBS, PACK_EPOCHS, PACK_TRAIN_SIZE, GPU_CHECK (a command
# taking the output folder; default bash benchmarks/gpu_check.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-${1:-/tmp/debench-gpu-session}}
mkdir -p "$out"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
budget=${BUDGET_S:-520}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
cap() { local l; l=$(left); echo $(( l < $1 ? l : $1 )); }  # the smaller of the time left and $1
exec > >(tee -a "$out/session.log") 2>&1
teepid=$!
work=$(mktemp -d)
finish() {
  if [ -d "$work/gpu_check" ]; then tar -czf "$out/gpu_check.tar.gz" -C "$work" gpu_check; fi
  echo "gpu_session finished in $(( $(date +%s) - start )) s of a ${budget} s budget; files: $(cd "$out" && ls | tr '\n' ' ')"
  exec >&- 2>&-
  wait "$teepid" 2>/dev/null  # session.log complete before the script returns
}
trap finish EXIT
step() {  # step NAME MIN_SECONDS: false (and says so) when less than MIN_SECONDS are left
  if [ "$(left)" -lt "$2" ]; then echo "== $1: skipped, $(left) s left of the budget (needs $2 s)"; return 1; fi
  echo "== $1 ($(left) s left, $(date -u +%T))"
}

{ echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown); device $device; budget ${budget} s"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  for p in torchvision torchdiffeq torchsde snakemake mlflow jsonschema yaml pytest; do
    $py -c "import $p, sys; print('$p', getattr($p, '__version__', 'present'))" 2>/dev/null || echo "$p missing"
  done; nproc; } > "$out/env.txt" 2>&1
cat "$out/env.txt"

if step "1. calibrate every registered model on $device" 30; then
  # shellcheck disable=SC2086
  timeout "$(cap ${CAL_CAP_S:-280})" $py -m debench.cli calibrate --device "$device" --compile off \
    --steps "${CAL_STEPS:-3}" --warmup "${CAL_WARMUP:-2}" --max-step-s "${CAL_MAX_STEP_S:-2}" --model-timeout-s "${CAL_MODEL_TIMEOUT_S:-40}" \
    ${MODELS:+--models $MODELS} --out "$out/calibration_cuda.json"
  echo "calibrate exit status $?"
fi

npz=()
[ -f .devdata/cifar10/test.npz ] && [ "${PACK_DATA:-real}" != synthetic ] && npz=(--npz .devdata)
for model in ${PACK_MODELS:-resnet20 resnet56}; do
  if step "2. packing: ${PACK_JOBS:-1 2 4 8} concurrent $model jobs (${npz[*]:-synthetic data})" 90; then
    # shellcheck disable=SC2086
    timeout "$(cap 240)" $py benchmarks/gpu_packing.py --device "$device" --models "$model" \
      --jobs ${PACK_JOBS:-1 2 4 8} --epochs "${PACK_EPOCHS:-3}" --repeats 1 --train-size "${PACK_TRAIN_SIZE:-10000}" \
      "${npz[@]}" --out "$out/packing_$model.json"
    echo "packing $model exit status $?"
  fi
done

if [ "$device" != cpu ] && step "3. the CIFAR ResNets with CUDA graphs (the runs' default compile)" 100; then
  timeout "$(cap 150)" $py -m debench.cli calibrate --device "$device" --compile auto --steps 10 --warmup 6 \
    --no-flops --models resnet20 resnet32 resnet44 resnet56 resnet110 --out "$out/calibration_cuda_compiled.json"
  echo "calibrate (compiled) exit status $?"
fi

if step "4. benchmarks/gpu_check.sh with the time left" 60; then
  mkdir -p "$work/gpu_check"
  BUDGET_S=$(( $(left) - 10 )) ${GPU_CHECK:-bash benchmarks/gpu_check.sh} "$work/gpu_check"
  echo "gpu_check exit status $?"
fi
