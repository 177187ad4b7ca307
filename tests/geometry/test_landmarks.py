"""Tests for geometry.landmarks: groups, forehead points, landmark images."""

import numpy as np
import pytest
from scipy import ndimage

from talkinghead_jax.geometry import landmarks

# The expected polylines, written out by hand: (indices, closed).
_EXPECTED_PARTS = [
    (list(range(0, 17)), False), (list(range(17, 22)), False), (list(range(22, 27)), False),
    (list(range(27, 31)), False), (list(range(31, 36)), False), (list(range(36, 42)), True),
    (list(range(42, 48)), True), (list(range(48, 60)), True), (list(range(60, 68)), True),
]


def face_2d(seed: int = 0) -> np.ndarray:
  """A rough frontal face (68, 2) in a 128-px crop with random wobble."""
  rng = np.random.default_rng(seed)
  points = np.zeros((68, 2))
  phi = np.pi - np.arange(17) * np.pi / 16
  points[0:17] = np.stack([64 + 36 * np.cos(phi), 62 + 40 * np.sin(phi)], 1)
  points[17:22] = np.stack([np.linspace(38, 58, 5), np.full(5, 46.0)], 1)
  points[22:27] = np.stack([np.linspace(70, 90, 5), np.full(5, 46.0)], 1)
  points[27:31] = np.stack([np.full(4, 64.0), np.linspace(50, 68, 4)], 1)
  points[31:36] = np.stack([np.linspace(56, 72, 5), np.full(5, 72.0)], 1)
  for start, centre, rx, ry, count in ((36, (50, 55), 7, 3, 6), (42, (78, 55), 7, 3, 6),
                                       (48, (64, 86), 13, 6, 12), (60, (64, 86), 8, 2, 8)):
    angle = np.pi - np.arange(count) * 2 * np.pi / count
    points[start:start + count] = np.stack([centre[0] + rx * np.cos(angle),
                                            centre[1] - ry * np.sin(angle)], 1)
  return points + rng.uniform(-0.8, 0.8, size=points.shape)


def expected_segments(points: np.ndarray, include_forehead: bool) -> list:
  segments = []
  for indices, closed in _EXPECTED_PARTS:
    chain = list(indices)
    if indices[0] == 0 and include_forehead:
      chain = chain + list(range(68, 83)) + [0]
    elif closed:
      chain = chain + [indices[0]]
    segments += [(points[a], points[b]) for a, b in zip(chain[:-1], chain[1:])]
  return segments


def reference_pixels(segments, size: int, step: float = 0.005) -> np.ndarray:
  """Every pixel that some point of some segment falls in (dense sampling)."""
  image = np.zeros((size, size), bool)
  for p, q in segments:
    count = int(np.ceil(np.abs(q - p).max() / step)) + 1
    samples = p + np.linspace(0, 1, count)[:, None] * (q - p)
    cols, rows = np.floor(samples).astype(int).T
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    image[rows[inside], cols[inside]] = True
  return image


def test_groups_partition_the_68_points():
  covered = np.concatenate([group.indices for group in landmarks.GROUPS])
  np.testing.assert_array_equal(covered, np.arange(68))
  assert [(list(g.indices), g.closed) for g in landmarks.GROUPS] == _EXPECTED_PARTS
  points = np.arange(68 * 2).reshape(68, 2)
  np.testing.assert_array_equal(points[landmarks.RIGHT_EYE.slice], points[36:42])


def test_stable_points_and_mouth():
  assert sorted(landmarks.STABLE_27.tolist()) == sorted(
      [1, 2, 3, 4, 5, 11, 12, 13, 14, 15] + list(range(27, 36)) + [36, 39, 42, 45, 17, 21, 22, 26])
  assert len(set(landmarks.STABLE_27.tolist())) == 27
  np.testing.assert_array_equal(landmarks.MOUTH, np.arange(48, 68))
  with pytest.raises(ValueError):
    landmarks.STABLE_27[0] = 0  # read-only: a shared constant


def _simple_jaw() -> np.ndarray:
  points = np.zeros((68, 3))
  i = np.arange(17)
  points[:17, 0] = 10 * i + 0.7
  points[:17, 1] = 100.9 + 2 * np.minimum(i, 16 - i)
  points[0, 1], points[16, 1] = 100.6, 101.2
  return points


def test_forehead_points_known_answer_with_upstream_int_cast():
  points = _simple_jaw()
  upper = landmarks.forehead_points(points)
  assert upper.shape == (15, 2) and upper.dtype == np.float32
  # By hand: ints 100 and 101 give the baseline 100.5; point 8 (y 116.9 -> 116):
  # (100.5 − 116)·2 // 3 = −31 // 3 = −11, so y' = int(89.5) = 89 (exact thirds would give
  # int(90.17) = 90); x' = int(80.7) = 80. The points run from jaw 15 back to jaw 1, so jaw 8
  # is entry 7.
  assert tuple(upper[7]) == (80.0, 89.0)
  # Every point, by upstream's recipe on Python scalars.
  for k, jaw_index in enumerate(range(15, 0, -1)):
    x, y = int(points[jaw_index, 0]), int(points[jaw_index, 1])
    baseline = (int(points[0, 1]) + int(points[16, 1])) / 2
    assert tuple(upper[k]) == (x, int(baseline + (baseline - y) * 2 // 3))


def test_forehead_points_without_int_cast_mirror_at_two_thirds():
  points = _simple_jaw()
  upper = landmarks.forehead_points(points, int_cast=False)
  baseline = (100.6 + 101.2) / 2
  jaw = points[15:0:-1, :2]
  np.testing.assert_allclose(upper[:, 0], jaw[:, 0], rtol=1e-6)
  np.testing.assert_allclose(upper[:, 1] - baseline, -(jaw[:, 1] - baseline) * 2 / 3, atol=1e-4)
  batch = landmarks.forehead_points(np.stack([points, points + [5, 7, 0]]), int_cast=False)
  np.testing.assert_allclose(batch[1], upper + [5, 7], atol=1e-4)


def test_horizontal_segment_covers_its_row_and_nothing_else():
  # Everything collapsed onto one pixel, except the right brow: a horizontal line on row 20.
  points = np.full((68, 2), 100.5)
  points[17:22] = np.stack([np.linspace(10.5, 50.5, 5), np.full(5, 20.5)], 1)
  image = landmarks.draw_landmark_image(points, 128)
  assert image.shape == (128, 128) and image.dtype == np.float32
  expected = np.zeros((128, 128), np.float32)
  expected[20, 10:51] = 1
  expected[100, 100] = 1
  np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize("include_forehead", [True, False])
def test_lines_light_exactly_the_pixels_the_segments_pass_through(include_forehead):
  points = face_2d()
  image = landmarks.draw_landmark_image(points, 128, include_forehead=include_forehead)
  full = np.concatenate([points, landmarks.forehead_points(points)])
  reference = reference_pixels(expected_segments(full, include_forehead), 128)
  lit = image > 0
  assert set(np.unique(image)) == {0.0, 1.0}
  # Every lit pixel is crossed by a segment (so far pixels are 0) ...
  assert not (lit & ~reference).any()
  # ... every landmark's own pixel is lit ...
  cols, rows = np.floor(points).astype(int).T
  assert lit[rows, cols].all()
  # ... and there are no gaps: each crossed pixel touches a lit one (8-connected lines may
  # skip a pixel that a segment only clips at a corner).
  assert not (reference & ~ndimage.binary_dilation(lit, np.ones((3, 3)))).any()
  if not include_forehead:
    assert not lit[:int(points[:, 1].min()) - 1].any()  # no outline above the brows


def test_closing_segments_are_drawn():
  points = face_2d(1)
  image = landmarks.draw_landmark_image(points, 128)
  # The midpoint of each loop's closing segment, e.g. 41 -> 36, lies on a lit pixel.
  for last, first in ((41, 36), (47, 42), (59, 48), (67, 60)):
    x, y = np.floor((points[last] + points[first]) / 2).astype(int)
    assert image[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any()
  # With the forehead, the outline closes from its last point (above jaw 1) back to jaw 0.
  upper = landmarks.forehead_points(points)
  x, y = np.floor((upper[-1] + points[0]) / 2).astype(int)
  assert image[y - 1:y + 2, x - 1:x + 2].any()


def test_thickness_is_a_square_stamp():
  points = face_2d(2)
  thin = landmarks.draw_landmark_image(points, 128) > 0
  thick = landmarks.draw_landmark_image(points, 128, thickness=3) > 0
  np.testing.assert_array_equal(thick, ndimage.binary_dilation(thin, np.ones((3, 3))))


def test_83_point_input_and_batches():
  points = np.stack([face_2d(3), face_2d(4)])
  batch = landmarks.draw_landmark_images(points, 96)
  assert batch.shape == (2, 96, 96)
  for i in range(2):
    np.testing.assert_array_equal(batch[i], landmarks.draw_landmark_image(points[i], 96))
  with_forehead = landmarks.with_forehead(points[0])
  assert with_forehead.shape == (83, 2)
  np.testing.assert_array_equal(landmarks.draw_landmark_image(with_forehead, 96), batch[0])
  # Three columns (x, y, z) are fine; z is ignored.
  xyz = np.concatenate([points[0], np.ones((68, 1))], 1)
  np.testing.assert_array_equal(landmarks.draw_landmark_image(xyz, 96), batch[0])


def test_wild_and_missing_points_are_clipped_or_dropped():
  points = np.full((68, 2), 5.5)
  points[17] = [-1e9, 20.5]
  points[18:22] = [1e9, 20.5]
  image = landmarks.draw_landmark_image(points, 64, include_forehead=False)
  np.testing.assert_array_equal(np.nonzero(image.sum(1))[0], [5, 20])
  np.testing.assert_array_equal(image[20], np.ones(64))
  points[27:31] = np.nan
  assert (landmarks.draw_landmark_image(points, 64, include_forehead=False) == image).all()
  with pytest.raises(ValueError):
    landmarks.draw_landmark_image(np.zeros((67, 2)), 64)
