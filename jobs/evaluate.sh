#!/usr/bin/env bash
# Submit an evaluation only (`lie-ray evaluate`) of scenarios a study already trained, e.g. to
# re-run the attacks with other settings. Waits and streams the job's logs.
#
# Usage: RAY_ADDRESS=http://127.0.0.1:8265 jobs/evaluate.sh [more evaluate options, e.g. --resume]
#   RUNS    the study's OUT on the head, holding training.parquet (default /home/ubuntu/lie_ray_runs/paper)
#   OUT     where tables, report and pictures go (default /home/ubuntu/lie_ray_runs/paper-eval)
#   PRESET  evaluation preset, paper or smoke (default paper)
#   DATA    CIFAR-10 at the same path on every node (default /home/ubuntu/data)
#   KEY     the key the scenarios were trained with (default /home/ubuntu/lie_ray_keys/master.json)
set -euo pipefail
cd "$(dirname "$0")/.."  # runtime_env.yaml's working_dir "." is the repository root
: "${RAY_ADDRESS:?set RAY_ADDRESS to the job server, e.g. http://127.0.0.1:8265 after 'ray dashboard cluster.yaml'}"
export RAY_ADDRESS

exec ray job submit --runtime-env jobs/runtime_env.yaml -- \
  python -m lie_ray evaluate --preset "${PRESET:-paper}" \
  --runs "${RUNS:-/home/ubuntu/lie_ray_runs/paper}" \
  --out "${OUT:-/home/ubuntu/lie_ray_runs/paper-eval}" \
  --data "${DATA:-/home/ubuntu/data}" \
  --key "${KEY:-/home/ubuntu/lie_ray_keys/master.json}" "$@"
