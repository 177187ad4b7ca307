"""SynthTalk's ground truth in crop coordinates: the extra features of the `synthtalk` builder.

SynthTalk's ground truth (`<clip>.npz`, docs/data.md) is in pixels of the generated frame; the
prepared clip is a crop of it, the box B = (x0, y0, side) resized to S pixels, which maps a
frame point p to p' = k·(p − o) with k = S/side, o = (x0, y0, 0) (`crop.crop_points`). This
module re-expresses the truth in crop pixels (no TensorFlow: it runs in the build's workers):

  gt_landmarks  l' = k·(l − o)
  gt_canonical  c' = k·(c − o), SynthTalk's canonical face through the same crop
  gt_pose       [R, t'] with t' = k·(t + R·o − o): from front = R·l + t,
                R·l' + t' = k·(R·l + t − o) = k·(front − o), so the frontalized crop landmarks
                are the crop image of SynthTalk's frontal landmarks, and the rotation is
                SynthTalk's own. A Kabsch fit is unchanged by scaling and shifting both point
                sets alike, so `rigid.pose_from_landmarks(gt_landmarks, gt_canonical)` = gt_pose.
  position_map  for P frames (the key frame, then evenly spaced ones): the posed, expressive
                face — `synthetic.frontal_points` of the position-map material points with that
                frame's expression, unfrontalized with its pose — in crop pixels, (P, S, S, 3);
  face_mask     the map's face texels (S, S), fixed in UV.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from talkinghead_jax.data.tfds import sources
from talkinghead_jax.errors import InputError

# Reconstructed landmarks must match the stored ones this closely (pixels of the SynthTalk
# frame); more means the set was made by another generator version.
_RECONSTRUCTION_TOLERANCE_PX = 1e-2


def position_frames(key_frame: int, num_frames: int, count: int) -> np.ndarray:
  """The key frame, then `count − 1` frames evenly spaced over the others (int32 (count,)).

  With fewer other frames than asked for, frames repeat."""
  others = np.array([f for f in range(num_frames) if f != key_frame], np.int64)
  if count <= 1 or others.size == 0:
    return np.full(max(count, 1), key_frame, np.int32)[:count]
  picks = np.round(np.linspace(0, others.size - 1, count - 1)).astype(np.int64)
  return np.concatenate([[key_frame], others[picks]]).astype(np.int32)


def crop_pose(pose: np.ndarray, box, size: int) -> np.ndarray:
  """A pose (T, 6) of frame-pixel landmarks → the pose of their crop image (module docstring)."""
  from talkinghead_jax.geometry import rigid

  pose = np.asarray(pose, np.float64)
  scale = size / box.side
  offset = np.array([box.x0, box.y0, 0.0])
  rotation = rigid.rotvec_to_matrix(pose[:, :3])
  translation = scale * (pose[:, 3:] + rotation @ offset - offset)
  return np.concatenate([pose[:, :3], translation], axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """ExampleJob.extra for SynthTalk: the clip's truth in crop coordinates. Picklable."""

  seed: int
  test_every: int
  size: int
  unprojection_frames: int

  def __call__(self, clip: sources.ClipSource, clip_landmarks, prepared) -> dict[str, Any]:
    from talkinghead_jax.data import crop
    from talkinghead_jax.data import synthetic
    from talkinghead_jax.data import synthtalk_head as head
    from talkinghead_jax.geometry import rigid

    path = clip.sidecar_path
    try:
      with np.load(path, allow_pickle=False) as archive:
        truth = {name: archive[name] for name in
                 ("landmarks", "pose", "canonical", "expression", "identity", "image_size")}
    except (OSError, ValueError, KeyError) as error:
      raise InputError(path, f"unreadable SynthTalk ground truth ({error})") from error
    frames = int(prepared.frames.shape[0])
    if truth["landmarks"].shape[0] != frames:
      raise InputError(path, f"holds {truth['landmarks'].shape[0]} frames, the video {frames}")
    box, size = clip_landmarks.box, self.size

    # The identity, rebuilt from the seed, gives the surface the position map samples.
    identity = synthetic.make_identity(self.seed, int(clip.identity[2:]) - 1, self.test_every)
    if not np.allclose(identity.shape, truth["identity"], atol=1e-6):
      raise InputError(path, "its identity does not match the one its seed makes (a set made by "
                       "another SynthTalk version?)")
    image_size = int(truth["image_size"])
    pose = truth["pose"].astype(np.float64)
    landmark_points = head.material_points(head.LANDMARK_U, head.LANDMARK_V)
    keys = position_frames(int(prepared.key_frame), frames, self.unprojection_frames)
    rebuilt = rigid.unfrontalize(
        synthetic.frontal_points(identity, landmark_points, truth["expression"][keys], image_size),
        pose[keys])
    if np.abs(rebuilt - truth["landmarks"][keys]).max() > _RECONSTRUCTION_TOLERANCE_PX:
      raise InputError(path, "its landmarks do not match the surface its seed makes (a set made "
                       "by another SynthTalk version?)")

    u, v = head.position_map_material(size)
    map_points = head.material_points(u.ravel(), v.ravel())
    posed = rigid.unfrontalize(
        synthetic.frontal_points(identity, map_points, truth["expression"][keys], image_size),
        pose[keys])
    position_map = crop.crop_points(posed, box, size).reshape(len(keys), size, size, 3)
    return {
        "gt_landmarks": crop.crop_points(truth["landmarks"], box, size).astype(np.float32),
        "gt_pose": crop_pose(pose, box, size),
        "gt_canonical": crop.crop_points(truth["canonical"], box, size).astype(np.float32),
        "position_map": position_map.astype(np.float32),
        "position_frames": keys,
        "face_mask": np.asarray(head.face_mask_material(u, v), np.bool_).reshape(size, size),
    }
