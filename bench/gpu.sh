#!/usr/bin/env bash
# The GPU check, in about 8 minutes on one GPU:
#   1. Ray Train against the bare loop, ResNet18 width 64 in bfloat16 (bench/train.py);
#   2. images/s of every evaluation at the paper preset's settings (bench/attack.py);
#   3. one epoch of every scenario at the paper preset on full-size synthetic CIFAR-10
#      (lie-ray train, the product's own path: Tune trials, Ray Train, Ray Data);
#   4. the paper preset's projected hours (python -m lie_ray.sweep --preset paper --estimate).
#
#   bench/gpu.sh [OUT]          figures and each stage's log in OUT (default: bench-gpu)
#
# PYTHON (default python3) must import lie_ray and Ray. Each stage has a time limit, and one
# that fails or runs out does not stop the others: what the stages printed is in OUT/*.log and
# the figures in OUT/summary.txt. To check the plumbing on a CPU, small:
#   DEVICE=cpu WIDTH=8 TRAIN=2000 TEST=500 EVAL_IMAGES=4 bench/gpu.sh /tmp/gpu-dry
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-bench-gpu}")
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
width=${WIDTH:-64}
train=${TRAIN:-50000}
test=${TEST:-10000}
eval_images=${EVAL_IMAGES:-32}  # Square and AutoAttack run one image at a time
gpu=$([ "$device" = cuda ] && echo yes || echo no)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary="$out/summary.txt"
: > "$summary"

# stage NAME SECONDS COMMAND...: run it under a time limit, keep its log, say how it ended.
stage() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name (at most ${limit}s)"
  PYTHONUNBUFFERED=1 timeout -k 10 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  echo "   $name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$summary"
  return $rc
}

stage machine 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  nproc; $py -c 'import sys, torch, ray; print(sys.version.split()[0], torch.__version__,
  ray.__version__, torch.cuda.is_available())'"
cat "$out/machine.log" >> "$summary"

data="$work/data/cifar-10-batches-py"
stage data 60 "$py" -m lie_ray.data.synthetic "$work/data" --train "$train" --test "$test"

stage train-vs-bare 120 "$py" bench/train.py --device "$device" --width "$width" --epochs 3 \
  --warmup 1 --data "$data"
grep -A30 "^an epoch of" "$out/train-vs-bare.log" >> "$summary"

stage evaluations 120 "$py" bench/attack.py --device "$device" --width "$width" \
  --eval-images "$eval_images"
grep -A30 "^every evaluation" "$out/evaluations.log" >> "$summary"

stage estimate 60 "$py" -m lie_ray.sweep --preset paper --estimate --data "$data" --gpu "$gpu"
grep -vE "^\(|INFO|WARNING|^$" "$out/estimate.log" | tail -n 20 >> "$summary"

"$py" -m lie_ray keygen --out "$work/key.json" > /dev/null
limits=()
[ "$device" = cuda ] || limits=(--width "$width" --train-limit "$train" --test-limit "$test")
stage epochs 170 "$py" -m lie_ray train --preset paper --epochs 1 --data "$data" \
  --key "$work/key.json" --out "$work/train" --gpu "$gpu" "${limits[@]}"
"$py" - "$work/train" >> "$summary" <<'EOF'
"""Each scenario's epoch on the full training set: seconds and images/s, from its reports."""
import json, sys
from pathlib import Path

print("one epoch of each scenario (paper preset):")
for result in sorted(Path(sys.argv[1], "ray", "train").glob("*/result.json")):
    reports = [json.loads(line) for line in result.read_text().splitlines()]
    for report in reports:
        print(f"  {report.get('scenario', result.parent.name):18s} epoch "
              f"{report['epoch_seconds']:8.1f} s  test error {report.get('test_error', float('nan')):.3f}")
EOF
echo "== figures: $summary"
cat "$summary"
