#!/usr/bin/env bash
# The sequence learners' acceptance run on SynthTalk (docs/results.md), end to end on a CPU:
#   launch/sequence_learners_synthtalk.sh OUT
# makes a SynthTalk set, prepares it (sidecar landmarks, 64 px crops), trains Ψ, Φ and the
# not-few-shot Φ with their synthtalk_tiny configs, and evaluates both stages on the held-out
# identities of the test split. Reports: OUT/eval_expression.json, OUT/eval_head_motion.json.
# Rerunning resumes: finished data and finished runs are reused.
set -euo pipefail
out="${1:?usage: $0 OUT}"
mkdir -p "$out"
if [[ ! -f "$out/synthtalk/synthtalk.json" ]]; then
  talkinghead synth --out "$out/synthtalk" --identities 20 --clips-per-identity 4 --seconds 4 --size 64 --seed 0
fi
talkinghead prepare --dataset synthtalk --manual-dir "$out/synthtalk" --data-dir "$out/prepared" \
    --detector sidecar --size 64 --audio-rates 4000,5000,16000 --workers 2
data=(--set "data.data_dir=$out/prepared" --set data.samples_per_clip=4)
talkinghead train --config configs/expression.py:synthtalk_tiny --workdir "$out/runs/expression" "${data[@]}"
talkinghead train --config configs/head_motion.py:synthtalk_tiny --workdir "$out/runs/head_motion" "${data[@]}"
talkinghead train --config configs/head_motion.py:synthtalk_tiny_static --workdir "$out/runs/head_motion_static" \
    "${data[@]}"
talkinghead evaluate --stage expression --checkpoint "$out/runs/expression" --data-dir "$out/prepared" \
    --out "$out/eval_expression.json"
talkinghead evaluate --stage head_motion --checkpoint "$out/runs/head_motion" \
    --baseline-checkpoint "$out/runs/head_motion_static" --data-dir "$out/prepared" --out "$out/eval_head_motion.json"
