"""The tfds feature spec of a prepared clip (one example per clip).

Decoded names, shapes and dtypes (T frames, S the crop size, P the unprojection frames):

    clip_id () str, identity () str, frames (T, S, S, 3) uint8 (JPEG in storage),
    landmarks (T, 68, 3) f32, detected (T,) bool, pose (T, 6) f32, front (T, 68, 3) f32,
    key_frame () int32, audio_<rate> (T·rate/25,) int16 per configured rate, num_frames () int32;
    SynthTalk only: gt_landmarks (T, 68, 3) f32, gt_pose (T, 6) f32, gt_canonical (68, 3) f32,
    position_map (P, S, S, 3) f32, position_frames (P,) int32, face_mask (S, S) bool.

Frames are JPEG (`examples.jpeg_frames`: quality 95, no chroma subsampling).
Variable-length arrays are stored as raw bytes (tfds `Encoding.BYTES`): 2 bytes per audio
sample instead of a varint list, and no per-value overhead for the landmarks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from talkinghead_jax.data.tfds.examples import audio_feature_name

NUM_POINTS = 68


def _array(shape, dtype, encoding=tfds.features.Encoding.BYTES) -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=encoding)


def clip_features(size: int, audio_rates: Sequence[int], *, synthtalk: bool = False,
                  unprojection_frames: int = 4) -> tfds.features.FeaturesDict:
  """The FeaturesDict of one prepared clip (see the module docstring)."""
  spec = {
      "clip_id": tfds.features.Text(),
      "identity": tfds.features.Text(),
      "frames": tfds.features.Video(shape=(None, size, size, 3), encoding_format="jpeg"),
      "landmarks": _array((None, NUM_POINTS, 3), np.float32),
      "detected": _array((None,), np.bool_),
      "pose": _array((None, 6), np.float32),
      "front": _array((None, NUM_POINTS, 3), np.float32),
      "key_frame": tfds.features.Scalar(dtype=np.int32),
      "num_frames": tfds.features.Scalar(dtype=np.int32),
  }
  for rate in audio_rates:
    spec[audio_feature_name(rate)] = _array((None,), np.int16)
  if synthtalk:
    frames = int(unprojection_frames)
    spec.update({
        "gt_landmarks": _array((None, NUM_POINTS, 3), np.float32),
        "gt_pose": _array((None, 6), np.float32),
        "gt_canonical": _array((NUM_POINTS, 3), np.float32),
        # Position maps are smooth surfaces: zlib roughly halves them.
        "position_map": _array((frames, size, size, 3), np.float32, tfds.features.Encoding.ZLIB),
        "position_frames": _array((frames,), np.int32),
        "face_mask": _array((size, size), np.bool_, tfds.features.Encoding.ZLIB),
    })
  return tfds.features.FeaturesDict(spec)
