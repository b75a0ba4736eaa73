#!/usr/bin/env bash
# GPU tranche: He et al.'s ResNet-20 on CIFAR-10 at the survey protocol (config/config.yaml,
# experiment resnet_he2016: 64k iterations at batch 128) for three seeds, concurrently on one GPU,
# writing run records that `debench merge-runs` adds to results/published/runs.csv.
#
# Sequence of device calls (the device tool carries at most 64 MiB of ignored files per call and
# a warm machine keeps them between calls; .devdata/ is git-ignored):
#   here, once:  python benchmarks/devdata.py split --src /work/shared/data --out .devdata/cifar10-parts
#                (prints part1..part3, each < 60 MiB: two shards each, SHA256SUMS in part1)
#   call 1:  run(carry=[".devdata/cifar10-parts/part1"], command="true")
#   call 2:  run(carry=[".devdata/cifar10-parts/part2"], command="true")
#   call 3:  run(carry=[".devdata/cifar10-parts/part3"], timeout_s=600,
#                command="BUDGET_S=560 bash benchmarks/gpu_reproduce.sh")
#            (reassembles the shards, checks each sha256 against SHA256SUMS, trains; calls 1-3
#            must follow each other while the machine is warm, or the parts are gone)
#   call 4+: run(command="BUDGET_S=560 bash benchmarks/gpu_reproduce.sh", timeout_s=600) again
#            while the machine is warm: each seed resumes from its last checkpoint (every 5
#            epochs, config defaults.protocol.checkpoint_every); a finished seed is skipped.
#   each call returns $OUT/gpu_runs.tar.gz (the run folders so far) and $OUT/gpu_reproduce.log;
#   here:    mkdir -p results/gpu_reproduce && tar xzf <files_at>/gpu_runs.tar.gz -C results/gpu_reproduce
#            debench merge-runs results/gpu_reproduce/runs --into results/published/runs.csv
# Budget: not measured on a GPU yet (no device was lent to the task that wrote this script). An
# estimate from docs/performance.md (ResNet-20, bf16 + CUDA graphs, 32,307 img/s on an H100): 64k
# steps x 128 images = 8.2M images, about 4.2 min per seed alone; three seeds share the GPU, so
# expect one or two 560 s training calls after the three data calls. The tracked tree must stay
# under ~9 MiB for a 54.4 MiB part to fit the 64 MiB a call carries.
#
# Environment: ITERATIONS (default: the config's 64000; anything else marks the runs not
# comparable), SEEDS ("0 1 2"), DEVICE (auto), BUDGET_S (wall seconds for the training step of
# this call; the seeds are stopped at the budget and resume next call), PARTS (.devdata/cifar10-parts),
# NPZ (a folder already holding cifar10/*.npz: skips the reassembly), RESULTS (results/gpu_reproduce),
# PYTHON (python3), MODEL (resnet20; MODEL=resnet56 SEEDS=0 is the timed ResNet-56 survey run of
# issue 16: its wall time per seed is printed and in the record's wall_time_s). The test tests/test_gpu_reproduce.py runs all of it on a CPU with ITERATIONS=2.
set -euo pipefail
py=${PYTHON:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
parts=${PARTS:-.devdata/cifar10-parts}
results=${RESULTS:-results/gpu_reproduce}
seeds=${SEEDS:-0 1 2}
model=${MODEL:-resnet20}
out=${OUT:-$results/out}
mkdir -p "$out" "$results/specs" "$results/logs"
log=$out/gpu_reproduce.log
exec > >(tee -a "$log") 2>&1
start=$(date +%s)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

npz=${NPZ:-}
if [ -z "$npz" ]; then
  npz=$results/npz
  echo "== reassemble CIFAR-10 from $parts and check sha256"
  $py benchmarks/devdata.py join --parts "$parts" --dest "$npz"
fi

cache=$results/data/cifar10.npz
if [ ! -f "$cache" ]; then
  echo "== prepare the dataset cache"
  $py -m debench.cli prepare-data --dataset cifar10 --source npz --out "$cache" \
    --options "{\"npz_dir\": \"$npz\"}"
fi

echo "== run specs"
# shellcheck disable=SC2086
$py benchmarks/gpu_specs.py --cache "$cache" --results "$results" --seeds $seeds \
  ${ITERATIONS:+--iterations $ITERATIONS} --device "${DEVICE:-auto}" --model "$model" --out "$results/specs"

echo "== train the seeds concurrently on one device"
left=$(( ${BUDGET_S:-560} - ($(date +%s) - start) ))
pids=()
for s in $seeds; do
  if [ -f "$results/runs/resnet_he2016/cifar10/$model/seed$s/metrics.json" ]; then
    echo "seed $s: finished earlier, skipped"
    continue
  fi
  timeout -s TERM "$left" $py -m debench.cli train --spec "@$results/specs/spec_${model}_seed$s.json" \
    > "$results/logs/${model}_seed$s.log" 2>&1 &
  pids+=("$!")
done
status=0
for p in "${pids[@]}"; do
  wait "$p" || { rc=$?; [ "$rc" = 124 ] && echo "a seed reached the budget (resumes next call)" || status=$rc; }
done
tail -n 2 "$results"/logs/"$model"_seed*.log || true
for s in $seeds; do
  rec=$results/runs/resnet_he2016/cifar10/$model/seed$s/metrics.json
  [ -f "$rec" ] && $py -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['model']} seed {r['seed']}: {r['status']}, test error {r.get('test_error')}, wall {r['wall_time_s']:.0f} s, train {r.get('train_time_s')} s\")" "$rec"
done

echo "== pack the run records"
tar czf "$out/gpu_runs.tar.gz" -C "$results" runs
ls "$results"/runs/resnet_he2016/cifar10/"$model"/*/metrics.json 2>/dev/null || echo "no seed finished yet"
echo "gpu_reproduce: $(( $(date +%s) - start )) s, exit $status"
exit $status
