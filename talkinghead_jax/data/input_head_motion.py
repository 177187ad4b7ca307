"""Φ's samples: W-frame windows of smoothed audio windows and normalised, smoothed poses.

As upstream's RotateAudio/dataset.py (UPSTREAM_NOTES §2.2), on the whole clip:
- audio: per-frame windows of 7 chunks (`audio.frame_windows`, upstream padding), every
  (slot, sample) series smoothed over time with a 21-tap Hanning window;
- pose: (pose − data.pose_mean) / data.pose_std, each of the 6 series smoothed with an
  11-tap Hanning window.
Only the rows of the window (plus the smoothing's reach) are computed, with exactly the values
of the whole-clip computation (`input_common.smoothed_rows`). `data.smoothing_align`
"centered" (default) centres each output on its frame; "upstream" keeps upstream's one-frame
lag. W = max observed + max predicted frames; the task draws the lengths it uses per step.
"""

from __future__ import annotations

import numpy as np

from talkinghead_jax.audio import samples_per_frame
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import schema
from talkinghead_jax.errors import ConfigError, TalkingHeadError

# Upstream's fixed statistics for VoxCeleb2 poses (rotation vector in rad, translation in px of
# its 256 crops), RotateAudio/dataset.py.
VOX_POSE_MEAN = (0.07, -0.008, -0.016, 11.4, 5.69, -4.37)
VOX_POSE_STD = (0.066, 0.132, 0.071, 9.99, 9.24, 16.95)


def pose_statistics(poses: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Per-dimension mean and std over all frames of the given (T, 6) pose sequences."""
  stacked = np.concatenate([np.asarray(p, np.float64).reshape(-1, 6) for p in poses])
  if len(stacked) < 2:
    raise TalkingHeadError("need at least 2 pose frames for pose statistics")
  std = stacked.std(axis=0)
  return stacked.mean(axis=0).astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


class HeadMotionSampler(common.StageSampler):
  """A window of W frames from a random start (see the module docstring)."""

  stage = "head_motion"
  salt = 2

  def __init__(self, config, artifacts: common.DatasetArtifacts, pose_mean, pose_std):
    data = config.data
    self.window = int(data.observed_frames[1]) + int(data.predicted_frames[1])
    self.chunks = int(common.data_field(data, "context_frames", 7))
    if self.chunks < 1 or self.chunks % 2 == 0:
      raise ConfigError(f"data.context_frames must be odd and positive, got {self.chunks}")
    self.fps = int(common.data_field(data, "fps", 25))
    self.sample_rate = int(data.sample_rate)
    self.samples = samples_per_frame(self.sample_rate, self.fps)
    self.audio_taps = int(common.data_field(data, "audio_smoothing_taps", 21))
    self.pose_taps = int(common.data_field(data, "pose_smoothing_taps", 11))
    self.align = str(common.data_field(data, "smoothing_align", "centered"))
    self.pose_feature = str(common.data_field(data, "pose_feature", "pose"))
    if self.pose_feature not in artifacts.features:
      raise ConfigError(f"data.pose_feature={self.pose_feature!r} is not a feature of the data set")
    self.pose_mean = np.asarray(pose_mean, np.float32).reshape(6)
    self.pose_std = np.asarray(pose_std, np.float32).reshape(6)
    if np.any(self.pose_std <= 0):
      raise ConfigError(f"data.pose_std must be positive, got {tuple(self.pose_std)}")
    self.audio_feature, self.stored_rate = common.audio_source(artifacts.features, self.sample_rate)
    self.input_features = (self.pose_feature, "num_frames", self.audio_feature)
    self.min_frames = self.window

  def output_spec(self):
    return {
        schema.AUDIO: ((self.window, self.chunks, self.samples), np.dtype(np.float32)),
        schema.POSE: ((self.window, 6), np.dtype(np.float32)),
    }

  def sample(self, clip, rng, noise_clip=None):
    frames = int(clip["num_frames"])
    if frames < self.window:
      raise TalkingHeadError(f"a clip of {frames} frames is shorter than the window of {self.window}")
    start = int(rng.integers(0, frames - self.window + 1))
    audio = common.clip_audio(clip[self.audio_feature], self.stored_rate, self.sample_rate)
    pose = (np.asarray(clip[self.pose_feature], np.float32)[:frames] - self.pose_mean) / self.pose_std

    windows = common.smoothed_windows(audio, self.sample_rate, self.fps, self.chunks // 2, frames, start, self.window,
                                      self.audio_taps, self.align)
    poses = common.smoothed_rows(lambda low, high: pose[low:high], frames, start, self.window, self.pose_taps,
                                 self.align)
    return {schema.AUDIO: windows.astype(np.float32), schema.POSE: poses.astype(np.float32)}
