"""Mesh shapes and parameter/batch shardings from rules."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from talkinghead_jax.errors import ConfigError
from talkinghead_jax.train import distributed, mesh as mesh_lib, sharding


def test_mesh_shape_fills_the_free_axis():
  assert mesh_lib.mesh_shape({"data": -1}, 8) == (8, 1, 1)
  assert mesh_lib.mesh_shape({"data": 4, "fsdp": -1}, 8) == (4, 2, 1)
  assert mesh_lib.mesh_shape({"data": 2, "fsdp": 2, "model": 2}, 8) == (2, 2, 2)
  for bad in ({"data": -1, "fsdp": -1}, {"data": 3, "fsdp": -1}, {"data": 0}, {"batch": 2}):
    with pytest.raises(ConfigError):
      mesh_lib.mesh_shape(bad, 8)


def test_make_mesh_uses_all_or_the_first_n_devices():
  mesh = mesh_lib.make_mesh({"data": 4, "fsdp": -1, "model": 1})
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "model": 1}
  single = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "model": 1})
  assert single.devices.size == 1
  with pytest.raises(ConfigError, match="needs 16 devices"):
    mesh_lib.make_mesh({"data": 16})


RULES = ((r"embed/kernel$", (None, "model")), (r"kernel$", "fsdp"), (r".*", "replicate"))


def test_rules_first_match_wins_and_fsdp_picks_the_largest_divisible_dim():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "model": 2})
  assert sharding.spec_for("params/model/dense/kernel", (6, 10), RULES, mesh) == P(None, "fsdp")
  assert sharding.spec_for("params/model/dense/kernel", (10, 6), RULES, mesh) == P("fsdp", None)
  assert sharding.spec_for("params/model/dense/kernel", (3, 5), RULES, mesh) == P()  # nothing divides
  assert sharding.spec_for("params/model/dense/kernel", (6, 10), RULES, mesh, fsdp_min_size=100) == P()
  assert sharding.spec_for("params/model/embed/kernel", (6, 10), RULES, mesh) == P(None, "model")
  assert sharding.spec_for("params/model/dense/bias", (10,), RULES, mesh) == P()
  assert sharding.spec_for("anything", (4,), (), mesh) == P()  # no rule: replicated
  with pytest.raises(ConfigError, match="does not divide"):
    sharding.spec_for("params/embed/kernel", (6, 9), RULES, mesh)
  with pytest.raises(ConfigError, match="gives 2 axes"):
    sharding.spec_for("params/embed/kernel", (6,), RULES, mesh)
  with pytest.raises(ConfigError, match="unknown kind"):
    sharding.spec_for("x", (2,), ((".*", "shard"),), mesh)


def test_one_rule_covers_a_weight_and_its_adam_moments():
  mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 2, "model": 1})
  params = {"model": {"dense": {"kernel": jnp.zeros((4, 8)), "bias": jnp.zeros(8)}}}
  optimizer = optax.adam(1e-3)
  tree = {"params": params, "opt_state": {"model": optimizer.init(params["model"])}}
  shardings = sharding.tree_shardings(tree, RULES, mesh)
  names = dict(sharding.named_leaves(shardings))
  assert names["params/model/dense/kernel"].spec == P(None, "fsdp")
  assert names["params/model/dense/bias"].spec == P()
  assert names["opt_state/model/0/mu/dense/kernel"].spec == P(None, "fsdp")
  assert names["opt_state/model/0/nu/dense/kernel"].spec == P(None, "fsdp")
  assert names["opt_state/model/0/count"].spec == P()


def test_batch_is_split_over_data_and_fsdp():
  mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 2, "model": 1})
  batch_sharding = sharding.batch_sharding(mesh)
  local = {"x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3)}
  # One process holds every row.
  assert distributed.host_rows(batch_sharding, 16) == (0, 16)
  batch = distributed.global_batch(local, batch_sharding, 16)
  assert batch["x"].sharding == batch_sharding
  assert {shard.data.shape for shard in batch["x"].addressable_shards} == {(2, 3)}
  np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])


def test_distributed_arguments_from_flags_environment_and_slurm():
  args = distributed.initialize_arguments
  assert args(environ={}) is None
  assert args(auto=True, environ={}) == {}
  env = {"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"}
  assert args(environ=env) == {"coordinator_address": "h:1234", "num_processes": 4, "process_id": 2}
  assert args("a:1", 2, 1, environ=env) == {"coordinator_address": "a:1", "num_processes": 2, "process_id": 1}
  assert args(environ={**env, "JAX_NUM_PROCESSES": "1"}) is None
  with pytest.raises(ConfigError, match="needs all of"):
    args(environ={"JAX_COORDINATOR_ADDRESS": "h:1"})
  slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2", "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0"}
  assert args(environ=slurm) == {}
  assert args(environ={**slurm, "SLURM_NTASKS": "1"}) is None
