"""Θ's G+D step sharded (mesh data=4 × fsdp=2, 8 simulated devices) equals the one-device step;
a run stopped by SIGTERM and resumed ends where an uninterrupted run ends; what a run logs."""

import functools
import io
import os
import signal

import jax
import numpy as np
import pytest

from generator_testdata import (FAST_COMPILE, compile_all, generator_config, initial_state,
                                write_unprojection_checkpoint)
from test_resume import _event_tags
from talkinghead_jax.train import distributed, loop, mesh as mesh_lib, sharding, tasks

TOTAL = 4
VARIANT = "synthtalk_tiny,baseline"
SMALL = ("model.n_downsample=2", "model.n_downsample_A=1", "model.n_adaptive_layers=1", "model.n_sc_layers=1")


def test_sharded_step_equals_single_device_step(tmp_path):
  """Both groups, soft rendering from the frozen unprojection net (16 px: its input resized), DIS
  flow supervision; Θ's, D's and the frozen net's kernels split over fsdp. (The D step reuses the
  G step's fakes here, one Θ forward fewer to compile; the resume test below regenerates them.)"""
  unprojection = write_unprojection_checkpoint(tmp_path / "unprojection", size=16)
  # Adam's first update is lr·g/(|g| + eps): with the default eps it is lr·sign(g), which flips for
  # gradients that are zero up to rounding; a large eps makes the update linear in g, so the
  # updated parameters compare the gradients themselves.
  config = generator_config(*SMALL, "batch_size=8", "loss.vgg=0", "loss.d_fakes=reuse",
                            "model.position_source=unprojection", f"model.unprojection_checkpoint={unprojection}",
                            "data.flow_gt=true",
                            "sharding.fsdp_min_size=0", "optim.generator.eps=1.0", "optim.discriminator.eps=1.0")
  task = tasks.get_task(config)
  data = task.make_input("train", 0, 1)
  batch = next(data)
  host_state, optimizers, schedules = initial_state(task, config, data.steps_per_epoch)
  abstract = jax.eval_shape(lambda: host_state)
  placed, lowered = {}, {}
  for name, spec in (("single", {"data": 1, "fsdp": 1, "model": 1}), ("sharded", {"data": 4, "fsdp": 2, "model": 1})):
    mesh = mesh_lib.make_mesh(spec)
    shardings = sharding.tree_shardings(abstract, config.sharding.rules, mesh, config.sharding.fsdp_min_size)
    batch_sharding = sharding.batch_sharding(mesh)
    state = jax.device_put(host_state, shardings)
    global_batch = distributed.global_batch(batch, batch_sharding, config.batch_size)
    if name == "sharded":  # the rules split Θ's, D's and the frozen unprojection net's kernels
      for kernel in (state.params["generator"]["up_0"]["conv_0"]["kernel"],
                     state.params["discriminator"]["discriminator_0"]["model1_0_0"]["kernel"],
                     state.collections["unprojection"]["params"]["res_2"]["conv_2"]["kernel"]):
        assert "fsdp" in kernel.sharding.spec and len(kernel.addressable_shards) == 8
    placed[name] = (state, global_batch)
    lowered[name] = functools.partial(
        jax.jit(loop.make_train_step(task, optimizers, schedules), in_shardings=(shardings, batch_sharding),
                out_shardings=(shardings, sharding.replicated(mesh), sharding.replicated(mesh))).lower,
        state, global_batch)
  steps = compile_all(lowered.items())
  results = {}
  for name, (state, global_batch) in placed.items():
    state, metrics, flags = steps[name](state, global_batch)
    assert np.all(jax.device_get(flags)), name
    results[name] = jax.device_get((state, metrics))
  (single, single_metrics), (sharded, sharded_metrics) = results["single"], results["sharded"]
  for key in ("generator/loss", "generator/gan", "generator/feat", "generator/flow", "generator/warp_ref",
              "generator/warp_rendered", "generator/grad_norm", "discriminator/loss", "discriminator/grad_norm"):
    assert sharded_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4), key
  for part in ("params", "collections"):
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(getattr(sharded, part))[0],
                            jax.tree.leaves(getattr(single, part))):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7, err_msg=f"{part}{jax.tree_util.keystr(path)}")
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(host_state.params))]
  assert np.mean(moved) > 0.5  # the comparison is of updated parameters


class _SigtermAt:
  """A BatchIterator that sends this process SIGTERM when its `count`-th batch is taken (as a
  scheduler would, at some point of the run)."""

  def __init__(self, iterator, count: int):
    self.iterator, self.count, self.taken = iterator, count, 0
    self.steps_per_epoch, self.element_spec = iterator.steps_per_epoch, iterator.element_spec

  def __iter__(self):
    return self

  def __next__(self):
    self.taken += 1
    if self.taken == self.count:
      os.kill(os.getpid(), signal.SIGTERM)
    return next(self.iterator)

  def get_state(self):
    return self.iterator.get_state()

  def set_state(self, state):
    self.iterator.set_state(state)


class _FastCompilingJax:
  """The `jax` the loop sees in these runs: every `jax.jit` compiles with the fast XLA options
  (test speed only; a one-off program compiles several times faster)."""

  def __getattr__(self, name):
    return getattr(jax, name)

  @staticmethod
  def jit(fn, **options):
    return jax.jit(fn, compiler_options=FAST_COMPILE, **options)


def test_sigterm_then_resume_ends_with_the_state_of_an_uninterrupted_run(tmp_path):
  """Θ (Table 3's baseline, the smallest variant, with the VGG loss and upstream's regenerated
  fakes) trained TOTAL steps by the shared loop on mesh data=2: interrupted by SIGTERM and
  resumed, and uninterrupted with images. (One test, not a fixture shared by several: under
  pytest-xdist each worker would train its own copy.) The resumed and uninterrupted runs
  compile no step: JAX's compilation cache (tests/train/conftest.py) holds it."""
  run = (*SMALL, f"total_steps={TOTAL}", "mesh.data=2", "loss.d_fakes=regenerate")  # synthtalk_tiny reuses them
  config = generator_config(*run, variant=VARIANT)
  task = tasks.get_task(config)
  make_input = task.make_input
  task.make_input = lambda *args: _SigtermAt(make_input(*args), count=3)
  resumed_log, whole_log = io.StringIO(), io.StringIO()
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(loop, "jax", _FastCompilingJax())
    interrupted = loop.train(config, tmp_path / "interrupted", task=task, stream=io.StringIO())
    resumed = loop.train(config, tmp_path / "interrupted", stream=resumed_log)
    whole = loop.train(generator_config(*run, f"log.images_every_steps={TOTAL}", variant=VARIANT), tmp_path / "whole",
                       stream=whole_log)

  assert interrupted.stopped_by_signal and 1 <= interrupted.last_checkpoint < TOTAL
  assert f"resuming from step {interrupted.last_checkpoint}" in resumed_log.getvalue()
  assert resumed.final_step == whole.final_step == TOTAL and not resumed.stopped_by_signal
  saved, reference = loop.load_checkpoint(tmp_path / "interrupted"), loop.load_checkpoint(tmp_path / "whole")
  assert saved["step"] == reference["step"] == TOTAL and saved["data"] == reference["data"]
  for part in ("params", "opt_state", "collections"):
    for a, b in zip(jax.tree.leaves(saved[part]), jax.tree.leaves(reference[part])):
      np.testing.assert_array_equal(a, b, err_msg=part)  # bit for bit
  assert "perceptual" in reference["collections"]  # the frozen VGG travels with the state

  # What the run logged: both groups' terms, and the image grid.
  for name in ("generator/gan", "generator/feat", "generator/vgg", "discriminator/real", "discriminator/fake"):
    assert np.isfinite(whole.metrics[name]), name
  assert len(whole.history) == TOTAL and f"step {TOTAL}/{TOTAL}" in whole_log.getvalue()
  events = list((tmp_path / "whole" / "tensorboard").glob("events.out.tfevents.*"))
  tags = _event_tags(events[0])
  assert ("generator/loss", "simple_value") in tags and ("discriminator/real", "simple_value") in tags
  assert ("generator", "image") in tags
