"""Rigid 3D maths: Kabsch/Umeyama fits, rotation vectors, head pose and frontalization.

Every function here takes numpy or jax arrays and answers in kind: numpy in → numpy out
(computed in float64, returned in the input's float precision), any jax array in → jax out
(computed in the input's precision; jit-able and differentiable). Leading axes are batch axes
and broadcast against each other.

Conventions (DESIGN.md §2): a pose is (..., 6) = [rotation vector (radians), translation],
meaning the frontal (canonical-frame) landmarks are `front = R·l + t`, with the inverse
`l = Rᵀ(front − t)`. Points are rows, so `R·l` is written `l @ Rᵀ`.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from talkinghead_jax.geometry.landmarks import NUM_POINTS, STABLE_27

# Below these squared angles the closed forms are replaced by Taylor series: exact to double
# precision there, and free of 0/0 in values and gradients.
_SMALL_ANGLE_SQ = 1e-6
_SMALL_SIN_SQ = 1e-6


def _namespace(*arrays: Any):
  """jax.numpy if any argument is a jax array (or tracer), else numpy."""
  jax = sys.modules.get("jax")  # No jax array can exist unless jax was imported.
  if jax is not None and any(isinstance(a, jax.Array) for a in arrays):
    import jax.numpy as jnp
    return jnp
  return np


def _floats(xp, *arrays: Any):
  """Arrays as floats to compute with, and the dtype to return.

  numpy computes in float64 and returns the inputs' float precision (float32 stays float32);
  jax computes and returns in the inputs' precision.
  """
  present = [a for a in arrays if a is not None]
  if xp is np:
    out_dtype = np.result_type(*[np.asarray(a).dtype for a in present], np.float32)
    return [None if a is None else np.asarray(a, np.float64) for a in arrays], out_dtype
  out_dtype = xp.result_type(*present, xp.float32)
  return [None if a is None else xp.asarray(a, out_dtype) for a in arrays], out_dtype


def _cast(dtype, *arrays):
  return tuple(a.astype(dtype) for a in arrays)


def fit(src: Any, dst: Any, with_scale: bool = False, weights: Any = None):
  """Least-squares rigid (Kabsch) or similarity (Umeyama) transform taking src onto dst.

  src, dst: (..., N, 3), leading axes broadcast. weights: optional (..., N), non-negative,
  not all zero. Minimises Σ wᵢ‖s·R·srcᵢ + t − dstᵢ‖² over proper rotations R (det +1), t and,
  with `with_scale`, s > 0 (otherwise s = 1).

  Returns (R (..., 3, 3), t (..., 3)), or (R, t, s (...,)) with `with_scale`, such that
  dst ≈ s · src @ Rᵀ + t.
  """
  xp = _namespace(src, dst, weights)
  (src, dst, weights), dtype = _floats(xp, src, dst, weights)
  if src.ndim < 2 or src.shape[-1] != 3 or dst.ndim < 2 or dst.shape[-1] != 3 or (
      src.shape[-2] != dst.shape[-2]):
    raise ValueError(f"src and dst must be (..., N, 3) with equal N, got {src.shape} and "
                     f"{dst.shape}")
  if weights is None:
    weights = xp.ones(src.shape[-2], src.dtype)
  weights = weights / xp.sum(weights, axis=-1, keepdims=True)
  src_mean = xp.sum(weights[..., None] * src, axis=-2)
  dst_mean = xp.sum(weights[..., None] * dst, axis=-2)
  src_centred = src - src_mean[..., None, :]
  dst_centred = dst - dst_mean[..., None, :]
  # Cross-covariance H = Σ w·s·dᵀ = U S Vᵀ; the best rotation is V·diag(1, 1, d)·Uᵀ, with d
  # flipping the weakest axis when V·Uᵀ would be a reflection.
  cov = xp.einsum("...ni,...nj->...ij", weights[..., None] * src_centred, dst_centred)
  u, singular, vt = xp.linalg.svd(cov)
  det = xp.linalg.det(u) * xp.linalg.det(vt)
  sign = xp.where(det < 0, -1.0, 1.0).astype(src.dtype)
  ones = xp.ones_like(sign)
  correction = xp.stack([ones, ones, sign], axis=-1)
  rotation = xp.einsum("...ki,...k,...jk->...ij", vt, correction, u)
  if with_scale:
    src_var = xp.sum(weights * xp.sum(src_centred**2, axis=-1), axis=-1)
    scale = xp.sum(singular * correction, axis=-1) / src_var
  else:
    scale = xp.ones(rotation.shape[:-2], src.dtype)
  translation = dst_mean - scale[..., None] * xp.einsum("...ij,...j->...i", rotation, src_mean)
  rotation, translation, scale = _cast(dtype, rotation, translation, scale)
  if with_scale:
    return rotation, translation, scale
  return rotation, translation


def _skew_parts(v, xp):
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = xp.zeros_like(x)
  return xp.stack([
      xp.stack([zero, -z, y], axis=-1),
      xp.stack([z, zero, -x], axis=-1),
      xp.stack([-y, x, zero], axis=-1),
  ], axis=-2)


def rotvec_to_matrix(rotvec: Any):
  """Rodrigues: rotation vectors (..., 3) (axis × angle, radians) -> matrices (..., 3, 3).

  R = I + a·K + b·K², K the cross-product matrix, a = sin θ/θ, b = (1 − cos θ)/θ², with b
  written as ½(sin(θ/2)/(θ/2))² to avoid cancellation and both replaced by Taylor series for
  tiny θ, so jax gradients are finite at θ = 0.
  """
  xp = _namespace(rotvec)
  (v,), dtype = _floats(xp, rotvec)
  if v.shape[-1:] != (3,):
    raise ValueError(f"rotation vectors must be (..., 3), got {v.shape}")
  theta_sq = xp.sum(v * v, axis=-1)
  small = theta_sq < _SMALL_ANGLE_SQ
  # The "double where": the unused branch never sees θ = 0, so its gradient stays finite.
  theta = xp.sqrt(xp.where(small, 1.0, theta_sq))
  half = theta / 2
  a = xp.where(small, 1 - theta_sq / 6 + theta_sq**2 / 120, xp.sin(theta) / theta)
  b = xp.where(small, 0.5 - theta_sq / 24 + theta_sq**2 / 720, 0.5 * (xp.sin(half) / half)**2)
  k = _skew_parts(v, xp)
  eye = xp.eye(3, dtype=v.dtype)
  matrix = eye + a[..., None, None] * k + b[..., None, None] * (k @ k)
  return matrix.astype(dtype)


def matrix_to_rotvec(matrix: Any):
  """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3) with angle in [0, π].

  Goes through the unit quaternion picked by Shepperd's largest-diagonal rule (from the
  trace or from the symmetric part, whichever is best conditioned), so it is accurate near
  θ = 0 and near θ = π; at exactly π either of the two equivalent vectors ±π·axis is returned.
  """
  xp = _namespace(matrix)
  (m,), dtype = _floats(xp, matrix)
  if m.shape[-2:] != (3, 3):
    raise ValueError(f"rotation matrices must be (..., 3, 3), got {m.shape}")
  r = [[m[..., i, j] for j in range(3)] for i in range(3)]
  trace = r[0][0] + r[1][1] + r[2][2]
  # Each row is 4·q_k·(x, y, z, w) for the quaternion component q_k it is built around.
  candidates = xp.stack([
      xp.stack([1 + r[0][0] - r[1][1] - r[2][2], r[0][1] + r[1][0], r[0][2] + r[2][0],
                r[2][1] - r[1][2]], axis=-1),
      xp.stack([r[0][1] + r[1][0], 1 + r[1][1] - r[0][0] - r[2][2], r[1][2] + r[2][1],
                r[0][2] - r[2][0]], axis=-1),
      xp.stack([r[0][2] + r[2][0], r[1][2] + r[2][1], 1 + r[2][2] - r[0][0] - r[1][1],
                r[1][0] - r[0][1]], axis=-1),
      xp.stack([r[2][1] - r[1][2], r[0][2] - r[2][0], r[1][0] - r[0][1], 1 + trace], axis=-1),
  ], axis=-2)
  choice = xp.argmax(xp.stack([r[0][0], r[1][1], r[2][2], trace], axis=-1), axis=-1)
  quat = xp.take_along_axis(candidates, choice[..., None, None], axis=-2)[..., 0, :]
  # The chosen row has norm 4|q_k| ≥ 2, so normalising is safe.
  quat = quat / xp.sqrt(xp.sum(quat * quat, axis=-1, keepdims=True))
  quat = quat * xp.where(quat[..., 3:] < 0, -1.0, 1.0)  # w ≥ 0, so the angle is ≤ π
  xyz, w = quat[..., :3], quat[..., 3]
  sin_sq = xp.sum(xyz * xyz, axis=-1)  # sin²(θ/2)
  small = sin_sq < _SMALL_SIN_SQ
  sin_half = xp.sqrt(xp.where(small, 1.0, sin_sq))
  # θ / sin(θ/2) = 2·atan2(s, w)/s; for tiny s (then w ≈ 1), 2/w·(1 − s²/(3w²) + s⁴/(5w⁴)).
  ratio_sq = sin_sq / xp.where(small, w * w, 1.0)  # w ≈ 1 where used; never 0 where not
  factor = xp.where(small, 2 / w * (1 - ratio_sq / 3 + ratio_sq**2 / 5),
                    2 * xp.arctan2(sin_half, w) / sin_half)
  return (xyz * factor[..., None]).astype(dtype)


def _pose_parts(pose, xp):
  (pose,), dtype = _floats(xp, pose)
  if pose.shape[-1:] != (6,):
    raise ValueError(f"poses must be (..., 6) = [rotation vector, translation], got {pose.shape}")
  return rotvec_to_matrix(pose[..., :3]), pose[..., 3:]


def frontalize(lmk: Any, pose: Any):
  """Points (..., N, 3) seen at `pose` (..., 6) -> the canonical frame: R·l + t.

  A single pose (6,) applies to every leading index; otherwise pose's leading axes broadcast
  against lmk's (e.g. lmk (T, 68, 3) with pose (T, 6)).
  """
  xp = _namespace(lmk, pose)
  (lmk,), dtype = _floats(xp, lmk)
  rotation, translation = _pose_parts(pose, xp)
  out = lmk @ xp.swapaxes(rotation, -1, -2) + translation[..., None, :]
  return out.astype(dtype)


def unfrontalize(front: Any, pose: Any):
  """Canonical-frame points (..., N, 3) -> seen at `pose` (..., 6): Rᵀ(front − t)."""
  xp = _namespace(front, pose)
  (front,), dtype = _floats(xp, front)
  rotation, translation = _pose_parts(pose, xp)
  # Row form of Rᵀ·(f − t) is (f − t) @ R.
  out = (front - translation[..., None, :]) @ rotation
  return out.astype(dtype)


def repose(vertices: Any, pose_from: Any, pose_to: Any):
  """Moves points seen at `pose_from` to how they look at `pose_to` (paper Eq. 1).

  vertices (..., N, 3), poses (..., 6) -> (..., N, 3) = Rtoᵀ(R_from·v + t_from − t_to).
  """
  return unfrontalize(frontalize(vertices, pose_from), pose_to)


def pose_from_landmarks(lmk: Any, canonical: Any):
  """Head pose of landmarks (..., 68, 3) against a canonical face (68, 3) -> (..., 6).

  The Kabsch fit (no scale) over the 27 stable points (`landmarks.STABLE_27`) such that
  canonical ≈ R·lmk + t; returns [rotation vector of R, t], so `frontalize(lmk, pose)` puts
  the landmarks onto the canonical face.
  """
  xp = _namespace(lmk, canonical)
  (lmk, canonical), _ = _floats(xp, lmk, canonical)
  if lmk.shape[-2:] != (NUM_POINTS, 3) or canonical.shape[-2:] != (NUM_POINTS, 3):
    raise ValueError(f"landmarks and canonical face must be (..., {NUM_POINTS}, 3), got "
                     f"{lmk.shape} and {canonical.shape}")
  rotation, translation = fit(lmk[..., STABLE_27, :], canonical[..., STABLE_27, :])
  return xp.concatenate([matrix_to_rotvec(rotation), translation], axis=-1)


def canonical_face(landmark_sets: Any, iterations: int = 20, points: str = "stable",
                   reference: int = 0, tolerance: float = 1e-9) -> np.ndarray:
  """A mean face (68, 3) from many landmark sets (N, 68, 3) by generalized Procrustes analysis.

  Alternates: rigidly align every set (Kabsch, no scale) to the current mean, then average.
  `points` = "stable" (default) fits on the 27 stable points only, so that mouth and eye
  motion does not tilt the head; "all" uses all 68. The mean's free rigid motion (the gauge)
  is fixed so that the result is usable directly as a canonical face in pixel coordinates:
  its orientation is that of set `reference` (pick a frontal one), its centroid (over all 68
  points) is the mean of the inputs' centroids, and its size (RMS distance of the 68 points
  to their centroid) is the mean of the inputs' sizes. numpy only; returns float32.
  """
  sets = np.asarray(landmark_sets, np.float64)
  if sets.ndim != 3 or sets.shape[1:] != (NUM_POINTS, 3) or not len(sets):
    raise ValueError(f"landmark sets must be (N, {NUM_POINTS}, 3) with N ≥ 1, got {sets.shape}")
  if points not in ("stable", "all"):
    raise ValueError(f"points must be 'stable' or 'all', got {points!r}")
  index = STABLE_27 if points == "stable" else np.arange(NUM_POINTS)
  mean = sets[reference]
  for _ in range(iterations):
    rotation, translation = fit(sets[:, index], mean[index])
    aligned = sets @ np.swapaxes(rotation, -1, -2) + translation[:, None, :]
    # Each aligned set's cross-covariance with the mean is symmetric (Kabsch's optimality
    # condition), so their average's is too: the new mean's best rotation onto the old one is
    # the identity, and the orientation of `reference` carries through without drifting.
    candidate = aligned.mean(axis=0)
    change = np.sqrt(np.mean((candidate - mean)**2))
    mean = candidate
    if change < tolerance:
      break
  centroids = sets.mean(axis=1)
  sizes = np.sqrt(np.mean(np.sum((sets - centroids[:, None, :])**2, axis=-1), axis=-1))
  centred = mean - mean.mean(axis=0)
  size = np.sqrt(np.mean(np.sum(centred**2, axis=-1)))
  return (centred * (sizes.mean() / size) + centroids.mean(axis=0)).astype(np.float32)
