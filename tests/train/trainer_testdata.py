"""Test data for the trainer tests: small learnable array files and the tiny test-size overrides.

(A plain module with a unique name, imported by the tests and by conftest.py.)
"""

import pathlib

import numpy as np

from talkinghead_jax.train import arrays

REPO = pathlib.Path(__file__).resolve().parents[2]

# Test sizes: samples per frame S = sample_rate / 25.
HEAD_MOTION_RATE = 1000  # S = 40
EXPRESSION_RATE = 2500  # S = 100


def frame_windows(signal: np.ndarray, frames: int, samples: int, chunks: int = 7) -> np.ndarray:
  """(frames, chunks, samples) windows: window t holds chunks t … t + chunks - 1 of `signal`."""
  as_chunks = signal[: (frames + chunks - 1) * samples].reshape(frames + chunks - 1, samples)
  return as_chunks[np.arange(frames)[:, None] + np.arange(chunks)[None, :]]


def _loudness_signal(rng, frames: int, samples: int):
  """A tone whose loudness follows a slow random curve: something a pose or mouth can follow."""
  loudness = np.convolve(rng.normal(size=frames + 6), np.hanning(7) / 3.0, mode="same")
  envelope = np.repeat(loudness, samples)
  t = np.arange(envelope.size)
  return (envelope * np.sin(2 * np.pi * 0.11 * t)).astype(np.float32), loudness[3:3 + frames]


def write_head_motion_arrays(path, sequences=8, frames=40, samples=HEAD_MOTION_RATE // 25, seed=0):
  rng = np.random.default_rng(seed)
  audio, pose = [], []
  for _ in range(sequences):
    signal, loudness = _loudness_signal(rng, frames, samples)
    audio.append(frame_windows(signal, frames, samples))
    style = rng.normal(size=6)  # each "speaker" moves along its own direction
    pose.append((loudness[:, None] * style[None, :] + 0.3 * rng.normal(size=6)).astype(np.float32))
  return arrays.write_sequence_arrays(path, [frames] * sequences,
                                      {"audio": np.concatenate(audio), "pose": np.concatenate(pose)})


def write_expression_arrays(path, sequences=8, frames=24, samples=EXPRESSION_RATE // 25, seed=0,
                            nan_sequence=None):
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(1, 20))
  audio, target, reference = [], [], []
  for i in range(sequences):
    signal, loudness = _loudness_signal(rng, frames, samples)
    audio.append(frame_windows(signal, frames, samples))
    identity = rng.normal(size=20).astype(np.float32)
    reference.append(identity)
    target.append((np.abs(loudness)[:, None] * mix + 0.2 * identity).astype(np.float32))
  reference = np.stack(reference)
  if nan_sequence is not None:
    reference[nan_sequence] = np.nan
  noise = rng.normal(size=5000).astype(np.float32)
  return arrays.write_sequence_arrays(path, [frames] * sequences,
                                      {"audio": np.concatenate(audio), "expression_pca": np.concatenate(target)},
                                      {"reference_pca": reference}, noise=noise)


HEAD_MOTION_TEST_OVERRIDES = [
    "data.source=arrays", f"data.sample_rate={HEAD_MOTION_RATE}", "data.observed_frames=(13, 16)",
    "data.predicted_frames=(4, 8)", "model.audio_hidden=16", "model.audio_features=16", "model.pose_hidden=8",
    "model.pose_features=16", "model.encoder_channels=16", "log.every_steps=1", "log.images_every_steps=0",
    "checkpoint.every_steps=1000", "checkpoint.stop_check_every=1",
]
EXPRESSION_TEST_OVERRIDES = [
    "data.source=arrays", f"data.sample_rate={EXPRESSION_RATE}", "data.sequence_length=6",
    "model.audio_channels=(8, 16)", "model.audio_features=16", "model.reference_features=16",
    "log.every_steps=1", "log.images_every_steps=0", "checkpoint.every_steps=1000",
    "checkpoint.stop_check_every=1",
]

# The mesh and learning rate of the "whole" expression run (conftest.expression_runs), which the
# two-process run is compared with.
EXPRESSION_RUN_MESH = ("mesh.data=4", "mesh.fsdp=2", "sharding.fsdp_min_size=0")
EXPRESSION_RUN_LR = "optim.model.lr=3e-3"
