#!/usr/bin/env bash
# The sequence learners' acceptance run on SynthTalk (docs/results.md), end to end on a CPU:
#   launch/sequence_learners_synthtalk.sh OUT
# makes a SynthTalk set, prepares it (sidecar landmarks, 64 px crops), trains Ψ, Φ and the
# not-few-shot Φ with their synthtalk_tiny configs, and evaluates both stages on the held-out
# identities of the test split. Reports: OUT/eval_expression.json, OUT/eval_head_motion.json.
# Rerunning resumes: finished data and finished runs are reused.
set -euo pipefail
out="${1:?usage: $0 OUT}"
bash "$(dirname "$0")/synthtalk_set.sh" "$out"
data=(--set "data.data_dir=$out/prepared" --set data.samples_per_clip=4)
talkinghead train --config configs/expression.py:synthtalk_tiny --workdir "$out/runs/expression" "${data[@]}"
talkinghead train --config configs/head_motion.py:synthtalk_tiny --workdir "$out/runs/head_motion" "${data[@]}"
talkinghead train --config configs/head_motion.py:synthtalk_tiny_static --workdir "$out/runs/head_motion_static" \
    "${data[@]}"
talkinghead evaluate --stage expression --checkpoint "$out/runs/expression" --data-dir "$out/prepared" \
    --out "$out/eval_expression.json"
talkinghead evaluate --stage head_motion --checkpoint "$out/runs/head_motion" \
    --baseline-checkpoint "$out/runs/head_motion_static" --data-dir "$out/prepared" --out "$out/eval_head_motion.json"
