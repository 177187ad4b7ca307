"""The shared train loop in-process: sharded == single-device step, NaN stop, mesh change, learning."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from trainer_testdata import EXPRESSION_RUN_MESH, write_expression_arrays

from talkinghead_jax.train import checkpoint as checkpoint_lib
from talkinghead_jax.train import distributed, loop, mesh as mesh_lib, sharding, state as state_lib, tasks


def _abstract_state(task, config, batch_spec):
  optimizers, schedules = state_lib.make_optimizers(config.optim, task.groups, steps_per_epoch=5)

  def init():
    params, collections = task.init_variables(jax.random.key(0), batch_spec)
    return state_lib.create_state(params, collections, optimizers, jax.random.key(1))

  return jax.eval_shape(init), optimizers, schedules


def test_sharded_step_equals_single_device_step(expression_config, numpy_state):
  """Ψ (batch norm, dropout, noise mixing) on mesh data=4 × fsdp=2 vs one device, two steps."""
  config = expression_config(*EXPRESSION_RUN_MESH)
  task = tasks.get_task(config)
  data = task.make_input("train", 0, 1)
  batches = [next(data) for _ in range(2)]
  abstract, optimizers, schedules = _abstract_state(task, config, data.element_spec)
  host_state = numpy_state(abstract)
  results = {}
  for name, spec in (("single", {"data": 1, "fsdp": 1, "model": 1}), ("sharded", {"data": 4, "fsdp": 2, "model": 1})):
    mesh = mesh_lib.make_mesh(spec)
    shardings = sharding.tree_shardings(abstract, config.sharding.rules, mesh, config.sharding.fsdp_min_size)
    batch_sharding = sharding.batch_sharding(mesh)
    step = jax.jit(loop.make_train_step(task, optimizers, schedules), in_shardings=(shardings, batch_sharding),
                   out_shardings=(shardings, sharding.replicated(mesh), sharding.replicated(mesh)),
                   donate_argnums=(0,))
    state = jax.device_put(host_state, shardings)
    if name == "sharded":  # the rules really split the kernels over fsdp
      kernel = state.params["model"]["audio_conv_1"]["kernel"]
      assert "fsdp" in kernel.sharding.spec and len(kernel.addressable_shards) == 8
    metrics, stats = [], []
    for batch in batches:
      state, step_metrics, flags = step(state, distributed.global_batch(batch, batch_sharding, config.batch_size))
      assert np.all(jax.device_get(flags))
      metrics.append(jax.device_get(step_metrics))
      stats.append(jax.device_get(state.collections))
    # After step 1 the statistics depend on the initial parameters only; later, Adam's first
    # update (about lr·sign(g)) flips for gradients that are zero up to rounding.
    results[name] = (metrics, stats[0])
  (single, single_stats), (sharded, sharded_stats) = results["single"], results["sharded"]
  for step_index in range(2):
    for key in ("model/loss", "model/grad_norm"):
      assert sharded[step_index][key] == pytest.approx(single[step_index][key], rel=1e-5), (step_index, key)
  # Batch-norm statistics are reduced over the whole (sharded) batch, as on one device.
  for a, b in zip(jax.tree.leaves(sharded_stats), jax.tree.leaves(single_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_nan_stops_the_run_naming_the_tensors_and_keeps_the_last_good_checkpoint(
    expression_config, tmp_path):
  path = write_expression_arrays(tmp_path / "nan.npz", nan_sequence=5)
  # Unshuffled, 5 windows per sequence, batch 8: sequence 5's first window is in step 4.
  config = expression_config("data.shuffle=false", "checkpoint.every_steps=1", "total_steps=10", *EXPRESSION_RUN_MESH,
                             path=path)
  with pytest.raises(loop.NonFiniteError) as error:
    loop.train(config, tmp_path / "run")
  assert error.value.step == 4 and error.value.last_checkpoint == 3
  assert "model/loss" in error.value.names and "grads/model/reference_fc/kernel" in error.value.names
  message = str(error.value)
  assert message.startswith("step 4: non-finite values in model/loss") and "last good checkpoint: step 3" in message
  report = json.loads((tmp_path / "run" / loop.NAN_REPORT).read_text())
  assert report["step"] == 4 and report["last_checkpoint"] == 3
  kept = loop.load_checkpoint(tmp_path / "run")
  assert kept["step"] == 3
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(kept["params"]))


def test_checkpoint_restores_onto_a_different_mesh(tmp_path):
  fsdp_mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 8, "model": 1})
  tree = {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.arange(3, dtype=np.float32)}
  rules = ((r"w$", "fsdp"), (r".*", "replicate"))
  saved = jax.device_put(tree, sharding.tree_shardings(tree, rules, fsdp_mesh))
  checkpoints = checkpoint_lib.Checkpointer(tmp_path / "ckpt")
  checkpoints.save(7, saved, {"epoch": 2, "position": 1}, ml_collections.ConfigDict({"stage": "x"}))
  checkpoints.wait()
  for spec in ({"data": 4, "fsdp": 2, "model": 1}, {"data": 1, "fsdp": 1, "model": 1}):
    mesh = mesh_lib.make_mesh(spec)
    shardings = sharding.tree_shardings(tree, rules, mesh)
    abstract = sharding.with_shardings(jax.eval_shape(lambda: tree), shardings)
    state, data_state, config = checkpoints.restore(7, abstract)
    assert data_state == {"epoch": 2, "position": 1} and config == {"stage": "x"}
    assert state["w"].sharding == shardings["w"]
    np.testing.assert_array_equal(np.asarray(state["w"]), tree["w"])
    np.testing.assert_array_equal(np.asarray(state["b"]), tree["b"])
  checkpoints.close()


def test_expression_loss_decreases(expression_runs):
  _, whole, _, _ = expression_runs
  mse = [entry["model/mse"] for entry in whole.history]
  # 5 batches per epoch: compare whole epochs (the same windows, in another order).
  assert len(mse) == 15 and np.mean(mse[10:]) < 0.8 * np.mean(mse[:5])


def test_resume_on_a_different_mesh_matches_the_uninterrupted_run(expression_runs):
  root, whole, first, second = expression_runs
  assert first.final_step == 7 and second.final_step == 15 and second.history[0]["step"] == 8
  a, b = loop.load_checkpoint(root / "whole"), loop.load_checkpoint(root / "split")
  assert a["step"] == b["step"] == 15 and a["data"] == b["data"]
  # The same batches and the same losses after the restore onto data=2 × fsdp=4. (Parameters are
  # compared through the losses: biases right before a batch norm have a zero gradient up to
  # rounding, which Adam scales to ±lr steps that differ between meshes and change nothing.)
  for resumed, reference in zip(second.history, whole.history[7:]):
    assert resumed["step"] == reference["step"]
    assert resumed["model/loss"] == pytest.approx(reference["model/loss"], rel=1e-4)
    assert resumed["model/grad_norm"] == pytest.approx(reference["model/grad_norm"], rel=1e-3)
  kernel_a = a["params"]["model"]["decode_fc"]["kernel"]
  np.testing.assert_allclose(b["params"]["model"]["decode_fc"]["kernel"], kernel_a, rtol=1e-3, atol=1e-5)
