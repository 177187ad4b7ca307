"""Shared by the Φ model tests: a small Φ and random raw-audio and pose windows."""

import numpy as np

# A narrow Φ with dropout off, so outputs are deterministic in training mode.
SMALL = dict(audio_hidden=16, audio_features=8, pose_hidden=8, pose_features=8, encoder_channels=16, dropout=0.0)


def random_audio_and_pose(frames: int, samples: int, seed: int = 0, batch: int = 2):
  """(audio (batch, frames, 7, samples), pose (batch, frames, 6)), float32 normal draws."""
  rng = np.random.default_rng(seed)
  audio = rng.normal(size=(batch, frames, 7, samples)).astype(np.float32)
  pose = rng.normal(size=(batch, frames, 6)).astype(np.float32)
  return audio, pose
