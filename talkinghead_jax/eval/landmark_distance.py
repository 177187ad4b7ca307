"""LMD: landmark distance between generated and ground-truth frames (Chen et al. 2018).

Landmarks are detected on both videos with the same `data.detectors` backend. Their x and y are
rescaled to a 256x256 frame (x·256/W, y·256/H), so LMD is in pixels at 256 px whatever the
video size. Per frame: the mean over the chosen points of the Euclidean 2D distance between the
generated and the ground-truth point (z is not used). No alignment or normalisation is applied
first: a head placed differently counts as landmark error. Per video: the mean over the frames
where both detections succeeded; the number of frames used is reported.

  mouth: iBUG points 48–67 (20 points, outer and inner lips)
  face:  all 68 points
"""

from __future__ import annotations

import numpy as np

REFERENCE_SIZE = 256
POINT_SETS = {"mouth": tuple(range(48, 68)), "face": tuple(range(68))}


def _per_frame(pred, gt, scale, indices):
  import jax.numpy as jnp

  diff = (pred[:, indices, :2] - gt[:, indices, :2]) * scale
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1)), axis=-1)


_JITTED = None


def landmark_distance(pred_points: np.ndarray, gt_points: np.ndarray,
                      frame_size: tuple[int, int], points: str = "mouth") -> np.ndarray:
  """(T, 68, ≥2) x2 landmarks of frames of `frame_size` (H, W) -> (T,) distances at 256 px."""
  global _JITTED
  if points not in POINT_SETS:
    raise ValueError(f"points must be one of {sorted(POINT_SETS)}, got {points!r}")
  pred_points = np.asarray(pred_points, np.float32)
  gt_points = np.asarray(gt_points, np.float32)
  if pred_points.shape != gt_points.shape or pred_points.shape[-2] != 68:
    raise ValueError(f"landmarks must be (T, 68, 2|3) alike, got {pred_points.shape} and "
                     f"{gt_points.shape}")
  if _JITTED is None:
    import jax

    _JITTED = jax.jit(_per_frame, static_argnums=3)
  height, width = frame_size
  scale = np.array([REFERENCE_SIZE / width, REFERENCE_SIZE / height], np.float32)
  return np.asarray(_JITTED(pred_points, gt_points, scale, POINT_SETS[points]))


def video_lmd(pred_points: np.ndarray, pred_valid: np.ndarray, gt_points: np.ndarray,
              gt_valid: np.ndarray, frame_size: tuple[int, int]) -> dict[str, float | int | None]:
  """{'lmd_mouth', 'lmd_face', 'lmd_frames'}: means over frames with both faces detected."""
  both = np.asarray(pred_valid, bool) & np.asarray(gt_valid, bool)
  result: dict[str, float | int | None] = {"lmd_frames": int(both.sum())}
  for name in POINT_SETS:
    if both.any():
      values = landmark_distance(pred_points[both], gt_points[both], frame_size, name)
      result[f"lmd_{name}"] = float(values.mean())
    else:
      result[f"lmd_{name}"] = None
  return result
