"""Model-test helpers: variables filled from numpy (no threefry kernels to compile, so fast)."""

import jax
import numpy as np
import pytest


def _fill(path, leaf, rng):
  name = jax.tree_util.keystr(path)
  shape = leaf.shape
  if "var" in name:  # batch-norm running variance: positive
    return rng.uniform(0.5, 1.5, size=shape).astype(leaf.dtype)
  if "scale" in name:
    return (1.0 + 0.1 * rng.normal(size=shape)).astype(leaf.dtype)
  fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
  spread = 1.0 / np.sqrt(fan_in) if len(shape) > 1 else 0.1
  return (spread * rng.normal(size=shape)).astype(leaf.dtype)


@pytest.fixture
def numpy_variables():
  """`make(module, *args, **kwargs)`: the module's variables, shapes from `init`, values from numpy."""

  def make(module, *args, seed=0, **kwargs):
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(lambda path, leaf: _fill(path, leaf, rng), abstract)

  return make
