#!/usr/bin/env bash
# Θ's acceptance run on SynthTalk (docs/results.md, "Θ on SynthTalk"), end to end on a CPU:
#   launch/generator_synthtalk.sh OUT [DATA]
# trains the unprojection net and Θ (synthtalk_tiny) on the prepared set DATA (default: makes
# one in OUT/prepared as launch/sequence_learners_synthtalk.sh does: 20 SynthTalk identities,
# sidecar landmarks, 64 px crops) and evaluates Θ on the held-out identities of the test split.
# Workdirs: OUT/runs/unprojection, OUT/runs/theta. Report: OUT/eval_generator.json. Training
# logs with their wall times: OUT/logs/. Rerunning resumes: finished data and runs are reused.
#
# Step counts (UNPROJECTION_STEPS, THETA_STEPS; the configs' 2000 and 1500 by default) fit
# both trainings into 30 minutes on a 2-core CPU: 16 min 13 s measured alone (unprojection net
# 2 min 43 s, Θ 13 min 30 s, about 2 steps/s once compiled; docs/results.md).
set -euo pipefail
out="${1:?usage: $0 OUT [DATA]}"
data="${2:-}"
unprojection_steps="${UNPROJECTION_STEPS:-2000}"
theta_steps="${THETA_STEPS:-1500}"
mkdir -p "$out/logs"
if [[ -z "$data" ]]; then
  data="$out/prepared"
  bash "$(dirname "$0")/synthtalk_set.sh" "$out"
fi
start=$SECONDS
{ time talkinghead train --config configs/unprojection.py:synthtalk_tiny --workdir "$out/runs/unprojection" \
    --set "data.data_dir=$data" --set "total_steps=$unprojection_steps"; } 2>&1 | tee "$out/logs/unprojection.log"
{ time talkinghead train --config configs/generator.py:synthtalk_tiny --workdir "$out/runs/theta" \
    --set "data.data_dir=$data" --set "model.unprojection_checkpoint=$out/runs/unprojection" \
    --set "total_steps=$theta_steps"; } 2>&1 | tee "$out/logs/theta.log"
echo "training wall time: $((SECONDS - start)) s" | tee "$out/logs/training_wall_time.txt"
talkinghead evaluate --stage generator --checkpoint "$out/runs/theta" --data-dir "$data" \
    --out "$out/eval_generator.json"
