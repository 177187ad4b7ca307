"""The motion matcher: which of the K references the generator warps towards the target.

Upstream (UPSTREAM_NOTES §2.5) compares head rotations only: the distance between a reference
and the target is the mean absolute difference of their rotation vectors (the first 3 pose
entries), mean |Δrotvec|. The rule depends on the phase:

- train (`FaceForeDataset.get_warp_ref`): with probability `worst_prob` (0.75) the reference
  with the LARGEST distance (a deliberately hard pair), otherwise a uniformly random one;
- test (`FaceForeDemoDataset`): the reference with the SMALLEST distance.

Ties go to the lowest index (numpy's argmax/argmin). Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RULES = ("train", "test")
WORST_PROB = 0.75


def rotation_distances(ref_poses: Any, target_pose: Any) -> np.ndarray:
  """Mean |Δrotvec| of each reference to the target: (K, ≥3), (≥3,) -> (K,) float64."""
  refs = np.asarray(ref_poses, np.float64)
  target = np.asarray(target_pose, np.float64)
  if refs.ndim != 2 or refs.shape[1] < 3 or target.ndim != 1 or target.shape[0] < 3:
    raise ValueError(f"poses must be (K, 3 or 6) and (3 or 6,), got {refs.shape} and {target.shape}")
  if len(refs) == 0:
    raise ValueError("there are no references to match")
  return np.mean(np.abs(refs[:, :3] - target[None, :3]), axis=1)


def nearest_reference(ref_poses: Any, target_pose: Any) -> int:
  """The test-time rule: the reference whose rotation is closest to the target's."""
  return int(np.argmin(rotation_distances(ref_poses, target_pose)))


def select_reference(ref_poses: Any, target_pose: Any, rule: str, rng: np.random.Generator,
                     worst_prob: float = WORST_PROB) -> int:
  """The index of the matched reference under `rule` ("train" or "test", see module doc).

  The train rule draws one uniform number (the coin) and, when it comes up random, one integer
  from `rng`; the test rule draws nothing.
  """
  if rule not in RULES:
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
  distances = rotation_distances(ref_poses, target_pose)
  if rule == "test":
    return int(np.argmin(distances))
  if not 0.0 <= worst_prob <= 1.0:
    raise ValueError(f"worst_prob must be in [0, 1], got {worst_prob}")
  if rng.random() < worst_prob:
    return int(np.argmax(distances))
  return int(rng.integers(len(distances)))
