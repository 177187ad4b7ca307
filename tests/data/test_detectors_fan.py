"""The face_alignment (FAN-3D) backend: local weights only, and the same points as the package.

The real weights are not on this machine (and are never downloaded), so stand-ins with the real
file names and layouts are written: FAN-4 and the depth ResNet with random weights, and an S3FD
whose weights are all zero except its score and box biases, so that it reports the same four
128-px boxes in every 128-px frame. With those, the backend must give exactly what
face_alignment itself computes (loaded independently here) in the project's convention.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("face_alignment")

from talkinghead_jax.data import detectors  # noqa: E402
from talkinghead_jax.errors import TalkingHeadError  # noqa: E402

# face_alignment 1.5's file names (the basenames of its download addresses).
FAN_FILE = "3DFAN4-7835d9f11d.pth.tar"
DEPTH_FILE = "depth-2a464da4ea.pth.tar"
S3FD_FILE = "s3fd-619a316812.pth"


@pytest.fixture(scope="module", autouse=True)
def no_downloads_and_quick_cpu():
  """Any download attempt fails the test.

  For time only: face_alignment decodes heatmaps with numba-jitted functions whose compilation
  costs ~7 s per process; their pure-Python originals compute the same and are fast enough for
  a few frames. And one torch thread: on a busy 2-core machine two threads ran FAN and the depth
  net 5-10x slower than one.
  """
  from face_alignment import utils
  from face_alignment.detection.sfd import sfd_detector

  def refuse(*args, **kwargs):
    raise AssertionError(f"download attempted: {args} {kwargs}")

  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(utils, "download_url_to_file", refuse)
    patch.setattr(torch.hub, "download_url_to_file", refuse)
    patch.setattr(sfd_detector, "load_state_dict_from_url", refuse)
    patch.setattr(utils, "_get_preds_fromhm", utils._get_preds_fromhm.py_func)
    patch.setattr(utils, "transform_np", utils.transform_np.py_func)
    yield
  torch.set_num_threads(threads)


def _constant_s3fd_state():
  """S3FD weights that score "face" only on its coarsest level (stride 128, 512-px anchors),
  with boxes shrunk to 128 px: with all features zero, every frame gets the same boxes."""
  from face_alignment.detection.sfd.net_s3fd import s3fd

  state = {name: torch.zeros_like(value) for name, value in s3fd().state_dict().items()}
  for name in state:
    if name.endswith("mbox_conf.bias"):
      state[name][:] = 10.0  # background wins...
      state[name][-1] = -10.0
  state["conv7_2_mbox_conf.bias"][:] = torch.tensor([-10.0, 10.0])  # ...except here
  shrink = math.log(128 / 512) / 0.2  # decode: size = anchor · exp(0.2 · loc)
  state["conv7_2_mbox_loc.bias"][:] = torch.tensor([0.0, 0.0, shrink, shrink])
  return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  from face_alignment.models import FAN, ResNetDepth

  torch.manual_seed(0)
  folder = tmp_path_factory.mktemp("fan_weights")
  torch.save(FAN(4).state_dict(), folder / FAN_FILE)
  depth = {"module." + name: value for name, value in ResNetDepth().state_dict().items()}
  torch.save({"state_dict": depth}, folder / DEPTH_FILE)  # the layout of the real checkpoint
  torch.save(_constant_s3fd_state(), folder / S3FD_FILE)
  return folder


@pytest.fixture(scope="module")
def reference(weights):
  """face_alignment's own FaceAlignment on the same files, its URL loader pointed at them."""
  from face_alignment import api

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(api, "load_file_from_url",
                  lambda url, *args, **kwargs: str(weights / url.rsplit("/", 1)[1]))
    return api.FaceAlignment(api.LandmarksType.THREE_D, device="cpu", flip_input=False,
                             face_detector="sfd", compile=False,
                             face_detector_kwargs={"path_to_detector": str(weights / S3FD_FILE)})


@pytest.fixture(scope="module")
def frames():
  import skimage.data
  import skimage.transform

  crop = skimage.data.astronaut()[40:220, 130:310]
  face = (skimage.transform.resize(crop, (128, 128), anti_aliasing=True) * 255).round()
  return np.stack([face.astype(np.uint8), np.zeros((128, 128, 3), np.uint8)])


def _expected(reference, frame, box):
  found, scores, _ = reference.get_landmarks_from_image(frame, detected_faces=[box],
                                                        return_landmark_score=True)
  return found[0], float(np.mean(scores[0]))


def _largest(boxes):
  return max(boxes, key=lambda box: (box[2] - box[0]) * (box[3] - box[1]))


def test_file_names_are_face_alignments():
  names = {role: name for role, (name, _) in detectors.fan_weight_files().items()}
  assert names == {"fan": FAN_FILE, "depth": DEPTH_FILE, "detector": S3FD_FILE}


def test_missing_weights_give_one_line_naming_the_file(tmp_path, weights):
  with pytest.raises(TalkingHeadError) as error:
    detectors.get_detector("face_alignment", weights_dir=tmp_path)
  message = str(error.value)
  assert message.startswith(str(tmp_path / FAN_FILE)) and "\n" not in message
  assert "never downloaded" in message and "fan_path=" in message
  (tmp_path / FAN_FILE).symlink_to(weights / FAN_FILE)
  with pytest.raises(TalkingHeadError, match=rf"{DEPTH_FILE}.*depth_path="):
    detectors.get_detector("face_alignment", weights_dir=tmp_path)
  (tmp_path / DEPTH_FILE).symlink_to(weights / DEPTH_FILE)
  with pytest.raises(TalkingHeadError, match=rf"{S3FD_FILE}.*detector_path="):
    detectors.get_detector("face_alignment", weights_dir=tmp_path)
  with pytest.raises(TalkingHeadError, match=r"^/nowhere/fan\.pth: "):
    detectors.get_detector("face_alignment", weights_dir=weights, fan_path="/nowhere/fan.pth")
  with pytest.raises(TalkingHeadError, match="unknown face_alignment face detector 'blazeface'"):
    detectors.get_detector("face_alignment", weights_dir=weights, face_detector="blazeface")


def test_default_weights_dir_is_torch_hubs_checkpoints(tmp_path):
  previous = torch.hub.get_dir()
  torch.hub.set_dir(str(tmp_path))
  try:
    with pytest.raises(TalkingHeadError, match="^" + str(tmp_path / "checkpoints" / FAN_FILE)):
      detectors.get_detector("face_alignment")
  finally:
    torch.hub.set_dir(previous)


def test_s3fd_from_explicit_paths_matches_face_alignment(tmp_path, weights, reference, frames):
  renamed = {}
  for option, name in [("fan_path", FAN_FILE), ("depth_path", DEPTH_FILE),
                       ("detector_path", S3FD_FILE)]:
    renamed[option] = tmp_path / ("my_" + name)
    renamed[option].symlink_to(weights / name)
  hub_before = torch.hub.get_dir()
  detector = detectors.get_detector("face_alignment", weights_dir=tmp_path / "empty", **renamed)
  assert torch.hub.get_dir() == hub_before
  found = detector.detect(frames[:1])
  assert found.points.shape == (1, 68, 3) and found.points.dtype == np.float32
  boxes = reference.face_detector.detect_from_image(frames[0].copy())
  assert found.valid.tolist() == [True] and found.num_faces.tolist() == [len(boxes)] == [4]
  expected, confidence = _expected(reference, frames[0], _largest(boxes))
  np.testing.assert_allclose(found.points[0, :, :2], expected[:, :2] + 0.5, atol=1e-4)
  np.testing.assert_allclose(found.points[0, :, 2], -expected[:, 2], rtol=1e-5, atol=1e-4)
  assert np.abs(found.points[0, :, 2]).max() > 0  # the random depth net is not degenerate
  assert found.confidence[0] == pytest.approx(confidence, rel=1e-5)


def test_dlib_face_detector_needs_no_detector_file(tmp_path, weights, reference, frames):
  import cv2
  import dlib

  for name in (FAN_FILE, DEPTH_FILE):  # no S3FD file in this folder
    (tmp_path / name).symlink_to(weights / name)
  detector = detectors.get_detector("face_alignment", weights_dir=tmp_path, face_detector="dlib")
  found = detector.detect(frames)
  assert found.valid.tolist() == [True, False] and found.num_faces.tolist() == [1, 0]
  assert (found.points[1] == 0).all() and found.confidence[1] == 0
  # face_alignment's dlib detector: HOG, no upsampling, on the grey image.
  rect = dlib.get_frontal_face_detector()(cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY))[0]
  box = [rect.left(), rect.top(), rect.right(), rect.bottom()]
  expected, _ = _expected(reference, frames[0], box)
  np.testing.assert_allclose(found.points[0, :, :2], expected[:, :2] + 0.5, atol=1e-4)
  np.testing.assert_allclose(found.points[0, :, 2], -expected[:, 2], rtol=1e-5, atol=1e-4)
