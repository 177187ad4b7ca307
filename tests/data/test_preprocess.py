"""Per-clip preprocessing: reject reasons on real (tiny) files, pose, canonical face, audio, PCA."""

import dataclasses

import numpy as np
import pytest

from talkinghead_jax import media
from talkinghead_jax.data import crop
from talkinghead_jax.data import detectors
from talkinghead_jax.data import preprocess
from talkinghead_jax.errors import ConfigError, InputError, TalkingHeadError
from talkinghead_jax.geometry import rigid
from talkinghead_jax.geometry.landmarks import STABLE_27

FRAMES = 30
TONE_RATE = 16000


def _tone(rate, seconds=FRAMES / 25):
  t = np.arange(int(round(seconds * rate))) / rate
  return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Tiny clips: good, without audio, silent, one frame, empty, cut short, not a video."""
  folder = tmp_path_factory.mktemp("clips")
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (FRAMES, 48, 64, 3), dtype=np.uint8)
  paths = {name: folder / f"{name}.mp4" for name in
           ("talk", "no_audio", "silent", "one_frame", "empty", "truncated", "junk")}
  media.write_video(paths["talk"], frames, 25, _tone(TONE_RATE), TONE_RATE)
  media.write_video(paths["no_audio"], frames)
  media.write_video(paths["silent"], frames, 25, np.zeros(19200, np.float32), TONE_RATE)
  media.write_video(paths["one_frame"], frames[:1], 25, _tone(TONE_RATE, 0.04), TONE_RATE)
  paths["empty"].write_bytes(b"")
  whole = paths["talk"].read_bytes()
  paths["truncated"].write_bytes(whole[:int(len(whole) * 0.6)])
  paths["junk"].write_bytes(b"not a video at all " * 20)
  return paths


def _face(size=64):
  """A plausible (68, 3) face: SynthTalk's canonical face at `size` pixels."""
  from talkinghead_jax.data import synthetic

  return synthetic.canonical_face(size).astype(np.float64)


class FixedDetector:
  """Returns given landmarks whatever the frames; remembers the `source` it was told."""

  name = "fixed"

  def __init__(self, points, valid=None, num_faces=None):
    self.points, self.valid, self.num_faces = points, valid, num_faces
    self.sources = []

  def detect(self, frames, source=None):
    self.sources.append(source)
    count = len(frames)
    points = np.broadcast_to(self.points, (count, 68, 3)).astype(np.float32)
    valid = np.ones(count, bool) if self.valid is None else np.asarray(self.valid)
    points = np.where(valid[:, None, None], points, 0).astype(np.float32)
    return detectors.Landmarks(points, valid, valid.astype(np.float32) * 0.9, self.num_faces)


@pytest.mark.parametrize("name, reason", [
    ("empty", "unreadable"), ("junk", "unreadable"), ("truncated", "truncated"),
    ("no_audio", "no_audio"), ("silent", "silent"), ("one_frame", "too_short"),
])
def test_bad_clips_get_their_reason(files, name, reason):
  detector = FixedDetector(_face())
  with pytest.raises(preprocess.ClipRejected) as raised:
    preprocess.detect_clip(files[name], detector)
  assert raised.value.reason == reason and raised.value.detail
  assert not detector.sources  # rejected before the (expensive) detector runs


def test_faceless_and_crowded_clips_are_rejected(files):
  nobody = FixedDetector(_face(), valid=np.zeros(FRAMES, bool))
  with pytest.raises(preprocess.ClipRejected) as raised:
    preprocess.detect_clip(files["talk"], nobody)
  assert raised.value.reason == "no_face"
  assert nobody.sources == [str(files["talk"])]
  crowd = np.ones(FRAMES, int)
  crowd[:4] = 2  # 13 % of the frames
  with pytest.raises(preprocess.ClipRejected) as raised:
    preprocess.detect_clip(files["talk"], FixedDetector(_face(), num_faces=crowd))
  assert raised.value.reason == "multiple_faces"
  crowd[3] = 1  # 10 %: allowed
  preprocess.detect_clip(files["talk"], FixedDetector(_face(), num_faces=crowd))


def test_missed_detections(files):
  options = preprocess.PrepareOptions(size=64, max_gap_frames=3)
  valid = np.ones(FRAMES, bool)
  valid[5:12] = False  # 23 % > 20 %
  with pytest.raises(preprocess.ClipRejected, match="23%") as raised:
    preprocess.detect_clip(files["talk"], FixedDetector(_face(), valid), options)
  assert raised.value.reason == "too_many_failures"
  valid[9:12] = True  # 4 missing frames in a row: more than max_gap_frames
  with pytest.raises(preprocess.ClipRejected, match="4 consecutive") as raised:
    preprocess.detect_clip(files["talk"], FixedDetector(_face(), valid), options)
  assert raised.value.reason == "too_many_failures"
  valid[5] = True  # 3 in a row: filled
  found = preprocess.detect_clip(files["talk"], FixedDetector(_face(), valid), options)
  np.testing.assert_array_equal(found.detected, valid)
  assert (found.confidence[~valid] == 0).all()
  np.testing.assert_allclose(found.landmarks[6:9], found.landmarks[[0] * 3], atol=1e-4)
  # A landmark set collapsed to a line is a failed detection (upstream drops those).
  flat = _face()
  flat[:, 1] = 30.0
  with pytest.raises(preprocess.ClipRejected) as raised:
    preprocess.detect_clip(files["talk"], FixedDetector(flat), options)
  assert raised.value.reason == "no_face"


def test_detect_clip_maps_landmarks_into_the_crop_and_round_trips(files, tmp_path):
  face = (_face() * 0.5 + [10.0, 4.0, 0.0]).astype(np.float32)  # as the detector returns it
  options = preprocess.PrepareOptions(size=64)
  found = preprocess.detect_clip(files["talk"], FixedDetector(face), options)
  box = crop.crop_box(face[None], [True])
  np.testing.assert_allclose(dataclasses.astuple(found.box), dataclasses.astuple(box), rtol=1e-12)
  assert found.num_frames == FRAMES and found.size == 64
  np.testing.assert_allclose(found.landmarks, np.broadcast_to(
      crop.crop_points(face, box, 64), (FRAMES, 68, 3)), atol=1e-5)
  assert found.detected.all() and found.landmarks.dtype == np.float32
  found.save(tmp_path / "clip.npz")
  loaded = preprocess.ClipLandmarks.load(tmp_path / "clip.npz")
  assert loaded.box == found.box and loaded.num_frames == FRAMES and loaded.size == 64
  for field in ("landmarks", "detected", "confidence"):
    np.testing.assert_array_equal(getattr(loaded, field), getattr(found, field))
  (tmp_path / "bad.npz").write_bytes(b"nope")
  with pytest.raises(InputError, match="bad.npz"):
    preprocess.ClipLandmarks.load(tmp_path / "bad.npz")
  with pytest.raises(InputError, match="not found"):
    preprocess.ClipLandmarks.load(tmp_path / "missing.npz")


def _random_poses(rng, count, degrees=20.0, shift=4.0):
  return np.concatenate([rng.uniform(-1, 1, (count, 3)) * np.radians(degrees),
                         rng.uniform(-shift, shift, (count, 3))], axis=-1)


def test_finish_clip_recovers_known_poses_and_writes_exact_audio(files):
  rng = np.random.default_rng(3)
  size = 32
  canonical = preprocess.place_in_crop(_face(), size).astype(np.float64)
  poses = _random_poses(rng, FRAMES)
  landmarks = rigid.unfrontalize(canonical, poses)
  box = crop.CropBox(5.5, -3.25, 40.0)
  detected = np.ones(FRAMES, bool)
  detected[7] = False
  clip = preprocess.ClipLandmarks(box=box, landmarks=landmarks.astype(np.float32),
                                  detected=detected, confidence=np.ones(FRAMES, np.float32),
                                  num_frames=FRAMES, size=size)
  options = preprocess.PrepareOptions(size=size, audio_rates=(16000, 50000, 22050))
  prepared = preprocess.finish_clip(files["talk"], clip, canonical, options)
  np.testing.assert_allclose(prepared.pose, poses, atol=1e-4)
  np.testing.assert_allclose(prepared.front, np.broadcast_to(canonical, (FRAMES, 68, 3)),
                             atol=1e-3)
  assert prepared.key_frame == int(np.argmin(np.abs(poses[:, :3]).sum(axis=-1)))
  np.testing.assert_array_equal(prepared.detected, detected)
  video = media.read_video(files["talk"])
  np.testing.assert_array_equal(prepared.frames, crop.crop_frames(video.frames, box, size))
  assert sorted(prepared.audio) == [16000, 22050, 50000]
  for rate, track in prepared.audio.items():
    assert track.dtype == np.int16 and track.shape == (int(round(FRAMES * rate / 25)),)
    # The written tone, through AAC and the resampler, away from the codec's start and end.
    expected = _tone(rate)[:track.size]
    middle = slice(track.size // 5, track.size * 4 // 5)
    assert np.abs(track[middle] / 32767 - expected[middle]).max() < 0.02
  # The landmarks must belong to a crop of the size asked for.
  with pytest.raises(ConfigError, match="32-pixel crop"):
    preprocess.finish_clip(files["talk"], clip, canonical, preprocess.PrepareOptions(size=64))


def test_audio_track_is_cut_or_padded_clipped_and_rounded():
  samples = np.array([0.5, -1.5, 2.0, 1e-5, -0.25], np.float32)
  np.testing.assert_array_equal(preprocess._audio_track(samples, 8000, 8000, 3),
                                [16384, -32767, 32767])  # rint(16383.5) = 16384 (even)
  np.testing.assert_array_equal(preprocess._audio_track(samples, 8000, 8000, 7),
                                [16384, -32767, 32767, 0, -8192, 0, 0])
  # Resampled: exactly the length asked for, whatever the resampler returns.
  assert preprocess._audio_track(np.ones(1000, np.float32) * 0.1, 16000, 50000, 3200).shape == (
      3200,)


def _symmetric_face():
  """SynthTalk's canonical face made exactly mirror-symmetric about a plane x = const."""
  face = _face(128)
  mirror = face.copy()
  mirror[:, 0] = -mirror[:, 0]
  # iBUG mirror permutation, built from the symmetric groups of the 68 points.
  perm = np.arange(68)
  pairs = [(i, 16 - i) for i in range(17)] + [(17 + i, 26 - i) for i in range(5)]
  pairs += [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
  pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
  for a, b in pairs:
    perm[a], perm[b] = b, a
  symmetric = (face + mirror[perm]) / 2
  return symmetric


def _rotation(axis, degrees):
  return rigid.rotvec_to_matrix(np.asarray(axis, float) * np.radians(degrees))


def _data_around(face, offset, rng):
  """Clips of `face` seen at rotations G·offset and Gᵀ·offset (average orientation: offset)."""
  sets = []
  for _ in range(3):
    turn = rigid.rotvec_to_matrix(rng.uniform(-0.3, 0.3, 3))
    clip = []
    for rotation in (turn @ offset, turn.T @ offset):
      clip.append(face @ rotation.T + rng.uniform(-20, 20, 3))
    sets.append(np.stack(clip * 2) * rng.uniform(0.8, 1.2))  # scale: as clips of other sizes
  return sets


@pytest.mark.parametrize("offset, kept", [
    (np.eye(3), np.eye(3)),
    (_rotation([0, 1, 0], 25), np.eye(3)),  # yaw: removed
    (_rotation([0, 0, 1], -15), np.eye(3)),  # roll: removed
    (_rotation([1, 0, 0], 12), _rotation([1, 0, 0], 12)),  # pitch: the data's, kept
])
def test_fit_canonical_known_answers(offset, kept):
  rng = np.random.default_rng(4)
  face = _symmetric_face()
  # Scale differences between clips change the mean size only, which place_in_crop removes.
  canonical = preprocess.fit_canonical(_data_around(face, offset, rng), 256)
  expected = preprocess.place_in_crop(face @ kept.T, 256)
  assert canonical.dtype == np.float32 and canonical.shape == (68, 3)
  np.testing.assert_allclose(canonical, expected, atol=2e-3)


def test_canonical_sits_where_the_crop_puts_a_face():
  rng = np.random.default_rng(5)
  sets = [rigid.unfrontalize(_face(), _random_poses(rng, 40)) for _ in range(2)]
  canonical = preprocess.fit_canonical(sets, 64)
  box = crop.crop_box(canonical[None], [True])
  np.testing.assert_allclose([box.x0, box.y0, box.side], [0, 0, 64], atol=1e-4)
  assert abs(canonical[:, 2].mean()) < 1e-4
  # Level: the symmetric stable pairs' mean difference points along +x.
  pairs = np.array(preprocess.SYMMETRIC_STABLE_PAIRS)
  axis = (canonical[pairs[:, 1]] - canonical[pairs[:, 0]]).sum(axis=0)
  np.testing.assert_allclose(axis / np.linalg.norm(axis), [1, 0, 0], atol=1e-5)
  # Poses against it of the same data are small on average (the data's average orientation).
  poses = rigid.pose_from_landmarks(np.concatenate(sets), canonical)
  assert np.abs(poses[:, :3].mean(axis=0)).max() < np.radians(5)


def test_fit_landmark_pca_samples_frames_evenly():
  rng = np.random.default_rng(6)
  fronts = [rng.normal(size=(count, 68, 3)).astype(np.float32) for count in (50, 7)]
  pca = preprocess.fit_landmark_pca(fronts, num_components=5, frames_per_clip=10)
  # Reference: frames 0, 5.44.., … rounded, i.e. np.linspace by hand, then plain SVD.
  chosen = np.concatenate([fronts[0][np.rint(np.linspace(0, 49, 10)).astype(int), :, :2],
                           fronts[1][:, :, :2]]).reshape(-1, 136).astype(np.float64)
  assert pca.n_samples_ == 17 and pca.components_.shape == (5, 136)
  np.testing.assert_allclose(pca.mean_, chosen.mean(axis=0), atol=1e-5)
  _, singular, _ = np.linalg.svd(chosen - chosen.mean(axis=0), full_matrices=False)
  np.testing.assert_allclose(pca.singular_values_, singular[:5], rtol=1e-4)
  with pytest.raises(TalkingHeadError, match="at least 20 frames"):
    preprocess.fit_landmark_pca([fronts[1]])


@pytest.fixture(scope="module")
def synthtalk_clip(tmp_path_factory):
  from talkinghead_jax.data import synthetic

  out = tmp_path_factory.mktemp("synthtalk")
  manifest = synthetic.generate(out, identities=1, clips_per_identity=1, seconds=1.2,
                                image_size=64, seed=0)
  return out / manifest["clips"][0]["path"]


def test_synthtalk_clip_poses_match_ground_truth(synthtalk_clip):
  truth = np.load(synthtalk_clip.with_suffix(".npz"))
  options = preprocess.PrepareOptions(size=64)
  sidecar = detectors.get_detector("sidecar")  # SynthTalk's ground-truth landmarks
  found = preprocess.detect_clip(synthtalk_clip, sidecar, options)
  canonical = crop.crop_points(truth["canonical"], found.box, 64)
  prepared = preprocess.finish_clip(synthtalk_clip, found, canonical, options)
  # The crop is a similarity (shift, scale k): rotations are unchanged, translations become
  # k·(t + R·c − c) with c the crop corner (z 0).
  np.testing.assert_allclose(prepared.pose[:, :3], truth["pose"][:, :3], atol=1e-4)
  rotation = rigid.rotvec_to_matrix(truth["pose"][:, :3].astype(np.float64))
  corner = np.array([found.box.x0, found.box.y0, 0.0])
  scale = 64 / found.box.side
  translation = scale * (truth["pose"][:, 3:] + rotation @ corner - corner)
  np.testing.assert_allclose(prepared.pose[:, 3:], translation, atol=1e-3)
  assert prepared.key_frame == int(truth["key_frame"])
  assert prepared.frames.shape == (found.num_frames, 64, 64, 3)
  assert {rate: track.size for rate, track in prepared.audio.items()} == {
      16000: 640 * found.num_frames, 50000: 2000 * found.num_frames}
  # Landmarks land on the face: the crop is darker or lighter there than the zero padding.
  stable = prepared.landmarks[0, STABLE_27, :2]
  assert ((stable > 0) & (stable < 64)).all()
