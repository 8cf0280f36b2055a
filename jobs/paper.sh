#!/usr/bin/env bash
# Submit the paper study (ResNet18, 100 epochs, PGD-20, full evaluation) to the GPU cluster.
# Returns once submitted; the job runs for hours on the cluster, logs: ray job logs -f ID.
#
# Usage: RAY_ADDRESS=http://127.0.0.1:8265 STORAGE=s3://BUCKET/lie_ray jobs/paper.sh [more sweep options]
#   STORAGE  required: Tune/Train storage (checkpoints) that every node reaches
#   OUT      tables and report on the head node (default /home/ubuntu/lie_ray_runs/paper)
#   DATA     CIFAR-10 at the same path on every node (default /home/ubuntu/data)
#   KEY      master key at the same path on every node (default /home/ubuntu/lie_ray_keys/master.json)
# e.g. jobs/paper.sh --resume          continue after an interruption (same OUT and STORAGE)
#      jobs/paper.sh --workers 4       DDP over 4 GPU workers per trial
# --gpu yes: the cluster starts with no GPU worker, and the default 'auto' would see no GPU
# and train on CPUs; asking for GPUs is what makes the autoscaler start them.
set -euo pipefail
cd "$(dirname "$0")/.."  # runtime_env.yaml's working_dir "." is the repository root
: "${RAY_ADDRESS:?set RAY_ADDRESS to the job server, e.g. http://127.0.0.1:8265 after 'ray dashboard cluster.yaml'}"
: "${STORAGE:?set STORAGE to storage every node reaches, e.g. s3://BUCKET/lie_ray}"
export RAY_ADDRESS
id="${SUBMISSION_ID:-lie-ray-paper-$(date -u +%Y%m%d-%H%M%S)}"

ray job submit --no-wait --submission-id "$id" --runtime-env jobs/runtime_env.yaml -- \
  python -m lie_ray.sweep --preset paper --gpu yes \
  --out "${OUT:-/home/ubuntu/lie_ray_runs/paper}" \
  --data "${DATA:-/home/ubuntu/data}" \
  --key "${KEY:-/home/ubuntu/lie_ray_keys/master.json}" \
  --storage "$STORAGE" "$@"
echo "follow: ray job logs -f $id    status: ray job status $id    stop: ray job stop $id"
