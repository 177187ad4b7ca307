"""The sidecar backend: SynthTalk's ground-truth landmarks read from the .npz beside a video."""

import numpy as np
import pytest

from talkinghead_jax.data import detectors
from talkinghead_jax.errors import InputError, TalkingHeadError

SIZE = 32


def _clip(tmp_path, frames=5, **fields):
  """A SynthTalk-style clip path whose .npz holds `landmarks` (and image_size) like the real one."""
  rng = np.random.default_rng(0)
  landmarks = rng.uniform(0, SIZE, (frames, 68, 3)).astype(np.float32)
  contents = {"landmarks": landmarks, "image_size": np.int32(SIZE), "fps": np.int32(25)}
  contents.update(fields)
  video = tmp_path / "id00001" / "abcdefghijk" / "00001.mp4"
  video.parent.mkdir(parents=True)
  np.savez(video.with_suffix(".npz"), **contents)
  return video, landmarks


def _frames(count, size=SIZE):
  return np.zeros((count, size, size, 3), np.uint8)


def test_reads_the_ground_truth_beside_the_video(tmp_path):
  video, landmarks = _clip(tmp_path)  # the .mp4 itself is not needed
  detector = detectors.get_detector("sidecar")
  found = detector.detect(_frames(5), source=video)
  np.testing.assert_array_equal(found.points, landmarks)
  assert found.points.dtype == np.float32
  assert found.valid.all() and (found.confidence == 1).all() and (found.num_faces == 1).all()
  assert detectors.sidecar_path(str(video)) == video.with_suffix(".npz")


def test_needs_the_source(tmp_path):
  with pytest.raises(TalkingHeadError, match=r"needs the video path: detect\(frames, source="):
    detectors.get_detector("sidecar").detect(_frames(5))


def test_missing_sidecar_names_the_file(tmp_path):
  video = tmp_path / "00007.mp4"
  with pytest.raises(InputError, match=r"00007\.npz: landmark sidecar not found") as error:
    detectors.get_detector("sidecar").detect(_frames(5), source=video)
  assert error.value.path == str(tmp_path / "00007.npz")


@pytest.mark.parametrize("content, problem", [
    (b"not a zip archive at all", "unreadable landmark sidecar"),
    (b"PK\x03\x04 truncated zip", "unreadable landmark sidecar"),
])
def test_corrupt_sidecar_is_an_input_error(tmp_path, content, problem):
  (tmp_path / "00001.npz").write_bytes(content)
  with pytest.raises(InputError, match=problem) as error:
    detectors.get_detector("sidecar").detect(_frames(5), source=tmp_path / "00001.mp4")
  assert error.value.path == str(tmp_path / "00001.npz") and "\n" not in str(error.value)


def test_npy_instead_of_npz_is_an_input_error(tmp_path):
  with open(tmp_path / "00001.npz", "wb") as file:  # an .npy payload under the .npz name
    np.save(file, np.zeros((5, 68, 3), np.float32))
  with pytest.raises(InputError, match="not an .npz archive"):
    detectors.get_detector("sidecar").detect(_frames(5), source=tmp_path / "00001.mp4")


def test_wrong_contents_are_input_errors(tmp_path):
  detector = detectors.get_detector("sidecar")
  np.savez(tmp_path / "00009.npz", pose=np.zeros((5, 6), np.float32))
  with pytest.raises(InputError, match="has no 'landmarks' field"):
    detector.detect(_frames(5), source=tmp_path / "00009.mp4")
  video, _ = _clip(tmp_path / "shape", landmarks=np.zeros((5, 68, 2), np.float32))
  with pytest.raises(InputError, match=r"must be \(T, 68, 3\), got \(5, 68, 2\)"):
    detector.detect(_frames(5), source=video)
  bad = np.zeros((5, 68, 3), np.float32)
  bad[2, 3, 1] = np.nan
  video, _ = _clip(tmp_path / "nan", landmarks=bad)
  with pytest.raises(InputError, match="not all finite"):
    detector.detect(_frames(5), source=video)


def test_frame_count_and_size_must_match(tmp_path):
  video, _ = _clip(tmp_path)
  detector = detectors.get_detector("sidecar")
  with pytest.raises(InputError, match="sidecar has landmarks for 5 frames, the video 6"):
    detector.detect(_frames(6), source=video)
  with pytest.raises(InputError, match="for 32x32 frames, the video's are 64x64"):
    detector.detect(_frames(5, size=64), source=video)

