"""DIS optical flow direction and accuracy, the bilinear warp, and the confidence mask."""

import numpy as np
import pytest

from talkinghead_jax.data import flow


def _texture(shift=(0.0, 0.0), size=(72, 80)):
  """A smooth colour texture f(p + shift), pixel centres at integer indices, uint8."""
  rows, cols = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
  x, y = cols + shift[0], rows + shift[1]
  base = (np.sin(x / 4.1) * np.cos(y / 5.3) + 0.6 * np.sin((x + 1.7 * y) / 6.7)
          + 0.4 * np.cos((2.1 * x - y) / 7.9))
  channels = [128 + 55 * base, 128 + 45 * np.roll(base, 3, axis=1), 100 + 40 * base]
  return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shift", [(1.3, -0.7), (-2.25, 1.6)])
def test_dis_flow_measures_a_known_translation(shift):
  source = _texture()
  target = _texture(shift)  # target(p) = source(p + shift)
  measured = flow.dis_flow(source, target)
  assert measured.shape == (72, 80, 2) and measured.dtype == np.float32
  interior = measured[12:-12, 12:-12].reshape(-1, 2)
  np.testing.assert_allclose(np.median(interior, axis=0), shift, atol=0.08)
  assert np.mean(np.linalg.norm(interior - shift, axis=-1) < 0.25) > 0.9
  # Swapping the images reverses the flow.
  back = flow.dis_flow(target, source)[12:-12, 12:-12].reshape(-1, 2)
  np.testing.assert_allclose(np.median(back, axis=0), -np.asarray(shift), atol=0.08)
  # The source warped by the flow is the target (to uint8 rounding); the opposite flow is far off.
  inner = (slice(12, -12), slice(12, -12))
  warped = flow.warp_bilinear(source, measured)[inner]
  assert np.abs(warped - target[inner]).mean() < 1.0
  assert np.abs(flow.warp_bilinear(source, -measured)[inner] - target[inner]).mean() > 5.0
  confidence = flow.flow_confidence(source, target, measured)
  assert confidence.shape == (72, 80) and confidence[12:-12, 12:-12].mean() > 0.99


def test_warp_bilinear_is_exact_on_a_ramp_and_clamps_at_the_border():
  rows, cols = np.mgrid[0:20, 0:30].astype(np.float32)
  ramp = np.stack([3 * cols + 2 * rows, cols - rows], axis=-1)
  shift = np.broadcast_to(np.array([2.4, -1.3], np.float32), (20, 30, 2))
  warped = flow.warp_bilinear(ramp, shift)
  expected = np.stack([3 * (cols + 2.4) + 2 * (rows - 1.3), (cols + 2.4) - (rows - 1.3)], -1)
  np.testing.assert_allclose(warped[2:, :-3], expected[2:, :-3], atol=1e-4)
  # Positions beyond the image take the nearest edge value (the clamp, not zeros).
  far = np.broadcast_to(np.array([100.0, -100.0], np.float32), (20, 30, 2))
  np.testing.assert_allclose(flow.warp_bilinear(ramp, far), np.broadcast_to(ramp[0, -1],
                                                                            (20, 30, 2)))


def test_flow_confidence_threshold_is_on_the_channel_mean_in_unit_range():
  source = np.full((8, 8, 3), 100, np.uint8)
  target = source.copy()
  level = round(0.2 * 255)  # a difference of 0.2: squared 0.04
  target[0, :, :] += level  # all channels: error 0.04 ≥ 0.02 → 0
  target[1, :, 0] += level  # one channel: 0.04/3 < 0.02 → 1
  target[2, :, :] += round(0.1 * 255)  # all channels, 0.1: error 0.01 → 1
  confidence = flow.flow_confidence(source, target, np.zeros((8, 8, 2), np.float32))
  assert confidence.dtype == np.float32
  np.testing.assert_array_equal(confidence[:, 0], [0, 1, 1, 1, 1, 1, 1, 1])
  assert (confidence == confidence[:, :1]).all()


def test_bad_inputs():
  image = _texture()
  with pytest.raises(ValueError, match="uint8"):
    flow.dis_flow(image.astype(np.float32), image)
  with pytest.raises(ValueError, match="differ in shape"):
    flow.dis_flow(image, image[:-2])
  with pytest.raises(ValueError, match="unknown DIS preset"):
    flow.dis_flow(image, image, preset="slow")
