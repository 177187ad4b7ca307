"""Checkpoints in `<workdir>/checkpoints/<step>/`: the train state, the input position, the config.

A thin wrapper over orbax's `CheckpointManager`. Each checkpoint has three items:

- `state`: the `TrainState` pytree (params, optimizer states, step, RNG, batch statistics),
  written by every host for the shards it holds (orbax/tensorstore);
- `data`: the input iterator's state as JSON (`get_state()`); the array input's state is its
  global position, the same on every host, and the primary host writes it;
- `config`: the resolved config as JSON, so a checkpoint says how it was made.

Saves are asynchronous (training goes on while the files are written) and atomic (orbax
writes to a temporary directory and renames it when complete), and only the last
`max_to_keep` are kept. A restore takes the *target* shardings, so a run restores onto a
different mesh than it saved from: orbax reads each device's slice of the stored arrays.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from talkinghead_jax.errors import TalkingHeadError

ITEMS = ("state", "data", "config")

# orbax splits a replicated array's write among its replicas, which costs one small XLA
# compilation per array shape the first time; for arrays under this size the split saves
# nothing (a CPU run with a few dozen leaves spent seconds compiling slices).
MIN_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


def _type_handlers():
  handlers = ocp.type_handlers
  return handlers.create_type_handler_registry(
      (int, handlers.ScalarHandler()),
      (float, handlers.ScalarHandler()),
      (bytes, handlers.ScalarHandler()),
      (np.number, handlers.ScalarHandler()),
      (np.ndarray, handlers.NumpyHandler()),
      (str, handlers.StringHandler()),
      (jax.Array, handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_BYTES_FOR_REPLICA_PARALLEL)),
  )


class Checkpointer:
  """Saves and restores (state, data-iterator state, config) per step."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep if max_to_keep > 0 else None,
        enable_async_checkpointing=async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={
            "state": ocp.PyTreeCheckpointHandler(type_handler_registry=_type_handlers()),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        })

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, data_state: dict[str, Any], config: ml_collections.ConfigDict) -> None:
    """Starts writing checkpoint `step` (returns before the files are complete if async)."""
    config_json = json.loads(config.to_json_best_effort())
    saved = self._manager.save(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(state),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(config_json),
        ),
        force=True,
    )
    if not saved:
      raise TalkingHeadError(f"{self.directory}: checkpoint for step {step} was not written")

  def restore(self, step: int, abstract_state) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(state, data_state, config_dict) of checkpoint `step`.

    `abstract_state` is the state's pytree of `jax.ShapeDtypeStruct`s carrying the shardings
    to restore onto (any mesh; see `sharding.with_shardings`).
    """
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=abstract_state, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ),
    )
    return restored.state, restored.data, restored.config

  def restore_arrays(self, step: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(state, data_state, config_dict) of checkpoint `step` as nested dicts of numpy arrays,
    without knowing the model (for evaluation, export and tests)."""
    metadata = self._manager.item_metadata(int(step))["state"]
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(restore_args=as_numpy),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ),
    )
    return dict(restored.state), restored.data, restored.config

  def wait(self) -> None:
    """Blocks until asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
