"""The driving signal: Ψ's expressions, Φ's head motion over long audio, pose sources, driving video."""

import dataclasses

import numpy as np
import pytest

import infer_motion_testdata as testdata
from talkinghead_jax.audio import frame_windows, resample, smooth_windows
from talkinghead_jax.data.input_expression import mouth_open_rate
from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.eval import stage_head_motion
from talkinghead_jax.geometry import rigid
from talkinghead_jax.infer import motion as motion_lib
from talkinghead_jax.infer import reference as reference_lib


@pytest.mark.parametrize("taps", [1, 21])
def test_window_rows_are_the_whole_clips_rows(taps):
  rng = np.random.default_rng(0)
  audio = rng.standard_normal(160 * 57 + 33).astype(np.float32)
  frames = 60  # past the audio's end: the padding of the whole clip
  whole = frame_windows(audio, 4000, 25, 3, num_frames=frames)
  if taps > 1:
    whole = smooth_windows(whole, taps)
  for start, stop in ((0, 5), (14, 40), (20, 21), (50, 60)):
    rows = motion_lib.window_rows(audio, 4000, 25, 3, frames, start, stop, taps)
    np.testing.assert_allclose(rows, whole[start:stop], atol=1e-6, err_msg=f"rows {start}:{stop}")


def test_pingpong_and_frame_count():
  np.testing.assert_array_equal(motion_lib.pingpong(3, 8), [0, 1, 2, 1, 0, 1, 2, 1])
  np.testing.assert_array_equal(motion_lib.pingpong(1, 3), [0, 0, 0])
  np.testing.assert_array_equal(motion_lib.pingpong(5, 3), [0, 1, 2])
  assert motion_lib.output_frames(16000, 16000) == 25
  assert motion_lib.output_frames(int(1.03 * 16000), 16000) == 26  # 25.75 frames
  assert motion_lib.output_frames(100, 16000) == 1


def _identity(reference, pca, scale=0.5):
  """The closed-mouth valid frame and Ψ's identity input, by the training pipeline's rule."""
  front = reference.front / scale
  candidates = np.flatnonzero(reference.valid)
  closed = int(candidates[np.argmin(mouth_open_rate(front[candidates]))])
  offset = front[closed, :, :2] - pca.mean_.reshape(68, 2)
  return closed, front[closed], pca.transform(front[closed, :, :2]), offset


def _psi_front(audio, rate, frames, reference, checkpoints, scale=0.5):
  """Ψ on all frames' windows in one call, coefficients to landmarks in numpy."""
  psi = checkpoints.expression
  windows = frame_windows(resample(audio, rate, 5000), 5000, 25, 3, num_frames=frames)
  _, closed_front, reference_pca, offset = _identity(reference, checkpoints.pca, scale)
  coefficients = np.asarray(psi.task.model.apply(psi.variables, windows[None], reference_pca[None], train=False))[0]
  xy = (coefficients @ checkpoints.pca.components_ + checkpoints.pca.mean_).reshape(frames, 68, 2) + offset
  z = np.broadcast_to(closed_front[:, 2:], (frames, 68, 1))
  return np.concatenate([xy, z], axis=-1) * scale, coefficients


def test_expressions_are_psi_on_the_reference_identity(monkeypatch):
  checkpoints = testdata.tiny_set()
  reference = testdata.synthtalk_reference(0)
  audio = testdata.wavy_audio(1.03)
  monkeypatch.setattr(motion_lib, "EXPRESSION_BLOCK", 8)  # blocks of 8 frames, jitted 4 at a time
  monkeypatch.setattr(motion_lib, "EXPRESSION_CHUNK", 4)
  timings = {}
  motion = motion_lib.motion_from_audio(audio, 16000, reference, checkpoints, pose="still", timings=timings)
  assert motion.num_frames == 26 and set(timings) == {"expression", "head_motion"}
  want, coefficients = _psi_front(audio, 16000, 26, reference, checkpoints)
  assert np.abs(coefficients).max() > 0.1  # a nontrivial prediction
  np.testing.assert_allclose(motion.front, want, atol=2e-4)
  np.testing.assert_allclose(motion.landmarks, rigid.unfrontalize(motion.front, motion.pose), atol=1e-4)
  # expression_scale: 0 is the identity's closed mouth every frame, 2 doubles every offset from it.
  closed, closed_front, _, _ = _identity(reference, checkpoints.pca)
  still = motion_lib.motion_from_audio(audio, 16000, reference, checkpoints, pose="still", expression_scale=0.0)
  np.testing.assert_allclose(still.front, np.broadcast_to(closed_front * 0.5, (26, 68, 3)), atol=1e-4)
  double = motion_lib.motion_from_audio(audio, 16000, reference, checkpoints, pose="still", expression_scale=2.0)
  np.testing.assert_allclose(double.front - still.front, 2 * (motion.front - still.front), atol=2e-4)
  # The identity comes from a frame with a detected face only.
  hidden = dataclasses.replace(reference, valid=np.arange(reference.num_frames) != closed)
  assert _identity(hidden, checkpoints.pca)[0] != closed
  other = motion_lib.motion_from_audio(audio, 16000, hidden, checkpoints, pose="still")
  np.testing.assert_allclose(other.front, _psi_front(audio, 16000, 26, hidden, checkpoints)[0], atol=2e-4)


def test_pose_sources_and_pose_scale(tmp_path):
  checkpoints = testdata.tiny_set()
  reference = testdata.synthtalk_reference(0)  # 30 frames
  audio = testdata.wavy_audio(2.0)  # 50 frames
  run = lambda **kw: motion_lib.motion_from_audio(audio, 16000, reference, checkpoints, **kw).pose  # noqa: E731
  own = run(pose="reference")
  np.testing.assert_array_equal(own, reference.pose[[*range(30), *range(28, 8, -1)]])
  np.testing.assert_array_equal(run(pose="still"), np.repeat(reference.pose[reference.key_frame][None], 50, axis=0))
  poses = np.random.default_rng(1).normal(size=(7, 6)).astype(np.float32)
  np.save(tmp_path / "poses.npy", poses)
  np.testing.assert_array_equal(run(pose=str(tmp_path / "poses.npy")), poses[motion_lib.pingpong(7, 50)])
  # pose_scale scales around the motion's mean: 0 holds the mean pose.
  np.testing.assert_allclose(run(pose="reference", pose_scale=0.0), np.repeat(own.mean(0, keepdims=True), 50, 0),
                             atol=1e-5)
  np.testing.assert_allclose(run(pose="reference", pose_scale=2.0), own.mean(0) + 2 * (own - own.mean(0)), atol=1e-5)
  np.save(tmp_path / "flat.npy", np.zeros((5, 3)))
  with pytest.raises(InputError, match=r"flat.npy: poses must be a numeric \(N, 6\) array"):
    run(pose=str(tmp_path / "flat.npy"))
  with pytest.raises(InputError, match=r"gone.npy: pose file not found"):
    run(pose=str(tmp_path / "gone.npy"))
  with pytest.raises(TalkingHeadError, match="unknown pose source 'wobbly'"):
    run(pose="wobbly")
  with pytest.raises(InputError, match="the audio is empty"):
    motion_lib.motion_from_audio(np.zeros(0, np.float32), 16000, reference, checkpoints)
  with pytest.raises(InputError, match="audio must be mono"):
    motion_lib.motion_from_audio(np.zeros((2, 100), np.float32), 16000, reference, checkpoints)


def _phi_window(checkpoints, reference, speech, frames):
  """Φ's first window by evaluation's predictor, its inputs built from whole-clip windows."""
  settings = stage_head_motion.AudioSettings.from_config(checkpoints.head_motion.config)
  rate = settings.sample_rate
  picks = motion_lib.pingpong(reference.num_frames, 32)
  if reference.audio is not None:
    own = frame_windows(resample(reference.audio, reference.sample_rate, rate), rate, 25, 3,
                        num_frames=reference.num_frames)
    observed_audio = smooth_windows(own, 21)[picks]
  else:
    observed_audio = np.zeros((32, 7, rate // 25), np.float32)
  new = smooth_windows(frame_windows(resample(speech, 16000, rate), rate, 25, 3, num_frames=frames), 21)
  length = min(4 * 64, frames)  # 4 × Φ's largest trained prediction
  observed_pose = reference.pose[picks] * [1, 1, 1, 2, 2, 2]  # at the 64 px crop
  normalisation = stage_head_motion.PoseNormalisation(checkpoints.pose_mean, checkpoints.pose_std)
  predict = stage_head_motion.head_motion_predictor(checkpoints.head_motion, 32, length, normalisation, 1)
  window = np.concatenate([observed_audio, new[:length]])[None]
  return predict(window, observed_pose[None].astype(np.float32))[0] * [1, 1, 1, 0.5, 0.5, 0.5]


def test_head_motion_observes_the_reference():
  checkpoints = testdata.tiny_set()
  reference = testdata.synthtalk_reference(0)
  speech = testdata.wavy_audio(1.6)  # 40 frames: one window
  motion = motion_lib.motion_from_audio(speech, 16000, reference, checkpoints)
  want = _phi_window(checkpoints, reference, speech, 40)
  np.testing.assert_allclose(motion.pose, want, atol=1e-4)
  assert np.abs(np.diff(want, axis=0)).max() > 1e-4  # it moves
  # A reference without sound is observed in silence.
  silent = dataclasses.replace(reference, audio=None, sample_rate=None)
  quiet = motion_lib.motion_from_audio(speech, 16000, silent, checkpoints)
  np.testing.assert_allclose(quiet.pose, _phi_window(checkpoints, silent, speech, 40), atol=1e-4)
  assert np.abs(quiet.pose - motion.pose).max() > 1e-5


def test_long_audio_windows_observe_the_reference_and_cross_fade():
  calls = []

  def predictor(audio, observed):
    calls.append((audio[:, :, 0, 0].copy(), observed[:, :, 0].copy()))
    starts = audio[:, 4, 0, 0]  # the first predicted frame's audio row carries its frame number
    # The same motion 0.01·t for every window, plus a window-dependent offset: a jump of 1 per window.
    values = starts[:, None] / 5 + 0.01 * (starts[:, None] + np.arange(10)[None])
    return values[..., None] * np.ones((1, 1, 6), np.float32)

  windows = motion_lib.HeadMotionWindows(observed=4, length=10, warm=3, overlap=2, predictor=predictor, batch_size=2)
  assert windows.windows(30) == [motion_lib.Window(0, 0), motion_lib.Window(5, 8), motion_lib.Window(10, 13),
                                 motion_lib.Window(15, 18), motion_lib.Window(20, 23)]
  reference_pose = np.full((4, 6), -5.0, np.float32)
  reference_audio = np.full((4, 7, 1), -1.0, np.float32)
  rows = lambda a, b: np.arange(a, b, dtype=np.float32)[:, None, None] * np.ones((1, 7, 1), np.float32)  # noqa: E731
  poses = windows.run(reference_pose, reference_audio, rows, 30)[:, 0]

  expected, made = np.zeros(30), 0
  for index, (start, trusted) in enumerate([(0, 0), (5, 8), (10, 13), (15, 18), (20, 23)]):
    values = index + 0.01 * np.arange(start, start + 10)
    shared = made - trusted  # 0, then 2 frames of overlap after each warm-up of 3
    weight = np.sin(np.pi * (np.arange(shared) + 0.5) / (2 * shared)) ** 2 if shared > 0 else np.zeros(0)
    expected[trusted:made] = (1 - weight) * expected[trusted:made] + weight * values[trusted - start:made - start]
    expected[made:start + 10] = values[made - start:]
    made = start + 10
  np.testing.assert_allclose(poses, expected, atol=1e-6)
  # Two windows per call, every one observing the reference: its poses and its sound.
  assert [len(audio) for audio, _ in calls] == [2, 2, 1]
  for audio, observed in calls:
    np.testing.assert_array_equal(observed, np.full((len(audio), 4), -5.0))
    np.testing.assert_array_equal(audio[:, :4], np.full((len(audio), 4), -1.0))
  np.testing.assert_array_equal(calls[1][0][1, 4:], np.arange(15, 25))
  # No jumps: a hard switch would step by 1 at each join; the 2-frame cross-fade by at most its
  # weights' largest step (0.71) plus the motion's own 0.01.
  assert np.abs(np.diff(poses)).max() < 0.72


def test_long_audio_with_phi_has_no_seams():
  checkpoints = testdata.tiny_set()
  reference = testdata.synthtalk_reference(0)
  speech = testdata.wavy_audio(12.0, seed=2)  # 300 frames: windows at 0 and 44 (trusted from 172)
  motion = motion_lib.motion_from_audio(speech, 16000, reference, checkpoints)
  assert motion.num_frames == 300
  windows = motion_lib.HeadMotionWindows.build(checkpoints, 300).windows(300)
  assert windows == [motion_lib.Window(0, 0), motion_lib.Window(44, 172)]
  # Until the second window fades in, the output is the first window's prediction.
  first = _phi_window(checkpoints, reference, speech, 300)
  np.testing.assert_allclose(motion.pose[:172], first[:172], atol=1e-4)
  # The two windows agree where they meet (both long past the observation), and no step at the
  # join is larger than the steps elsewhere.
  steps = np.abs(np.diff(motion.pose, axis=0))
  join = np.zeros(299, bool)
  join[171:257] = True
  assert (steps[join].max(0) <= 1.5 * steps[~join].max(0) + 1e-4).all()


def test_driving_video_puts_the_drivers_expressions_on_the_reference():
  checkpoints = testdata.tiny_set()
  reference = testdata.synthtalk_reference(0)
  driver_path = testdata.synthtalk_clips()[1]
  driver = reference_lib.prepare_reference(driver_path, checkpoints, min_frames=1)
  timings = {}
  motion = motion_lib.motion_from_video(driver_path, reference, checkpoints, timings=timings)
  assert set(timings) == {"preprocess", "expression"}
  np.testing.assert_array_equal(motion.pose, driver.pose)
  pca = checkpoints.pca
  _, _, _, driver_offset = _identity(driver, pca)
  _, closed_front, _, reference_offset = _identity(reference, pca)
  coefficients = ((driver.front[..., :2] / 0.5 - driver_offset).reshape(-1, 136) - pca.mean_) @ pca.components_.T
  xy = (coefficients @ pca.components_ + pca.mean_).reshape(-1, 68, 2) + reference_offset
  np.testing.assert_allclose(motion.front[..., :2], xy * 0.5, atol=2e-4)
  np.testing.assert_allclose(motion.front[..., 2], np.broadcast_to(closed_front[:, 2] * 0.5, xy.shape[:2]), atol=1e-5)
  np.testing.assert_allclose(motion.landmarks, rigid.unfrontalize(motion.front, motion.pose), atol=1e-4)
  # Driving a face with its own video gives back its own face, to within the PCA's 20 components.
  itself = motion_lib.motion_from_video(driver_path, driver, checkpoints)
  assert np.abs(itself.front[..., :2] - driver.front[..., :2]).mean() < 0.1
  # The mouth follows the driver: its opening over time correlates with the driver's.
  opening = lambda front: mouth_open_rate(front)  # noqa: E731
  assert np.corrcoef(opening(motion.front), opening(driver.front))[0, 1] > 0.9
