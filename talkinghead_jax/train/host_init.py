"""Initial variables drawn on the host with numpy, for the loop's host-init path.

Why: a Flax model initialised under `jax.jit` compiles one random-number kernel per parameter.
Θ has about 800 variables, and on CPU that compile takes 30–90 s (measured 2026-11-23: 822
per-leaf `jax.random.normal` draws alone take 59 s to compile at XLA's lowest optimisation
level; one fused draw sliced into 822 outputs still 10 s), every time a run starts. Drawing the
same distributions with numpy takes well under a second and compiles nothing; the loop then
places each leaf straight into its sharding (`loop._host_init_state`).

The values follow the models' own initialisers, written out here per *scheme* and checked
against Flax's in `tests/train/test_task_generator.py`:

- `"upstream"` (models/layers.py: Θ, its discriminator): kernels xavier-normal with gain 0.02
  (variance 0.02²·2/(fan_in + fan_out)), biases 0, batch-norm scales N(1, 0.02), spectral-norm
  `u` a unit vector in a random direction, batch-norm running mean 0 and variance 1;
- `"flax"` (Flax defaults: the unprojection net): kernels LeCun truncated normal (variance
  1/fan_in, cut at ±2σ), biases 0, scales 1, running mean 0, variance 1.

Fans are Flax's: for a kernel (…, in, out), fan_in = in·r and fan_out = out·r with r the product
of the leading (receptive-field) dimensions. Each leaf draws from its own generator,
`default_rng([seed words…, crc32(path)])`, so a value depends on the seed and the leaf's path
only: not on the order of the tree, the mesh or the host. A leaf whose name no rule knows is an
error (a new initialiser must be added here, not silently drawn from the wrong distribution).
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import jax
import numpy as np

SCHEMES = ("upstream", "flax")
UPSTREAM_GAIN = 0.02  # models.layers.INIT_GAIN
_TRUNCATED_STD = 0.87962566103423978  # std of a standard normal cut at ±2 (jax.nn.initializers)


def fans(shape: Sequence[int]) -> tuple[int, int]:
  """(fan_in, fan_out) of a kernel (…, in, out), as `jax.nn.initializers.variance_scaling`."""
  if len(shape) < 2:
    raise ValueError(f"a kernel needs at least 2 dimensions, got shape {tuple(shape)}")
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  return int(shape[-2]) * receptive, int(shape[-1]) * receptive


def _truncated_normal(rng: np.random.Generator, shape: Sequence[int], bound: float = 2.0) -> np.ndarray:
  """Standard normal draws cut at ±bound (redrawn until inside)."""
  values = rng.standard_normal(shape)
  outside = np.abs(values) > bound
  while np.any(outside):
    values[outside] = rng.standard_normal(int(outside.sum()))
    outside = np.abs(values) > bound
  return values


def initial_value(scheme: str, collection: str, name: str, shape: Sequence[int], dtype,
                  rng: np.random.Generator) -> np.ndarray:
  """One leaf's initial value; `collection` is the variable collection, `name` its last key."""
  if scheme not in SCHEMES:
    raise ValueError(f"unknown init scheme {scheme!r}; schemes: {SCHEMES}")
  shape = tuple(int(d) for d in shape)
  if collection == "params":
    if name == "kernel":
      fan_in, fan_out = fans(shape)
      if scheme == "upstream":
        std = UPSTREAM_GAIN * np.sqrt(2.0 / (fan_in + fan_out))
        return (std * rng.standard_normal(shape)).astype(dtype)
      std = np.sqrt(1.0 / fan_in) / _TRUNCATED_STD
      return (std * _truncated_normal(rng, shape)).astype(dtype)
    if name in ("bias", "coefficients"):  # coefficients: Φ's extrapolation matrix, zeros (models/head_motion.py)
      return np.zeros(shape, dtype)
    if name == "scale":
      if scheme == "upstream":
        return (1.0 + UPSTREAM_GAIN * rng.standard_normal(shape)).astype(dtype)
      return np.ones(shape, dtype)
  elif collection == "batch_stats":
    if name == "mean":
      return np.zeros(shape, dtype)
    if name == "var":
      return np.ones(shape, dtype)
  elif collection == "spectral" and name == "u":
    direction = rng.standard_normal(shape)
    return (direction / max(float(np.linalg.norm(direction)), 1e-12)).astype(dtype)
  raise ValueError(f"host init ({scheme}): no rule for {collection}/…/{name} of shape {shape}")


def _seed_words(seed: Any) -> list[int]:
  """A jax key, its raw uint32 data, or an int → seed words for numpy."""
  if isinstance(seed, (int, np.integer)):
    return [int(seed) & 0xFFFFFFFF]
  if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
    seed = jax.random.key_data(seed)
  return [int(word) for word in np.asarray(seed, np.uint32).ravel()]


def initialize(abstract_variables, scheme: str, seed: Any, prefix: str = "") -> dict[str, Any]:
  """numpy values for a Flax variables tree `{collection: {…}}` of `ShapeDtypeStruct`s (e.g.
  `jax.eval_shape(model.init, …)`); `prefix` names the model in the per-leaf seeds."""
  words = _seed_words(seed)

  def one(path, leaf):
    keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    name = "/".join([prefix, *keys])
    rng = np.random.default_rng([*words, zlib.crc32(name.encode())])
    return initial_value(scheme, keys[0], keys[-1], leaf.shape, leaf.dtype, rng)

  return jax.tree_util.tree_map_with_path(one, abstract_variables)
