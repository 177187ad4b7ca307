"""The train state (one pytree) and the optimizers, built from the config.

A stage trains one or more parameter *groups* (Φ: the generator `model` and the
`discriminator`), each with its own optax optimizer, configured under `config.optim.<group>`:

    optim.model = dict(name="adam", lr=3e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=2e-5,
                       grad_clip_norm=0.0, schedule=dict(name="halving", hold_epochs=5,
                                                         half_every_epochs=5))

`adam` with `weight_decay` adds the decay to the gradient before Adam (L2, as
`torch.optim.Adam(weight_decay=...)` does, which is what upstream used); `adamw` decays the
weights separately (decoupled). Schedules count in epochs and are turned into steps with the
input's `steps_per_epoch`:

- `constant`;
- `halving`: upstream Φ's `AdjustLR`: the rate is constant for `hold_epochs` epochs, then
  multiplied by 0.5 ** ((epoch - hold_epochs + 1) / half_every_epochs), set once per epoch;
- `linear_decay`: constant for `hold_epochs`, then linear to 0 over `decay_epochs`
  (upstream's image generator with `niter_decay > 0`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from talkinghead_jax.errors import ConfigError


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; checkpointed as one pytree.

  `params` and `opt_state` are dicts keyed by parameter group. `collections` holds the
  model's other variable collections (e.g. `batch_stats`), updated by the step. `rng` is the
  run's raw key data (uint32); step `s` uses `fold_in(key, s)`, so a resumed run draws the same
  numbers as an uninterrupted one.
  """

  step: jax.Array
  params: dict[str, Any]
  opt_state: dict[str, Any]
  collections: dict[str, Any]
  rng: jax.Array

  def step_key(self) -> jax.Array:
    return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def create_state(params: Mapping[str, Any], collections: Mapping[str, Any],
                 optimizers: Mapping[str, optax.GradientTransformation], seed_key: jax.Array) -> TrainState:
  """A step-0 state; `seed_key` is a typed key (`jax.random.key(seed)`)."""
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=dict(params),
      opt_state={group: optimizers[group].init(params[group]) for group in params},
      collections=dict(collections),
      rng=jax.random.key_data(seed_key),
  )


Schedule = Callable[[jax.Array], jax.Array]


def _epoch_steps(epochs: float, steps_per_epoch: int) -> int:
  return max(int(round(epochs * steps_per_epoch)), 0)


def make_schedule(config: ml_collections.ConfigDict, lr: float, steps_per_epoch: int) -> Schedule:
  """The learning rate as a function of the step (see the module docstring)."""
  name = config.get("name", "constant")
  if steps_per_epoch < 1:
    raise ConfigError(f"schedule {name!r}: steps_per_epoch must be >= 1, got {steps_per_epoch}")
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "halving":
    hold = int(config.hold_epochs)
    every = float(config.half_every_epochs)
    if every <= 0:
      raise ConfigError(f"schedule halving: half_every_epochs must be > 0, got {every}")

    def halving(step):
      epoch = jnp.asarray(step) // steps_per_epoch
      exponent = jnp.maximum(epoch - hold + 1, 0).astype(jnp.float32) / every
      return lr * jnp.power(0.5, exponent)

    return halving
  if name == "linear_decay":
    hold = _epoch_steps(config.hold_epochs, steps_per_epoch)
    decay = max(_epoch_steps(config.decay_epochs, steps_per_epoch), 1)
    return optax.linear_schedule(lr, 0.0, decay, transition_begin=hold)
  raise ConfigError(f"unknown schedule {name!r} (constant, halving, linear_decay)")


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, Schedule]:
  """An optax optimizer and its learning-rate schedule from one `optim.<group>` entry."""
  schedule = make_schedule(config.get("schedule", ml_collections.ConfigDict({"name": "constant"})),
                           float(config.lr), steps_per_epoch)
  parts = []
  if config.get("grad_clip_norm", 0.0):
    parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  name = config.get("name", "adam")
  b1, b2, eps = float(config.get("b1", 0.9)), float(config.get("b2", 0.999)), float(config.get("eps", 1e-8))
  weight_decay = float(config.get("weight_decay", 0.0))
  if name == "adam":
    if weight_decay:
      parts.append(optax.add_decayed_weights(weight_decay))  # L2 into the gradient, as torch Adam
    parts.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
    parts.append(optax.scale_by_learning_rate(schedule))
  elif name == "adamw":
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  else:
    raise ConfigError(f"unknown optimizer {name!r} (adam, adamw)")
  return optax.chain(*parts), schedule


def make_optimizers(optim_config: ml_collections.ConfigDict, groups, steps_per_epoch: int
                    ) -> tuple[dict[str, optax.GradientTransformation], dict[str, Schedule]]:
  """One optimizer per parameter group; every group needs an `optim.<group>` entry."""
  missing = [group for group in groups if group not in optim_config]
  if missing:
    raise ConfigError(f"config.optim has no entry for parameter group(s) {missing}")
  optimizers, schedules = {}, {}
  for group in groups:
    optimizers[group], schedules[group] = make_optimizer(optim_config[group], steps_per_epoch)
  return optimizers, schedules
