"""Fixtures for the trainer tests: small learnable array files and tiny test configs.

The trainer tests start many tiny runs (several in subprocesses) whose init and step programs
are the same; JAX's persistent compilation cache, in a directory private to this test session,
lets each program compile once. Subprocesses inherit it through the environment.
"""

import atexit
import os
import shutil
import tempfile

import jax
import numpy as np
import pytest
from trainer_testdata import (EXPRESSION_RUN_LR, EXPRESSION_RUN_MESH, EXPRESSION_TEST_OVERRIDES,
                              HEAD_MOTION_TEST_OVERRIDES, REPO, write_expression_arrays, write_head_motion_arrays)

from talkinghead_jax import config as config_lib

_CACHE_DIR = tempfile.mkdtemp(prefix="talkinghead-test-jax-cache-")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
for _name, _value in (("jax_compilation_cache_dir", _CACHE_DIR), ("jax_persistent_cache_min_compile_time_secs", 0.5),
                      ("jax_persistent_cache_min_entry_size_bytes", 0)):
  jax.config.update(_name, _value)
  os.environ[_name.upper()] = str(_value)


@pytest.fixture(scope="session")
def head_motion_file(tmp_path_factory):
  return write_head_motion_arrays(tmp_path_factory.mktemp("arrays") / "head_motion.npz")


@pytest.fixture(scope="session")
def expression_file(tmp_path_factory):
  return write_expression_arrays(tmp_path_factory.mktemp("arrays") / "expression.npz")


@pytest.fixture
def head_motion_config(head_motion_file):
  """The tiny Φ config at test sizes, reading the synthetic array file; extra overrides allowed."""

  def make(*overrides):
    return config_lib.load(str(REPO / "configs/head_motion.py:synthtalk_tiny"),
                           [*HEAD_MOTION_TEST_OVERRIDES, f"data.path={head_motion_file}", *overrides])

  return make


@pytest.fixture
def expression_config(expression_file):
  def make(*overrides, path=None):
    return config_lib.load(str(REPO / "configs/expression.py:synthtalk_tiny"),
                           [*EXPRESSION_TEST_OVERRIDES, f"data.path={path or expression_file}", EXPRESSION_RUN_LR,
                            *overrides])

  return make


def _numpy_leaf(path, leaf, rng):
  """A plausible value for a parameter or statistic of this shape (no PRNG kernels to compile)."""
  name = jax.tree_util.keystr(path)
  if not np.issubdtype(leaf.dtype, np.floating):
    return np.zeros(leaf.shape, leaf.dtype)
  if "var" in name:
    return rng.uniform(0.5, 1.5, size=leaf.shape).astype(leaf.dtype)
  if "scale" in name:
    return (1.0 + 0.1 * rng.normal(size=leaf.shape)).astype(leaf.dtype)
  spread = 1.0 / np.sqrt(int(np.prod(leaf.shape[:-1]))) if leaf.ndim > 1 else 0.1
  return (spread * rng.normal(size=leaf.shape)).astype(leaf.dtype)


@pytest.fixture
def numpy_state():
  """`make(abstract_state, seed=0)`: a TrainState of numpy values shaped like `abstract_state`."""

  def make(abstract_state, seed=0):
    rng = np.random.default_rng(seed)
    state = jax.tree_util.tree_map_with_path(lambda path, leaf: _numpy_leaf(path, leaf, rng), abstract_state)
    # Adam's moments start at zero and the run key must be a real key.
    state = state.replace(opt_state=jax.tree.map(np.zeros_like, state.opt_state))
    return state.replace(rng=np.asarray(jax.random.key_data(jax.random.key(seed))))

  return make


@pytest.fixture(scope="session")
def expression_runs(tmp_path_factory, expression_file):
  """Ψ trained 15 steps (3 epochs) on data=4 × fsdp=2 ("whole"), and 7 + 8 steps ("split") with the
  second part on data=2 × fsdp=4 (shared by test_loop and test_distributed; the tests that use the
  same mesh and learning rate reuse the compiled programs)."""
  from talkinghead_jax.train import loop  # noqa: PLC0415

  def config(*overrides):
    return config_lib.load(str(REPO / "configs/expression.py:synthtalk_tiny"),
                           [*EXPRESSION_TEST_OVERRIDES, f"data.path={expression_file}", EXPRESSION_RUN_LR, *overrides])

  root = tmp_path_factory.mktemp("expression_runs")
  whole = loop.train(config("total_steps=15", *EXPRESSION_RUN_MESH), root / "whole")
  first = loop.train(config("total_steps=7", *EXPRESSION_RUN_MESH), root / "split")
  second = loop.train(config("total_steps=15", "mesh.data=2", "mesh.fsdp=4", "sharding.fsdp_min_size=0"),
                      root / "split")
  return root, whole, first, second
