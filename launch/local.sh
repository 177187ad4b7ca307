#!/usr/bin/env bash
# Train one stage on this machine (all its devices):
#   launch/local.sh configs/head_motion.py:synthtalk_tiny /tmp/phi [--set key=value ...]
# Running the same command again resumes from the workdir's latest checkpoint; Ctrl-C saves one.
set -euo pipefail
config="$1"; workdir="$2"; shift 2
# Compiled programs are kept between runs, so a resumed run starts without recompiling.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$HOME/.cache/talkinghead/jax}"
exec talkinghead train --config "$config" --workdir "$workdir" "$@"
