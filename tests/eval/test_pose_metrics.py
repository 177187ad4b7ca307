"""Head-pose metrics against plain numpy."""

import numpy as np
import pytest

from talkinghead_jax.eval import pose


def _numpy_reference(pred, gt):
  scale = np.array([180 / np.pi] * 3 + [1.0] * 3)
  p, g = pred * scale, gt * scale
  vp, vg = np.diff(p, axis=0), np.diff(g, axis=0)
  return {
      "l1": np.abs(p - g).mean(0), "velocity_l1": np.abs(vp - vg).mean(0),
      "std_pred": p.std(0), "std_gt": g.std(0), "std_diff": np.abs(p.std(0) - g.std(0)),
      "speed_pred": np.abs(vp).mean(0), "speed_gt": np.abs(vg).mean(0),
      "speed_diff": np.abs(np.abs(vp).mean(0) - np.abs(vg).mean(0)),
  }


def test_matches_numpy_reference():
  rng = np.random.default_rng(0)
  gt = np.concatenate([rng.normal(0, 0.1, (30, 3)), rng.normal(0, 5, (30, 3))], axis=1)
  pred = gt + rng.normal(0, 0.05, gt.shape)
  ours = pose.pose_metrics(pred, gt)
  expected = _numpy_reference(pred, gt)
  assert set(ours) == set(pose.METRIC_NAMES)
  for name in pose.METRIC_NAMES:
    np.testing.assert_allclose(ours[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_known_answers_and_batching():
  frames = np.arange(10, dtype=np.float32)[:, None]
  gt = np.zeros((10, 6), np.float32)
  pred = np.zeros((10, 6), np.float32)
  pred[:, 1] = np.deg2rad(2.0)          # a constant 2° yaw offset
  pred[:, 3:4] = frames                 # x drifts 1 px per frame
  result = pose.pose_metrics(np.stack([pred, gt]), np.stack([gt, gt]))  # a batch of 2 sequences
  np.testing.assert_allclose(result["l1"][0], [0, 2, 0, 4.5, 0, 0], atol=1e-5)
  np.testing.assert_allclose(result["velocity_l1"][0], [0, 0, 0, 1, 0, 0], atol=1e-6)
  np.testing.assert_allclose(result["speed_pred"][0], [0, 0, 0, 1, 0, 0], atol=1e-6)
  np.testing.assert_allclose(result["std_pred"][0, 3], np.std(np.arange(10)), rtol=1e-6)
  for name in pose.METRIC_NAMES:  # identical sequences: no error anywhere
    if not name.endswith(("_pred", "_gt")):
      np.testing.assert_allclose(result[name][1], 0, atol=1e-7)
  table = pose.named({k: v[0] for k, v in result.items()})
  assert table["l1"]["ry"] == pytest.approx(2.0, abs=1e-5)


def test_rejects_bad_shapes():
  with pytest.raises(ValueError, match="equal shapes"):
    pose.pose_metrics(np.zeros((5, 6)), np.zeros((4, 6)))
  with pytest.raises(ValueError, match="at least 2 frames"):
    pose.pose_metrics(np.zeros((1, 6)), np.zeros((1, 6)))
