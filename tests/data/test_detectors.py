"""Landmark detector interface, the dlib backend on a real face photo, and the 3D lift."""

import subprocess
import sys

import numpy as np
import pytest

from talkinghead_jax.data import detectors
from talkinghead_jax.errors import InputError, TalkingHeadError


@pytest.fixture(scope="module")
def face():
  """skimage's astronaut photo cropped to the face, 128x128."""
  import skimage.data
  import skimage.transform

  crop = skimage.data.astronaut()[40:220, 130:310]
  return (skimage.transform.resize(crop, (128, 128), anti_aliasing=True) * 255).round().astype(
      np.uint8)


def _face_like_canonical(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(68, 3)) * [40.0, 50.0, 20.0]


def test_registry():
  assert "dlib" in detectors.available_detectors()
  with pytest.raises(TalkingHeadError, match="unknown landmark detector 'fan'.*dlib"):
    detectors.get_detector("fan")


def test_dlib_finds_the_face_in_project_coordinates(face):
  import dlib

  found = detectors.get_detector("dlib").detect(np.stack([face, np.zeros_like(face)]))
  assert found.points.shape == (2, 68, 3) and found.points.dtype == np.float32
  assert found.valid.tolist() == [True, False]
  assert found.confidence[0] > 0 and found.confidence[1] == 0
  assert (found.points[1] == 0).all()
  points = found.points[0]
  assert (points[:, 2] == 0).all()  # 2D backend without a canonical face
  eyes_y = points[36:48, 1].mean()
  assert eyes_y < points[30, 1] < points[48:68, 1].mean() < points[8, 1]  # eyes, nose, mouth, chin
  assert points[36:42, 0].mean() < points[42:48, 0].mean()  # image-left eye first (iBUG order)
  assert (points[:, :2] > 0).all() and (points[:, :2] < 128).all()
  # Same points as dlib itself, shifted to pixel centres at i + 0.5.
  box = dlib.get_frontal_face_detector()(face, 1)[0]
  raw = detectors.face_recognition_models_file("shape_predictor_68_face_landmarks.dat")
  shape = dlib.shape_predictor(str(raw))(face, box)
  np.testing.assert_array_equal(points[:, :2], [(p.x + 0.5, p.y + 0.5) for p in shape.parts()])


def test_bad_frames_are_rejected():
  detector = detectors.get_detector("dlib")
  with pytest.raises(InputError, match=r"frames must be uint8 \(T, H, W, 3\)"):
    detector.detect(np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(InputError, match="frames must be uint8"):
    detector.detect(np.zeros((32, 32, 3), np.uint8))


def test_lift_to_3d_recovers_depth_of_a_posed_canonical_face():
  from talkinghead_jax.geometry import rigid

  rng = np.random.default_rng(1)
  canonical = _face_like_canonical()
  rotation = rigid.rotvec_to_matrix(rng.normal(size=(4, 3)) * 0.3)
  scale = rng.uniform(0.5, 2.0, 4)
  points = scale[:, None, None] * canonical @ np.swapaxes(rotation, -1, -2) + rng.normal(
      size=(4, 1, 3)) * 10
  lifted = detectors.lift_to_3d(points[..., :2], canonical)
  np.testing.assert_allclose(lifted[..., :2], points[..., :2], atol=1e-4)
  depth = points[..., 2] - points[..., 2].mean(axis=-1, keepdims=True)
  np.testing.assert_allclose(lifted[..., 2], depth, atol=1e-3)


def test_lift_refinement_lowers_the_weak_perspective_error():
  from talkinghead_jax.geometry import rigid

  rng = np.random.default_rng(2)
  canonical = _face_like_canonical()
  rotation = rigid.rotvec_to_matrix(np.array([0.2, -0.4, 0.1]))
  observed = (canonical @ rotation.T)[:, :2] + rng.normal(size=(68, 2)) * 3.0

  def residual(lifted):  # best similarity of the canonical onto the completed points, in 2D
    r, t, s = rigid.fit(canonical, lifted.astype(np.float64), with_scale=True)
    return np.sum(((s * canonical @ r.T + t)[:, :2] - observed) ** 2)

  start = detectors.lift_to_3d(observed, canonical, iterations=0)
  refined = detectors.lift_to_3d(observed, canonical, iterations=10)
  assert residual(refined) < residual(start)


def test_dlib_with_a_canonical_face_lifts_to_3d(face):
  canonical = _face_like_canonical()
  flat = detectors.get_detector("dlib").detect(face[None])
  lifted = detectors.get_detector("dlib", canonical=canonical).detect(face[None])
  np.testing.assert_array_equal(lifted.points[..., :2], flat.points[..., :2])
  assert np.abs(lifted.points[..., 2]).max() > 1.0
  assert abs(float(lifted.points[0, :, 2].mean())) < 1e-3


def test_importing_detectors_loads_no_tensorflow():
  code = ("import sys, talkinghead_jax.data.detectors as d; d.available_detectors(); "
          "sys.exit('tensorflow' in sys.modules)")
  assert subprocess.run([sys.executable, "-c", code]).returncode == 0
