"""SynthTalk head motion: identity styles, per-video variation, audio-coupled nods, blinks."""

import numpy as np

from talkinghead_jax.data import synthtalk_motion as motion
from talkinghead_jax.data import synthtalk_speech as speech


def test_nod_response_peaks_at_one_after_the_nod_time():
  times = np.linspace(0, 2, 2001)
  response = motion.nod_response(times, np.array([0.5]), 0.2)
  assert abs(times[np.argmax(response)] - 0.7) < 1e-9
  assert abs(response.max() - 1.0) < 1e-9
  assert np.all(response[times < 0.5] == 0)
  np.testing.assert_array_equal(motion.nod_response(times, np.array([]), 0.2), 0 * times)


def test_nods_add_pitch_at_stressed_syllables_with_the_identity_gain():
  rng = np.random.default_rng(0)
  style = motion.sample_style(rng)
  video = motion.sample_video_variation(rng)
  times = speech.frame_times(4.0, 25)
  onsets = np.array([0.5, 2.0, 3.1])
  quiet = motion.head_motion(style, video, times, np.array([]), 128)
  nodding = motion.head_motion(style, video, times, onsets, 128)
  expected = style.nod_gain * motion.nod_response(times, onsets, style.nod_time)
  np.testing.assert_allclose(nodding.angles[:, 1] - quiet.angles[:, 1], expected, atol=1e-12)
  np.testing.assert_allclose(nodding.angles[:, 0] - quiet.angles[:, 0], style.nod_yaw * expected,
                             atol=1e-12)
  np.testing.assert_array_equal(nodding.angles[:, 2], quiet.angles[:, 2])
  np.testing.assert_array_equal(nodding.translation, quiet.translation)


def _clip_statistics(identities=8, videos=4, seconds=4.0):
  stats, labels = [], []
  for i in range(identities):
    rng = np.random.default_rng(i)
    style, speaker = motion.sample_style(rng), speech.sample_speaker(rng)
    for v in range(videos):
      video_rng = np.random.default_rng(1000 + 10 * i + v)
      video = motion.sample_video_variation(video_rng)
      timeline = speech.make_timeline(video_rng, seconds, speaker)
      times = speech.frame_times(seconds, 25)
      stress = timeline.nucleus_start[timeline.stressed]
      head = motion.head_motion(style, video, times, stress, 128)
      stats.append(motion.motion_statistics(head.angles))
      labels.append(i)
  return np.array(stats), np.array(labels)


def test_motion_statistics_differ_more_across_identities_than_across_their_videos():
  """Paper Fig. 3b: one person's videos move alike; different people move differently."""
  stats, labels = _clip_statistics()
  z = (stats - stats.mean(0)) / stats.std(0)
  groups = np.unique(labels)
  within = np.mean([z[labels == g].var(0) for g in groups], axis=0)
  between = np.array([z[labels == g].mean(0) for g in groups]).var(0)
  assert np.median(between / within) > 3.0
  # A few-shot learner that saw another video of the person does better than one that did
  # not: the nearest clip in statistics is usually the same person's.
  distance = ((z[:, None] - z[None]) ** 2).sum(-1)
  np.fill_diagonal(distance, np.inf)
  assert np.mean(labels[np.argmin(distance, axis=1)] == labels) > 0.8


def test_translation_is_small_and_in_pixels():
  rng = np.random.default_rng(3)
  style, video = motion.sample_style(rng), motion.sample_video_variation(rng)
  times = speech.frame_times(4.0, 25)
  small = motion.head_motion(style, video, times, np.array([]), 64).translation
  large = motion.head_motion(style, video, times, np.array([]), 256).translation
  np.testing.assert_allclose(large, 4 * small, atol=1e-9)
  assert np.abs(large).max() < 0.1 * 256


def test_blinks_close_fully_and_briefly():
  times = np.arange(0, 60, 0.01)
  closure = motion.blink_track(np.random.default_rng(0), 20 / 60, times)
  assert closure.min() >= 0 and closure.max() <= 1
  closed = closure > 0.99
  starts = np.flatnonzero(np.diff(closed.astype(int)) == 1)
  assert 10 <= starts.size <= 30          # about 20 a minute
  assert closure.mean() < 0.15            # eyes are open most of the time
  assert 0.8 <= motion.sample_blink_rate(np.random.default_rng(1)) * 60 / 8 <= 25 / 8
