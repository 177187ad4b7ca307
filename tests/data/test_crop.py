"""The clip crop box (upstream's rule), cropping frames and mapping points into the crop."""

import numpy as np
import pytest

from talkinghead_jax.data import crop


def _face(rng, left, top, width, height, eye):
  """68 points filling the box [left, left+width]×[top, top+height] exactly, eye centre `eye`."""
  points = np.stack([rng.uniform(left + 1, left + width - 1, 68),
                     rng.uniform(top + 1, top + height - 1, 68)], axis=-1)
  points[0] = left, top
  points[16] = left + width, top + height
  # Upstream's eye points, symmetric about `eye`, so their mean is exactly `eye`.
  offsets = rng.uniform(-5, 5, (5, 2))
  points[36:41] = np.asarray(eye) + offsets
  points[42:47] = np.asarray(eye) - offsets
  points[41] = points[47] = left + 1, top + height - 1  # not eye points upstream: must not count
  return points


def test_crop_box_is_upstreams_rule_over_valid_frames():
  rng = np.random.default_rng(0)
  frame_a = _face(rng, 10, 20, 90, 60, eye=(50, 40))  # dis = 90
  frame_b = _face(rng, 40, 0, 60, 120, eye=(70, 60))  # dis = 120
  junk = rng.uniform(-1000, 1000, (68, 2))
  points = np.stack([frame_a, junk, frame_b])
  valid = np.array([True, False, True])
  # By hand: dis = 105, eye centre (60, 50), unit = 105/90.
  expected = (60 - 100 * 105 / 90, 50 - 80 * 105 / 90, 205 * 105 / 90)
  box = crop.crop_box(points, valid)
  np.testing.assert_allclose([box.x0, box.y0, box.side], expected, rtol=1e-12)
  # 3D points give the same box (z is ignored).
  with_z = np.concatenate([points, rng.normal(size=(3, 68, 1)) * 50], axis=-1)
  assert crop.crop_box(with_z, valid) == box
  with pytest.raises(ValueError, match="at least one valid frame"):
    crop.crop_box(points, np.zeros(3, bool))


def test_crop_points_maps_corner_to_zero_and_scales_z():
  box = crop.CropBox(x0=-20.0, y0=10.0, side=200.0)
  points = np.array([[-20.0, 10.0, 4.0], [180.0, 210.0, -8.0], [80.0, 60.0, 0.0]], np.float32)
  mapped = crop.crop_points(points, box, 64)
  assert mapped.dtype == np.float32
  np.testing.assert_allclose(mapped, [[0, 0, 1.28], [64, 64, -2.56], [32, 16, 0]], atol=1e-5)
  np.testing.assert_allclose(crop.crop_points(points[:, :2], box, 64), mapped[:, :2], atol=1e-6)


def _bilinear_reference(frame, box, size):
  """Plain numpy: bilinear sample at the output pixel centres, zero outside the frame."""
  height, width, _ = frame.shape
  centres = (np.arange(size) + 0.5) * box.side / size
  u = box.x0 + centres - 0.5  # index coordinates (pixel centres at integers)
  v = box.y0 + centres - 0.5
  x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
  wx, wy = u - x0, v - y0
  padded = np.zeros((height + 4, width + 4, 3))
  padded[2:-2, 2:-2] = frame

  def tap(rows, cols):
    rows = np.clip(rows + 2, 0, height + 3)
    cols = np.clip(cols + 2, 0, width + 3)
    return padded[rows[:, None], cols[None, :]]

  out = (tap(y0, x0) * ((1 - wy)[:, None] * (1 - wx)[None, :])[..., None]
         + tap(y0, x0 + 1) * ((1 - wy)[:, None] * wx[None, :])[..., None]
         + tap(y0 + 1, x0) * (wy[:, None] * (1 - wx)[None, :])[..., None]
         + tap(y0 + 1, x0 + 1) * (wy[:, None] * wx[None, :])[..., None])
  return out


@pytest.mark.parametrize("box", [
    crop.CropBox(-7.3, 5.6, 30.2),  # upscale, partly left of the frame
    crop.CropBox(10.0, 7.0, 21.0),  # upscale from a whole-pixel corner inside the frame
    crop.CropBox(12.25, -9.8, 51.7),  # mild downscale (< 2x), partly above the frame
    crop.CropBox(30.5, 20.4, 60.0),  # box running past the bottom-right corner
])
def test_crop_frames_matches_numpy_bilinear_reference(box):
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
  out = crop.crop_frames(frames, box, 32)
  assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
  for frame, cropped in zip(frames, out):
    reference = _bilinear_reference(frame.astype(np.float64), box, 32)
    # OpenCV's bilinear weights are fixed-point (1/32 px): allow one level beyond rounding.
    assert np.abs(cropped - reference).max() <= 1.5


@pytest.mark.parametrize("side", [83.2, 96.0, 137.9])
def test_crop_frames_downscale_is_exact_on_a_linear_ramp(side):
  # Block averages and bilinear interpolation both reproduce a linear image exactly, so the
  # crop must equal the ramp at the output pixel centres (away from the frame's edge).
  height, width = 200, 220
  y, x = np.mgrid[0:height, 0:width] + 0.5
  ramp = 20 + 0.5 * x + 0.3 * y
  frames = np.repeat(np.rint(ramp)[None, ..., None], 3, axis=-1).astype(np.uint8)
  box = crop.CropBox(31.7, 18.3, side)
  out = crop.crop_frames(frames, box, 32)[0, ..., 0].astype(np.float64)
  centres = (np.arange(32) + 0.5) * side / 32
  expected = 20 + 0.5 * (box.x0 + centres)[None, :] + 0.3 * (box.y0 + centres)[:, None]
  # uint8 rounding of the frame (±0.5) and of the output (±0.5).
  assert np.abs(out - expected).max() <= 1.0


@pytest.mark.parametrize("corner", [(6, 9), (-12, 30)])
def test_crop_frames_at_a_whole_ratio_is_the_block_mean(corner):
  # Box at whole pixels, side = 3·size: output pixel j is the mean of frame pixels
  # [x0 + 3j, x0 + 3j + 3) (zero outside the frame).
  rng = np.random.default_rng(2)
  frames = rng.integers(0, 256, (2, 80, 70, 3), dtype=np.uint8)
  x0, y0 = corner
  out = crop.crop_frames(frames, crop.CropBox(float(x0), float(y0), 48.0), 16)
  padded = np.zeros((2, 80 + 96, 70 + 96, 3))
  padded[:, 48:-48, 48:-48] = frames
  region = padded[:, 48 + y0:48 + y0 + 48, 48 + x0:48 + x0 + 48]
  expected = region.reshape(2, 16, 3, 16, 3, 3).mean(axis=(2, 4))
  assert np.abs(out - expected).max() <= 0.51


def test_crop_frames_downscale_does_not_alias():
  # A one-pixel checkerboard averages to mid grey; point sampling would give 0s and 255s.
  y, x = np.mgrid[0:160, 0:160]
  board = ((x + y) % 2 * 255).astype(np.uint8)
  frames = np.repeat(board[None, ..., None], 3, axis=-1)
  out = crop.crop_frames(frames, crop.CropBox(10.3, 20.6, 100.0), 40)  # 2.5x
  assert np.abs(out.astype(float) - 127.5).max() <= 1.0


def test_crop_frames_is_black_outside_the_frame():
  frames = np.full((1, 40, 40, 3), 200, np.uint8)
  # The frame fills the box's top-right quarter: output rows 0–7, columns 8–15.
  out = crop.crop_frames(frames, crop.CropBox(-40.0, 0.0, 80.0), 16)[0]
  assert (out[:, :8] == 0).all() and (out[8:] == 0).all()
  assert (out[:8, 8:] == 200).all()


@pytest.mark.parametrize("box", [crop.CropBox(21.3, 9.7, 41.0),  # upscale to 48
                                 crop.CropBox(3.1, -6.4, 101.0)])  # 2.1x downscale
def test_a_dot_lands_where_crop_points_says(box):
  point = np.array([41.37, 33.82, 6.0])  # frame pixels, sub-pixel
  y, x = np.mgrid[0:80, 0:96] + 0.5
  dot = 250 * np.exp(-((x - point[0])**2 + (y - point[1])**2) / (2 * 4.0**2))
  frames = np.repeat(np.rint(dot)[None, ..., None], 3, axis=-1).astype(np.uint8)
  cropped = crop.crop_frames(frames, box, 48)[0, ..., 1].astype(np.float64)
  cy, cx = np.mgrid[0:48, 0:48] + 0.5
  found = np.array([(cx * cropped).sum(), (cy * cropped).sum()]) / cropped.sum()
  expected = crop.crop_points(point, box, 48)
  np.testing.assert_allclose(found, expected[:2], atol=0.05)
  np.testing.assert_allclose(expected[2], 6.0 * 48 / box.side, rtol=1e-6)
