#!/usr/bin/env bash
# The 20-identity SynthTalk set of docs/results.md, made and prepared, for the SynthTalk launch
# scripts (sequence_learners_synthtalk.sh, generator_synthtalk.sh, bundle_synthtalk.sh):
#   launch/synthtalk_set.sh OUT
# makes OUT/synthtalk (20 identities × 4 clips × 4 s at 64 px, seed 0; identities 2, 7, 12, 17
# are the held-out test split) unless its manifest exists, and prepares it into OUT/prepared
# (sidecar landmarks, 64 px crops, builder config sidecar_64; finished shards are reused).
set -euo pipefail
out="${1:?usage: $0 OUT}"
mkdir -p "$out"
if [[ ! -f "$out/synthtalk/synthtalk.json" ]]; then
  talkinghead synth --out "$out/synthtalk" --identities 20 --clips-per-identity 4 --seconds 4 --size 64 --seed 0
fi
talkinghead prepare --dataset synthtalk --manual-dir "$out/synthtalk" --data-dir "$out/prepared" \
    --detector sidecar --size 64 --audio-rates 4000,5000,16000 --workers 2
