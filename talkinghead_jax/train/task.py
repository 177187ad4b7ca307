"""What a training stage plugs into the shared loop: a `Task`.

The loop (`loop.train`) owns the mesh, shardings, optimizers, checkpoints, logging and signals;
a task owns the model, the losses and the input:

- `groups`: the parameter groups, each with its own optimizer (`config.optim.<group>`),
  updated one after the other inside the same step, in this order;
- `make_input(split, process_index, process_count)`: a `BatchIterator` over this host's rows
  of each global batch;
- `init_variables(rng, batch_spec)`: `(params_by_group, collections)` for a batch of the
  given global shapes (called under `jax.eval_shape` and then jitted straight into the
  target shardings, so it must be a pure function of its arguments);
- `loss_fn(group, params, collections, batch, rng, step)`: `(loss, (metrics, collections))`;
  the loop differentiates it with respect to `params[group]` only. `rng` is the step's key
  (the same for every group: a task that needs one draw shared by its groups, e.g. Φ's
  sequence lengths, takes it from there). The returned collections replace the state's (or
  `None` to keep them);
- optionally `host_init_variables(rng, batch_spec)`: the same tree as `init_variables` as numpy
  values; the loop then places each leaf straight into its sharding instead of compiling the
  init (a jitted init of a big model compiles one kernel per parameter; `host_init.py`);
- optionally `summary_outputs(params, collections, batch)` (jitted, small arrays) and
  `render_summaries(outputs)` → `{name: HxWx3 uint8 image}` for TensorBoard.
"""

from __future__ import annotations

import abc
from typing import Any, Iterator, Mapping, Protocol

import jax
import ml_collections
import numpy as np


class BatchIterator(Protocol):
  """A resumable iterator of this host's part of each global batch (numpy arrays)."""

  steps_per_epoch: int
  element_spec: Mapping[str, jax.ShapeDtypeStruct]  # this host's batch shapes

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]: ...

  def __next__(self) -> dict[str, np.ndarray]: ...

  def get_state(self) -> dict[str, Any]: ...

  def set_state(self, state: Mapping[str, Any]) -> None: ...


class Task(abc.ABC):
  """A training stage (see the module docstring)."""

  groups: tuple[str, ...] = ("model",)

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @abc.abstractmethod
  def make_input(self, split: str, process_index: int, process_count: int) -> BatchIterator:
    ...

  @abc.abstractmethod
  def init_variables(self, rng: jax.Array, batch_spec: Mapping[str, jax.ShapeDtypeStruct]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    ...

  @abc.abstractmethod
  def loss_fn(self, group: str, params: dict[str, Any], collections: dict[str, Any],
              batch: Mapping[str, jax.Array], rng: jax.Array, step: jax.Array):
    ...

  def summary_outputs(self, params, collections, batch) -> dict[str, jax.Array]:
    return {}

  def render_summaries(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {}
