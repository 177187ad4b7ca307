"""Ψ's samples: L-frame windows of audio, target expression PCA and the reference PCA.

Targets (UPSTREAM_NOTES §2.1, models/expression.py): the PCA works on the frontal landmarks'
(x, y). The clip's *reference* frame is its closed-mouth frame (minimum mouth-open rate,
`mouth_open_rate`); its frontal landmarks minus the template face are the clip's *identity
offset*. The template is the landmark PCA's mean (upstream used one GRID speaker's landmarks):
identity-free landmarks then lie around the PCA's origin, and a closed mouth of the average
face has coefficients 0. Per frame:

    expression_pca = pca.transform(front[t, :, :2] − offset)     (identity removed)
    reference_pca  = pca.transform(front[closed, :, :2])         (identity kept: Ψ's input)

and at inference `models.expression.expression_to_landmarks(coeffs, mean, components, offset)`
puts the identity back. `expression_targets` computes all three for a whole clip.

Noise (`noise`, only when the task mixes noise): (L + C − 1)·S samples to mix into the
window's audio. No noise recordings ship, so by default it is *babble*: the audio of another
clip of the split (`EpochPlan.noise_clip_at`) from a random offset; with `data.noise_dir` it
is cut from the .wav/.flac/.mp3 files of that folder instead.
"""

from __future__ import annotations

import pathlib
from typing import Mapping

import numpy as np

from talkinghead_jax.audio import load_audio, samples_per_frame
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import schema
from talkinghead_jax.errors import ConfigError, InputError, TalkingHeadError

NOISE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


def mouth_open_rate(front: np.ndarray) -> np.ndarray:
  """(T, 68, ≥2) -> (T,): mean inner-lip gap (pairs 61–67, 62–66, 63–65) over mouth width (48–54)."""
  front = np.asarray(front, np.float64)
  gap = np.mean([np.linalg.norm(front[:, top, :2] - front[:, bottom, :2], axis=-1)
                 for top, bottom in ((61, 67), (62, 66), (63, 65))], axis=0)
  width = np.linalg.norm(front[:, 54, :2] - front[:, 48, :2], axis=-1)
  return gap / np.maximum(width, 1e-6)


def closed_mouth_frame(front: np.ndarray) -> int:
  """The clip's reference frame: the least open mouth (the first such frame on ties)."""
  return int(np.argmin(mouth_open_rate(front)))


def expression_targets(front: np.ndarray, pca) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Whole-clip targets: (expression_pca (T, P), reference_pca (P,), identity offset (68, D))."""
  dims = pca.feature_shape_[-1] if pca.feature_shape_ else 2
  points = np.asarray(front, np.float32)[..., :dims]
  closed = closed_mouth_frame(points)
  offset = points[closed] - pca.mean_.reshape(points.shape[1:])
  return (pca.transform(points - offset).astype(np.float32), pca.transform(points[closed]).astype(np.float32),
          offset)


def load_noise_files(folder: str, sample_rate: int) -> list[np.ndarray]:
  """Every audio file of `folder` (sorted by name), mono float32 at `sample_rate`."""
  path = pathlib.Path(folder)
  if not path.is_dir():
    raise InputError(path, "data.noise_dir is not a folder")
  files = sorted(p for p in path.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES)
  if not files:
    raise InputError(path, f"no noise recordings ({', '.join(NOISE_SUFFIXES)}) in data.noise_dir")
  return [load_audio(file, sample_rate) for file in files]


class ExpressionSampler(common.StageSampler):
  """A window of `data.sequence_length` frames from a random start (see the module docstring)."""

  stage = "expression"
  salt = 1

  def __init__(self, config, artifacts: common.DatasetArtifacts, *, mix_noise: bool | None = None):
    data = config.data
    self.length = int(data.sequence_length)
    self.chunks = int(common.data_field(data, "context_frames", 7))
    if self.chunks < 1 or self.chunks % 2 == 0:
      raise ConfigError(f"data.context_frames must be odd and positive, got {self.chunks}")
    self.fps = int(common.data_field(data, "fps", 25))
    self.sample_rate = int(data.sample_rate)
    self.samples = samples_per_frame(self.sample_rate, self.fps)
    self.pca = artifacts.pca
    self.num_coeffs = int(self.pca.components_.shape[0])
    expected = int(config.model.get("num_coeffs", self.num_coeffs)) if "model" in config else self.num_coeffs
    if expected != self.num_coeffs:
      raise ConfigError(f"model.num_coeffs is {expected}, the data set's landmark PCA has {self.num_coeffs}")
    self.audio_feature, self.stored_rate = common.audio_source(artifacts.features, self.sample_rate)
    if mix_noise is None:
      augment = config.get("augment", {})
      mix_noise = bool(tuple(augment.get("snr_db", ()))) and float(augment.get("noise_probability", 0)) > 0
    self.mix_noise = bool(mix_noise)
    self.noise_length = (self.length + self.chunks - 1) * self.samples
    noise_dir = str(common.data_field(data, "noise_dir", ""))
    self.noise_files = load_noise_files(noise_dir, self.sample_rate) if self.mix_noise and noise_dir else None
    self.input_features = ("front", "num_frames", self.audio_feature)
    self.noise_features = (self.audio_feature,) if self.mix_noise and self.noise_files is None else ()
    self.min_frames = self.length

  def output_spec(self):
    spec = {
        schema.AUDIO: ((self.length, self.chunks, self.samples), np.dtype(np.float32)),
        schema.EXPRESSION_PCA: ((self.length, self.num_coeffs), np.dtype(np.float32)),
        schema.REFERENCE_PCA: ((self.num_coeffs,), np.dtype(np.float32)),
    }
    if self.mix_noise:
      spec[schema.NOISE] = ((self.noise_length,), np.dtype(np.float32))
    return spec

  def _audio(self, clip: Mapping[str, np.ndarray]) -> np.ndarray:
    return common.clip_audio(clip[self.audio_feature], self.stored_rate, self.sample_rate)

  def sample(self, clip, rng, noise_clip=None):
    frames = int(clip["num_frames"])
    if frames < self.length:
      raise TalkingHeadError(f"a clip of {frames} frames is shorter than the window of {self.length}")
    start = int(rng.integers(0, frames - self.length + 1))
    audio = self._audio(clip)
    windows = common.windows_for_frames(audio, self.sample_rate, self.fps, self.chunks // 2, frames, start,
                                        start + self.length)
    target, reference, _ = expression_targets(clip["front"][:frames], self.pca)
    out = {schema.AUDIO: windows, schema.EXPRESSION_PCA: target[start:start + self.length],
           schema.REFERENCE_PCA: reference}
    if self.mix_noise:
      if self.noise_files is not None:
        source = self.noise_files[int(rng.integers(len(self.noise_files)))]
      else:
        if noise_clip is None:
          raise TalkingHeadError("babble noise needs a second clip")
        source = self._audio(noise_clip)
      out[schema.NOISE] = common.noise_segment(source, self.noise_length, rng)
    return out
