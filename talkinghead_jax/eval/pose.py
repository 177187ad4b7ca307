"""Head-pose metrics for generated head motion (shared with Φ's evaluation).

Poses are (T, 6): rotation vector (radians) + translation (pixels), as everywhere in the
project. Rotation components are reported in degrees: they are the rotation-vector components
×180/π, which for the small head rotations of talking faces are close to pitch (rx), yaw (ry)
and roll (rz). Translations stay in pixels of the crop. Velocities are per frame (the
difference of consecutive frames), so at 25 fps multiply by 25 for per-second values.

For each of the six dofs:
  l1               mean |pred − gt| over frames
  velocity_l1      mean |Δpred − Δgt| over frame pairs
  std_pred/std_gt  standard deviation over frames (population, ddof 0): how much the head moves
  speed_pred/gt    mean |Δ| over frame pairs: how fast it moves
  std_diff         |std_pred − std_gt|;  speed_diff  |speed_pred − speed_gt|
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DOF_NAMES = ("rx", "ry", "rz", "tx", "ty", "tz")
DOF_UNITS = ("deg", "deg", "deg", "px", "px", "px")
METRIC_NAMES = ("l1", "velocity_l1", "std_pred", "std_gt", "std_diff",
                "speed_pred", "speed_gt", "speed_diff")


def to_report_units(poses: Any) -> Any:
  """(..., 6) rotation vector in radians + translation -> degrees + translation."""
  import jax.numpy as jnp

  scale = jnp.array([180.0 / math.pi] * 3 + [1.0] * 3, jnp.float32)
  return poses * scale


def _metrics(pred, gt):
  import jax.numpy as jnp

  pred, gt = to_report_units(pred), to_report_units(gt)
  velocity_pred = jnp.diff(pred, axis=-2)
  velocity_gt = jnp.diff(gt, axis=-2)
  std_pred, std_gt = jnp.std(pred, axis=-2), jnp.std(gt, axis=-2)
  speed_pred = jnp.mean(jnp.abs(velocity_pred), axis=-2)
  speed_gt = jnp.mean(jnp.abs(velocity_gt), axis=-2)
  return {
      "l1": jnp.mean(jnp.abs(pred - gt), axis=-2),
      "velocity_l1": jnp.mean(jnp.abs(velocity_pred - velocity_gt), axis=-2),
      "std_pred": std_pred, "std_gt": std_gt, "std_diff": jnp.abs(std_pred - std_gt),
      "speed_pred": speed_pred, "speed_gt": speed_gt, "speed_diff": jnp.abs(speed_pred - speed_gt),
  }


_JITTED = None


def pose_metrics(pred: Any, gt: Any) -> dict[str, np.ndarray]:
  """pred, gt (..., T, 6) with T ≥ 2 -> {metric: (..., 6)} (see the module docstring)."""
  global _JITTED
  pred = np.asarray(pred, np.float32)
  gt = np.asarray(gt, np.float32)
  if pred.shape != gt.shape or pred.shape[-1] != 6 or pred.ndim < 2:
    raise ValueError(f"poses must be (..., T, 6) of equal shapes, got {pred.shape} and {gt.shape}")
  if pred.shape[-2] < 2:
    raise ValueError("pose metrics need at least 2 frames (velocities)")
  if _JITTED is None:
    import jax

    _JITTED = jax.jit(_metrics)
  return {name: np.asarray(value) for name, value in _JITTED(pred, gt).items()}


def named(metrics: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """{metric: {dof: value}} for a single sequence's metrics (JSON-friendly)."""
  return {name: {dof: float(v) for dof, v in zip(DOF_NAMES, np.asarray(values).reshape(6))}
          for name, values in metrics.items()}
