"""The unprojection task: its loss against a numpy reference, one training step, learning on
synthetic SynthTalk-style batches, summaries, config variants."""

import jax
import numpy as np
import pytest

from generator_testdata import REPO, compile_fast, initial_state, unprojection_config
from talkinghead_jax import config as config_lib
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.models.unprojection import POSITION_LOW, POSITION_RANGE
from talkinghead_jax.train import loop, tasks


def test_step_loss_updates_and_learning():
  """12 steps on one batch: the loss against a numpy reference, what a step updates, and the
  loss falling. (One test: a fixture shared by several would be trained by each xdist worker.)"""
  config = unprojection_config()
  task = tasks.get_task(config)
  data = task.make_input("train", 0, 1)
  batch = next(data)
  state, optimizers, schedules = initial_state(task, config, data.steps_per_epoch)

  def step_and_prediction(state, batch):
    """The step, and the prediction (normalised) at the step's incoming parameters."""
    predicted, _ = task._predict(state.params, state.collections, batch["image"], train=True)
    new_state, metrics, flags = loop.make_train_step(task, optimizers, schedules)(state, batch)
    return new_state, metrics, flags, predicted

  initial = jax.device_get(state)
  compiled = compile_fast(step_and_prediction, state, batch)
  history = []
  for _ in range(12):
    state, metrics, flags, predicted = compiled(state, batch)
    assert np.all(jax.device_get(flags))
    history.append(jax.device_get((metrics, predicted)))
  final = jax.device_get(state)

  # The loss: the face-weighted MSE of the normalised map (numpy, float64).
  metrics, predicted = history[0]
  size = config.data.image_size
  target = (batch["position_map"].astype(np.float64) / size - np.asarray(POSITION_LOW)) / POSITION_RANGE
  face = batch["face_mask"][..., 0].astype(np.float64)
  assert 0.0 < np.mean(face) < 1.0  # the mask selects part of the map
  weights = face * config.loss.face_weight + (1 - face) * config.loss.outside_weight
  squared = ((predicted.astype(np.float64) - target) ** 2).sum(-1)
  assert metrics["model/loss"] == pytest.approx((weights * squared).sum() / (3 * weights.sum()), rel=1e-4)
  rmse_px = np.sqrt((face * squared).sum() / face.sum()) * POSITION_RANGE * size
  assert metrics["model/face_rmse_px"] == pytest.approx(rmse_px, rel=1e-4)

  # A step moves the parameters and the batch statistics.
  assert not np.allclose(final.params["model"]["conv_in"]["kernel"], initial.params["model"]["conv_in"]["kernel"])
  assert not np.allclose(final.collections["batch_stats"]["norm_in"]["mean"],
                         initial.collections["batch_stats"]["norm_in"]["mean"])
  assert int(final.step) == len(history)

  # It learns.
  losses = [m["model/loss"] for m, _ in history]
  assert losses[-1] < 0.6 * losses[0], losses

  # Summaries: frame | predicted map | stored map | face mask.
  images = task.render_summaries({"image": batch["image"][:2], "predicted": history[-1][1][:2],
                                  "target": target[:2], "face_mask": batch["face_mask"][:2]})
  grid = images["position_map"]
  assert grid.shape == (2 * size, 4 * size, 3) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[:size, :size], batch["image"][0])


def test_variants_and_bad_settings():
  vox = config_lib.load(str(REPO / "configs/unprojection.py:vox"))
  assert (vox.data.image_size, vox.model.features, vox.model.num_downsamples) == (256, 16, 5)  # PRNet
  with pytest.raises(ConfigError):
    tasks.get_task(unprojection_config("data.image_size=36"))  # not divisible by 2^3
  with pytest.raises(ConfigError):
    tasks.get_task(unprojection_config("data.source=arrays")).make_input("train", 0, 1)
