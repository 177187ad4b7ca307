"""The unprojection net's samples: (frame, its posed position map, the face mask).

SynthTalk stores, per clip, the position maps of P frames (`position_frames`: the key frame,
then evenly spaced ones). A sample is one of them, drawn uniformly: the frame decoded, the map
(crop pixels), and the UV face mask as float32 {0, 1}. No augmentation (a flip would need a
mirror-symmetric UV layout). With `data.image_size` different from the stored size, the frame
and map are resized (bilinear) and the map's values scaled to the new pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import schema
from talkinghead_jax.errors import TalkingHeadError

NEEDED = ("position_map", "position_frames", "face_mask")


class UnprojectionSampler(common.StageSampler):
  stage = "unprojection"
  salt = 3
  input_features = ("frames", "position_map", "position_frames", "face_mask")

  def __init__(self, config, artifacts: common.DatasetArtifacts):
    missing = [name for name in NEEDED if name not in artifacts.features]
    if missing:
      raise TalkingHeadError(
          f"the unprojection net trains on SynthTalk (it needs ground-truth position maps); this data set has "
          f"no {', '.join(missing)} (data.dataset={config.data.get('dataset', '')!r})")
    self.stored_size = int(artifacts.info["size"])
    self.size = int(common.data_field(config.data, "image_size", 0)) or self.stored_size

  def output_spec(self):
    size = self.size
    return {
        schema.IMAGE: ((size, size, 3), np.dtype(np.uint8)),
        schema.POSITION_MAP: ((size, size, 3), np.dtype(np.float32)),
        schema.FACE_MASK: ((size, size, 1), np.dtype(np.float32)),
    }

  def sample(self, clip, rng, noise_clip=None):
    maps = clip["position_map"]
    which = int(rng.integers(len(maps)))
    image = common.decode_frames(clip["frames"], [int(clip["position_frames"][which])])[0]
    position = np.asarray(maps[which], np.float32)
    mask = np.asarray(clip["face_mask"]).astype(np.float32)
    if self.size != image.shape[0]:
      ratio = self.size / image.shape[0]
      image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
      # The map's texels are resampled like the image; its values are pixel positions, so they scale.
      position = cv2.resize(position, (self.size, self.size), interpolation=cv2.INTER_LINEAR) * ratio
      mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
    return {schema.IMAGE: image, schema.POSITION_MAP: position.astype(np.float32),
            schema.FACE_MASK: mask[..., None].astype(np.float32)}
