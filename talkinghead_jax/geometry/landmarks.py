"""iBUG-68 landmark semantics, the synthetic forehead, and landmark images.

Point order is iBUG-68, 0-based. "Right" and "left" are the subject's: the right eye (36–41)
appears on the image's left. Coordinates follow the project convention: x right, y down, in
pixels of the square crop, the centre of pixel column i at x = i + 0.5 (so pixel index =
floor(coordinate)).

Landmark images (`draw_landmark_image`) are the generator's landmark condition: white 1-px
polylines on black, one per facial part, closed for the eyes, the lips and (with the forehead)
the face outline. Upstream fits a quadratic through every 3 consecutive points and stamps
2×2 px; we draw straight segments between the points (the curves differ by well under a pixel
for 256-px faces) with a `thickness`×`thickness` stamp.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

NUM_POINTS = 68
NUM_FOREHEAD = 15


@dataclasses.dataclass(frozen=True)
class Group:
  """A contiguous run of landmark indices, [start, stop), drawn as one polyline."""

  name: str
  start: int
  stop: int
  closed: bool  # draw the segment stop-1 → start too

  @property
  def indices(self) -> np.ndarray:
    return np.arange(self.start, self.stop)

  @property
  def slice(self) -> slice:
    """Basic-indexing slice: `lmk[..., group.slice, :]` works on numpy and jax arrays alike."""
    return slice(self.start, self.stop)

  def __len__(self) -> int:
    return self.stop - self.start


JAW = Group("jaw", 0, 17, closed=False)
RIGHT_BROW = Group("right_brow", 17, 22, closed=False)
LEFT_BROW = Group("left_brow", 22, 27, closed=False)
NOSE_BRIDGE = Group("nose_bridge", 27, 31, closed=False)
NOSTRILS = Group("nostrils", 31, 36, closed=False)
RIGHT_EYE = Group("right_eye", 36, 42, closed=True)
LEFT_EYE = Group("left_eye", 42, 48, closed=True)
OUTER_LIP = Group("outer_lip", 48, 60, closed=True)
INNER_LIP = Group("inner_lip", 60, 68, closed=True)

GROUPS = (JAW, RIGHT_BROW, LEFT_BROW, NOSE_BRIDGE, NOSTRILS, RIGHT_EYE, LEFT_EYE, OUTER_LIP,
          INNER_LIP)


def _frozen(values) -> np.ndarray:
  array = np.asarray(values, dtype=np.int64)
  array.setflags(write=False)
  return array


# The 27 points that move least with expression, used for the rigid head-pose fit
# (UPSTREAM_NOTES §3.3): jaw 1–5 and 11–15 (not the chin), the whole nose, the eye corners and
# the brow ends.
STABLE_27 = _frozen([1, 2, 3, 4, 5, 11, 12, 13, 14, 15, *range(27, 36), 36, 39, 42, 45,
                     17, 21, 22, 26])
MOUTH = _frozen(range(48, 68))


def forehead_points(lmk: Any, int_cast: bool = True) -> np.ndarray:
  """The 15 synthetic upper-face points that close the face outline in landmark images.

  lmk (..., 68, D≥2) -> (..., 15, 2) float32, x/y only, ordered from jaw point 15 back to
  jaw point 1, so that jaw 0..16 followed by these points is a closed loop.

  Upstream (few-shot-vid2vid's `get_keypoints`) reflects jaw points 1–15 about the HORIZONTAL
  line y = b through the mean height of jaw points 0 and 16, squeezed to 2/3 of the distance:
  y' = b + (b − y)·2/3, x' = x. (This is the line through points 0 and 16 only when the head
  has no roll.) With `int_cast` (the default, as upstream) the jaw is first truncated to int,
  the offset (b − y)·2 is floor-divided by 3, and y' is truncated to int again; without it
  the same formula is evaluated in floating point.
  """
  lmk = np.asarray(lmk)
  if lmk.ndim < 2 or lmk.shape[-2] != NUM_POINTS or lmk.shape[-1] < 2:
    raise ValueError(f"landmarks must be (..., {NUM_POINTS}, 2 or 3), got {lmk.shape}")
  jaw = lmk[..., JAW.slice, :2]
  if int_cast:
    # np.trunc == numpy's float→int32 cast (toward zero), which is what upstream's astype does.
    jaw = np.trunc(jaw.astype(np.float64))
    baseline = (jaw[..., 0, 1] + jaw[..., 16, 1]) / 2
    inner = jaw[..., 1:16, :]
    offset = np.floor_divide((baseline[..., None] - inner[..., 1]) * 2, 3)
    upper_y = np.trunc(baseline[..., None] + offset)
  else:
    jaw = jaw.astype(np.float64)
    baseline = (jaw[..., 0, 1] + jaw[..., 16, 1]) / 2
    inner = jaw[..., 1:16, :]
    upper_y = baseline[..., None] + (baseline[..., None] - inner[..., 1]) * (2.0 / 3.0)
  upper = np.stack([inner[..., 0], upper_y], axis=-1)
  return upper[..., ::-1, :].astype(np.float32)


def with_forehead(points_2d: Any, int_cast: bool = True) -> np.ndarray:
  """(..., 68, ≥2) -> (..., 83, 2): the x/y landmarks followed by their forehead points."""
  points = np.asarray(points_2d, np.float32)
  return np.concatenate([points[..., :2], forehead_points(points, int_cast)], axis=-2)


def _segments(include_forehead: bool) -> np.ndarray:
  """(S, 2) index pairs of the polylines of a landmark image."""
  pairs = []
  for group in GROUPS:
    chain = list(range(group.start, group.stop))
    if group is JAW and include_forehead:
      # The outline: down the jaw 0..16, back over the forehead (stored 15..1), to 0.
      chain = chain + list(range(NUM_POINTS, NUM_POINTS + NUM_FOREHEAD)) + [group.start]
    elif group.closed:
      chain = chain + [group.start]
    pairs.extend(zip(chain[:-1], chain[1:]))
  return np.asarray(pairs, dtype=np.int64)


_SEGMENTS = {flag: _segments(flag) for flag in (False, True)}


def _clip_to_box(p0: np.ndarray, p1: np.ndarray, low: float, high: float):
  """Liang–Barsky: parameters [t0, t1] of each segment p0 + t(p1 − p0) inside the square box."""
  delta = p1 - p0
  t0 = np.zeros(len(p0))
  t1 = np.ones(len(p0))
  keep = np.isfinite(p0).all(axis=1) & np.isfinite(p1).all(axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    for axis in range(2):
      d = delta[:, axis]
      start = p0[:, axis]
      moving = d != 0
      ta = (low - start) / d
      tb = (high - start) / d
      t0 = np.where(moving, np.maximum(t0, np.minimum(ta, tb)), t0)
      t1 = np.where(moving, np.minimum(t1, np.maximum(ta, tb)), t1)
      keep &= moving | ((start >= low) & (start <= high))
  keep &= t0 <= t1
  return t0, t1, keep


def _rasterize(starts: np.ndarray, ends: np.ndarray, size: int, thickness: int) -> np.ndarray:
  """Segments (B, S, 2) -> (B, size, size) float32 with 1 on every covered pixel.

  Each segment is sampled at ≤ 1 px steps along its major axis, with both end points, and each
  sample lights the pixel that contains it (floor), which gives 8-connected lines; a thicker
  line stamps a thickness×thickness square (offsets −⌊k/2⌋ … k−1−⌊k/2⌋) on every sample.
  """
  batch, count = starts.shape[:2]
  image = np.zeros(batch * size * size, np.float32)
  frame = np.repeat(np.arange(batch), count)
  p0 = starts.reshape(-1, 2).astype(np.float64)
  p1 = ends.reshape(-1, 2).astype(np.float64)
  # Clip first, so that a wild point costs nothing and cannot explode the sample count.
  margin = thickness + 1.0
  t0, t1, keep = _clip_to_box(p0, p1, -margin, size + margin)
  delta = p1 - p0
  q0 = (p0 + t0[:, None] * delta)[keep]
  q1 = (p0 + t1[:, None] * delta)[keep]
  frame = frame[keep]
  if not len(q0):
    return image.reshape(batch, size, size)
  steps = np.ceil(np.abs(q1 - q0).max(axis=1)).astype(np.int64)
  samples = steps + 1
  owner = np.repeat(np.arange(len(q0)), samples)
  first = np.cumsum(samples) - samples
  local = np.arange(owner.size) - first[owner]
  fraction = local / np.maximum(steps, 1)[owner]
  points = q0[owner] + fraction[:, None] * (q1 - q0)[owner]
  column = np.floor(points[:, 0]).astype(np.int64)
  row = np.floor(points[:, 1]).astype(np.int64)
  frame = frame[owner]
  offsets = np.arange(thickness) - thickness // 2
  for dy in offsets:
    for dx in offsets:
      r, c = row + dy, column + dx
      inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
      image[(frame[inside] * size + r[inside]) * size + c[inside]] = 1.0
  return image.reshape(batch, size, size)


def draw_landmark_images(points_2d: Any, size: int, thickness: int = 1,
                         include_forehead: bool = True,
                         forehead_int_cast: bool = True) -> np.ndarray:
  """Landmark images for a batch: (T, 68 or 83, ≥2) -> (T, size, size) float32 in {0, 1}.

  Points are in pixels (x right, y down, pixel centres at i + 0.5); only x/y are used. With
  `include_forehead`, 68-point input gets its forehead points from `forehead_points` (with
  `forehead_int_cast`), and 83-point input is taken to carry them already; the face outline
  is then a closed loop. Non-finite points drop their segments; parts outside the image are
  clipped.
  """
  points = np.asarray(points_2d)
  if points.ndim != 3 or points.shape[1] not in (NUM_POINTS, NUM_POINTS + NUM_FOREHEAD) or (
      points.shape[2] < 2):
    raise ValueError(f"points must be (T, 68 or 83, 2), got {points.shape}")
  if int(size) <= 0 or int(thickness) <= 0:
    raise ValueError(f"size and thickness must be positive, got {size} and {thickness}")
  points = points[..., :2].astype(np.float64)
  if include_forehead and points.shape[1] == NUM_POINTS:
    forehead = forehead_points(points, forehead_int_cast).astype(np.float64)
    points = np.concatenate([points, forehead], axis=1)
  segments = _SEGMENTS[bool(include_forehead)]
  return _rasterize(points[:, segments[:, 0]], points[:, segments[:, 1]], int(size),
                    int(thickness))


def draw_landmark_image(points_2d: Any, size: int, thickness: int = 1,
                        include_forehead: bool = True,
                        forehead_int_cast: bool = True) -> np.ndarray:
  """One landmark image: (68 or 83, ≥2) -> (size, size) float32 in {0, 1}.

  See `draw_landmark_images` for the conventions.
  """
  points = np.asarray(points_2d)
  if points.ndim != 2:
    raise ValueError(f"points must be (68 or 83, 2), got {points.shape}")
  return draw_landmark_images(points[None], size, thickness, include_forehead,
                              forehead_int_cast)[0]
