"""Multi-host start-up (JAX's own runtime) and per-host pieces of global batches.

`maybe_initialize` calls `jax.distributed.initialize` when this process is one of several:

1. explicit arguments (the `train` command's `--coordinator-address/--num-processes/
   --process-id`), else the environment variables `JAX_COORDINATOR_ADDRESS`,
   `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`;
2. a SLURM job step with more than one task (`srun`): JAX reads the SLURM variables;
3. `auto=True` (`train --multihost`): JAX detects the cluster itself (Cloud TPU VM pods,
   GKE, Open MPI, SLURM).

Otherwise the run is single-process and nothing is initialized. It must run before
anything asks JAX for its devices.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import numpy as np

from talkinghead_jax.errors import ConfigError

_SLURM_STEP_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def _int_or_none(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError as error:
    raise ConfigError(f"{name} must be an integer, got {value!r}") from error


def initialize_arguments(coordinator_address: str | None = None, num_processes: int | None = None,
                         process_id: int | None = None, auto: bool = False,
                         environ: Mapping[str, str] | None = None) -> dict | None:
  """The keyword arguments for `jax.distributed.initialize`, or None for a single process."""
  environ = os.environ if environ is None else environ
  address = coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS") or None
  count = num_processes if num_processes is not None else _int_or_none(
      environ.get("JAX_NUM_PROCESSES"), "JAX_NUM_PROCESSES")
  index = process_id if process_id is not None else _int_or_none(
      environ.get("JAX_PROCESS_ID"), "JAX_PROCESS_ID")
  if address is not None or count is not None or index is not None:
    if None in (address, count, index):
      raise ConfigError("multi-host start needs all of coordinator address, number of processes and "
                        f"process id; got {address!r}, {count!r}, {index!r}")
    if count == 1:
      return None
    return {"coordinator_address": address, "num_processes": count, "process_id": index}
  if all(var in environ for var in _SLURM_STEP_VARS) and int(environ["SLURM_NTASKS"]) > 1:
    return {}  # JAX's SLURM detection fills in everything.
  if auto:
    return {}
  return None


def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, auto: bool = False) -> bool:
  """Starts JAX's distributed runtime if this is a multi-process run; True if it did."""
  if jax.distributed.is_initialized():
    return True
  arguments = initialize_arguments(coordinator_address, num_processes, process_id, auto)
  if arguments is None:
    return False
  jax.distributed.initialize(**arguments)
  return True


def host_rows(sharding: jax.sharding.Sharding, global_batch: int) -> tuple[int, int]:
  """The rows [start, stop) of a global batch that this process's devices hold.

  The input pipeline reads exactly these rows, so the mesh must give each host one
  contiguous block of the batch (it does when the batch axes are the mesh's outer axes).
  """
  rows = set()
  for index in sharding.addressable_devices_indices_map((global_batch,)).values():
    part = index[0]
    rows.update(range(*part.indices(global_batch)))
  start, stop = min(rows), max(rows) + 1
  if len(rows) != stop - start:
    raise ConfigError("the mesh gives this host a non-contiguous part of the batch; put the "
                      "hosts on the outer mesh axes (data)")
  return start, stop


def global_batch(local_batch: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding,
                 global_size: int) -> dict[str, jax.Array]:
  """Global arrays assembled from each host's rows (`jax.make_array_from_process_local_data`)."""
  out = {}
  for name, value in local_batch.items():
    shape = (global_size,) + tuple(value.shape[1:])
    out[name] = jax.make_array_from_process_local_data(sharding, value, shape)
  return out
