"""The numpy curve plot used for TensorBoard images."""

import numpy as np

from talkinghead_jax.train import plots


def test_curves_are_drawn_where_their_values_map():
  target = np.zeros((10, 2))
  target[:, 1] = np.linspace(0, 1, 10)
  predicted = np.ones((10, 2))
  predicted[:, 1] = 0.5
  image = plots.curves_image(target, predicted, panel_height=40, width=50)
  assert image.shape == (80, 50, 3) and image.dtype == np.uint8
  # Channel 0: target 0 (the bottom of the range) and prediction 1 (the top).
  bottom = int(round(plots.value_rows(np.array([0.0]), 0.0, 1.0, 40)[0]))
  top = int(round(plots.value_rows(np.array([1.0]), 0.0, 1.0, 40)[0]))
  assert (bottom, top) == (38, 1)
  assert np.all(image[bottom, :, :] == plots.TARGET_COLOR)
  assert np.all(image[top, :, :] == plots.PREDICTED_COLOR)
  # Channel 1: a rising target line goes from the panel's bottom-left to its top-right.
  panel = image[40:80]
  green = np.all(panel == plots.TARGET_COLOR, axis=-1)
  assert green[bottom, 0] and green[top, -1]
