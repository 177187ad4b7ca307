#!/usr/bin/env bash
# The bundled checkpoint set (talkinghead_jax/assets/synthtalk_tiny), made with the project's own
# commands (docs/generate.md, "The bundled model"):
#   launch/bundle_synthtalk.sh OUT [SET_DIR]
# makes the SynthTalk set of docs/results.md (20 identities × 4 clips × 4 s at 64 px, seed 0;
# identities 2, 7, 12, 17 are the held-out test split), prepares it (sidecar landmarks, 64 px
# crops), trains Ψ, Φ, the unprojection net and Θ with their synthtalk_tiny configs, exports
# the four runs as one checkpoint set into SET_DIR (default: the package's assets/synthtalk_tiny)
# and checks that the set stays within MAX_MB (30) megabytes.
# Rerunning resumes: a finished set, prepared data and finished runs are reused. Wrap it in
# `nice -n 10` on a shared machine; on a 2-core CPU Ψ, Φ and Θ take most of the time (Θ about 14 minutes alone).
set -euo pipefail
out="${1:?usage: $0 OUT [SET_DIR]}"
set_dir="${2:-$(cd "$(dirname "$0")/.." && pwd)/talkinghead_jax/assets/synthtalk_tiny}"
max_mb="${MAX_MB:-30}"
bash "$(dirname "$0")/synthtalk_set.sh" "$out"
data=(--set "data.data_dir=$out/prepared" --set data.builder_config=sidecar_64 --set data.samples_per_clip=4)
talkinghead train --config configs/expression.py:synthtalk_tiny --workdir "$out/runs/expression" "${data[@]}"
talkinghead train --config configs/head_motion.py:synthtalk_tiny --workdir "$out/runs/head_motion" "${data[@]}"
talkinghead train --config configs/unprojection.py:synthtalk_tiny --workdir "$out/runs/unprojection" "${data[@]}"
talkinghead train --config configs/generator.py:synthtalk_tiny --workdir "$out/runs/generator" "${data[@]}" \
    --set "model.unprojection_checkpoint=$out/runs/unprojection"
talkinghead export --out "$set_dir" --force --data-dir "$out/prepared" --builder-config sidecar_64 \
    --expression "$out/runs/expression" --head-motion "$out/runs/head_motion" \
    --unprojection "$out/runs/unprojection" --generator "$out/runs/generator"
bytes=$(find "$set_dir" -type f -printf '%s\n' | awk '{total += $1} END {print total + 0}')
if (( bytes > max_mb * 1000 * 1000 )); then
  echo "$0: the checkpoint set $set_dir holds $bytes bytes, more than $max_mb MB" >&2
  exit 1
fi
echo "checkpoint set: $set_dir ($bytes bytes)"
