#!/usr/bin/env bash
# Submit the smoke study (all five scenarios, a few minutes, CPU only) to a running cluster:
# a cheap end-to-end check of the cluster before the paper study.
#
# Usage: RAY_ADDRESS=http://127.0.0.1:8265 jobs/smoke.sh [more sweep options, e.g. --resume]
#   OUT      results on the head node (default /home/ubuntu/lie_ray_runs/smoke)
#   DATA     CIFAR-10 at the same path on every node (default /home/ubuntu/data)
#   KEY      master key at the same path on every node (default /home/ubuntu/lie_ray_keys/master.json)
#   STORAGE  optional Tune/Train storage every node reaches, e.g. s3://BUCKET/lie_ray/smoke
# On a local `ray start --head`, point OUT, DATA and KEY at absolute local paths.
set -euo pipefail
cd "$(dirname "$0")/.."  # runtime_env.yaml's working_dir "." is the repository root
: "${RAY_ADDRESS:?set RAY_ADDRESS to the job server, e.g. http://127.0.0.1:8265 after 'ray dashboard cluster.yaml'}"
export RAY_ADDRESS

exec ray job submit --runtime-env jobs/runtime_env.yaml -- \
  python -m lie_ray.sweep --preset smoke \
  --out "${OUT:-/home/ubuntu/lie_ray_runs/smoke}" \
  --data "${DATA:-/home/ubuntu/data}" \
  --key "${KEY:-/home/ubuntu/lie_ray_keys/master.json}" \
  ${STORAGE:+--storage "$STORAGE"} "$@"
