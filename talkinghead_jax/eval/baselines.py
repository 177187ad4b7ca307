"""The trivial predictors Ψ and Φ are compared with (docs/evaluation.md, "Ψ and Φ").

Head motion, from the observed poses (B, τ, 6) of each window:
  repeat_last_pose    the last observed pose, every predicted frame;
  mean_observed_pose  the mean of the observed poses, every predicted frame.
Expression, per clip:
  mean_expression     the training set's mean coefficients, every frame;
  closed_mouth        the identity's reference (closed-mouth) frontal landmarks, every frame.
"""

from __future__ import annotations

import numpy as np


def repeat_last_pose(observed: np.ndarray, predicted_frames: int) -> np.ndarray:
  """(B, τ, 6) observed poses → (B, P, 6): the last one repeated."""
  observed = np.asarray(observed)
  return np.repeat(observed[:, -1:], predicted_frames, axis=1)


def mean_observed_pose(observed: np.ndarray, predicted_frames: int) -> np.ndarray:
  """(B, τ, 6) observed poses → (B, P, 6): their mean over time repeated."""
  observed = np.asarray(observed)
  return np.repeat(observed.mean(axis=1, keepdims=True), predicted_frames, axis=1).astype(observed.dtype)


def mean_expression(mean_coefficients: np.ndarray, frames: int) -> np.ndarray:
  """(C,) mean training coefficients → (T, C)."""
  mean_coefficients = np.asarray(mean_coefficients, np.float32)
  return np.broadcast_to(mean_coefficients, (frames,) + mean_coefficients.shape).copy()


def closed_mouth(reference_front: np.ndarray, frames: int) -> np.ndarray:
  """(68, 3) reference frontal landmarks → (T, 68, 3)."""
  reference_front = np.asarray(reference_front, np.float32)
  return np.broadcast_to(reference_front, (frames,) + reference_front.shape).copy()
