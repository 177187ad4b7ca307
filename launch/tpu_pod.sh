#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM pod slice; each worker runs the same command, JAX finds
# the others (--multihost) and each host feeds its rows of the global batch:
#   launch/tpu_pod.sh TPU_NAME ZONE configs/head_motion.py:vox /mnt/shared/phi [--set key=value ...]
# The workdir must be one directory every host sees (NFS/Filestore, or a bucket mounted with gcsfuse),
# and the repository installed on every worker at ~/talkinghead-jax (pip install -e . with jax[tpu]).
# A preempted slice: run the same command again; it resumes from the latest checkpoint.
set -euo pipefail
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/talkinghead-jax && talkinghead train --multihost --config $(printf %q "$config") --workdir $(printf %q "$workdir") $(printf '%q ' "$@")"
