"""LMD against plain numpy, with its 256-px units."""

import numpy as np
import pytest

from talkinghead_jax.eval import landmark_distance as lmd


def test_matches_numpy_reference_in_256px_units():
  rng = np.random.default_rng(0)
  gt = rng.uniform(0, 128, (6, 68, 3)).astype(np.float32)
  pred = gt + rng.normal(0, 2, gt.shape).astype(np.float32)
  scale = np.array([256 / 160, 256 / 128])  # frames 128 high, 160 wide
  for name, indices in [("mouth", slice(48, 68)), ("face", slice(0, 68))]:
    diff = (pred[:, indices, :2] - gt[:, indices, :2]) * scale
    expected = np.sqrt((diff ** 2).sum(-1)).mean(-1)
    np.testing.assert_allclose(lmd.landmark_distance(pred, gt, (128, 160), name), expected,
                               rtol=1e-5)


def test_known_answers():
  gt = np.zeros((3, 68, 2), np.float32)
  pred = gt.copy()
  pred[:, 48:68, 0] += 1.0  # mouth moved 1 px right in a 128-px frame: 2 px at 256
  np.testing.assert_allclose(lmd.landmark_distance(pred, gt, (128, 128), "mouth"), 2.0)
  np.testing.assert_allclose(lmd.landmark_distance(pred, gt, (128, 128), "face"), 2.0 * 20 / 68,
                             rtol=1e-6)
  np.testing.assert_allclose(lmd.landmark_distance(gt, gt, (128, 128), "face"), 0.0)


def test_video_lmd_uses_frames_with_both_faces():
  gt = np.zeros((4, 68, 3), np.float32)
  pred = gt.copy()
  pred[0, :, 1] = 1.0   # frame 0: 1 px at 256-px frames
  pred[1, :, 1] = 50.0  # frame 1 would dominate, but its ground truth has no face
  result = lmd.video_lmd(pred, np.array([1, 1, 1, 0], bool), gt, np.array([1, 0, 1, 1], bool),
                         (256, 256))
  assert result == {"lmd_frames": 2, "lmd_mouth": 0.5, "lmd_face": 0.5}
  none = lmd.video_lmd(pred, np.zeros(4, bool), gt, np.ones(4, bool), (256, 256))
  assert none["lmd_mouth"] is None and none["lmd_frames"] == 0


def test_rejects_unknown_point_set():
  with pytest.raises(ValueError, match="points must be one of"):
    lmd.landmark_distance(np.zeros((1, 68, 2)), np.zeros((1, 68, 2)), (64, 64), "eyes")
