"""Θ's samples: K references, a target, the matched reference, the key frame (UPSTREAM_NOTES
§2.5, §2.14, §3.10).

Sampling (upstream's `FaceForeDataset`, `ref_ratio` = `data.ref_ratio`, 0.25): the K
references are drawn without replacement from the first max(K, ⌊ref_ratio·T⌋) frames, the
target from the rest; with ref_ratio 0 the references are the first K frames. The motion
matcher (`geometry.matching`, rule `data.matching`: "auto" = "train" on the train split,
"test" otherwise) picks the warping reference.

Augmentation (train split, `data.augment`), applied to the already-cropped frames:
- a random landmark-centred zoom and shift, one for the references (anchored on the first
  reference's landmarks) and one for the target and key frame, as upstream crops references
  and target separately: with m the landmark box centre and w its width, scale s ∈
  U(data.crop_scale) and shift j ∈ U(±data.crop_shift)², the frame is resampled under
  p' = (p − m − j·w)/s + m (bilinear, black outside). Upstream cuts a new crop of side
  2·w·s around the shifted centre from the full frame (scale drawn per axis); ours is the
  isotropic version on the 256 crop, so poses stay rigid (below);
- a horizontal flip with probability `data.flip_prob` (0.5), the same for the whole sample.
Landmarks, poses and frontal landmarks follow the images exactly. Under p' = σ·p + c (z scaled
by σ too) a pose [R, t] becomes [R, σ·t − R·c] against the σ-scaled frontal space, so
frontalize(l', pose') = σ·front. A flip of an S-pixel image maps x → S − x and renames the
points with the iBUG mirror permutation (`MIRROR_68`); the frontal space is mirrored about the
canonical face's plane x = a/2 (a = 2·mean x of the σ-scaled canonical face), so with M =
diag(−1, 1, 1): R' = M·R·M (rotation vector (x, −y, −z)), t' = M·t + a·e_x − S·R'·e_x,
front' = M·front + a·e_x, and frontalize(l', pose') = front' still holds (tested).

Landmark images are drawn with `geometry.landmarks.draw_landmark_images` (upstream's synthetic
forehead included); `rendered_label` is the landmark image of the rendered 3D face, the key
frame's frontal landmarks at the target pose (upstream's `ani_lmark`). `key_position_map` (on
request, SynthTalk) is the key frame's stored position map with its values moved like the
target's pixels; a flip also mirrors its UV grid left-right, which keeps the mesh's triangle
winding. `mouth_box` is 1 in the box ±5 px (at 256 px; scaled with the size) around
points 48, 50, 51, 54, 57 of the target (upstream's `tgt_template`). With `data.flow_gt`, the
ground-truth flow target ← warping_ref and its confidence come from `data.flow` (DIS).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import schema
from talkinghead_jax.errors import ConfigError, TalkingHeadError
from talkinghead_jax.geometry import landmarks as landmarks_lib
from talkinghead_jax.geometry import matching, rigid

# iBUG-68 point i of a face is point MIRROR_68[i] of its mirror image.
MIRROR_68 = np.array(
    [*range(16, -1, -1),  # jaw
     *range(26, 21, -1), *range(21, 16, -1),  # brows
     27, 28, 29, 30,  # nose bridge
     35, 34, 33, 32, 31,  # nostrils
     45, 44, 43, 42, 47, 46,  # right eye <- left eye
     39, 38, 37, 36, 41, 40,  # left eye <- right eye
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip
     64, 63, 62, 61, 60, 67, 66, 65],  # inner lip
    dtype=np.int64)
MOUTH_BOX_POINTS = (48, 50, 51, 54, 57)
MOUTH_BOX_MARGIN_256 = 5.0
_MIRROR = np.array([-1.0, 1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class Similarity:
  """p' = scale·p + offset on image x, y (pixels); z' = scale·z."""

  scale: float = 1.0
  offset: tuple[float, float] = (0.0, 0.0)

  def points(self, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64)
    out = points * self.scale
    out[..., 0] += self.offset[0]
    out[..., 1] += self.offset[1]
    return out

  def image_matrix(self, flip_size: float | None = None) -> np.ndarray:
    """The 2×3 pixel map of the images, followed by a left-right flip of a `flip_size` image."""
    matrix = np.array([[self.scale, 0.0, self.offset[0]], [0.0, self.scale, self.offset[1]]])
    if flip_size is not None:
      matrix[0] = [-self.scale, 0.0, flip_size - self.offset[0]]
    return matrix

  def pose(self, pose: np.ndarray) -> np.ndarray:
    """[R, t] -> [R, σ·t − R·c] (see the module docstring)."""
    pose = np.asarray(pose, np.float64)
    rotation = rigid.rotvec_to_matrix(pose[..., :3])
    shift = np.array([self.offset[0], self.offset[1], 0.0])
    translation = self.scale * pose[..., 3:] - rotation @ shift
    return np.concatenate([pose[..., :3], translation], axis=-1)


def jitter(points: np.ndarray, rng: np.random.Generator, scale_range: Sequence[float], shift: float,
           resize: float) -> Similarity:
  """The landmark-centred zoom and shift (module docstring), followed by a resize factor."""
  xy = np.asarray(points, np.float64)[:, :2]
  centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
  width = float(xy[:, 0].max() - xy[:, 0].min())
  scale = float(rng.uniform(scale_range[0], scale_range[1]))
  moved = centre + rng.uniform(-shift, shift, size=2) * width
  offset = resize * (centre - moved / scale)
  return Similarity(resize / scale, (float(offset[0]), float(offset[1])))


def flip_points(points: np.ndarray, size: float) -> np.ndarray:
  """Landmarks (..., 68, 3) of an image flipped left-right: x → size − x, points renamed."""
  out = np.array(points, np.float64)[..., MIRROR_68, :]
  out[..., 0] = size - out[..., 0]
  return out


def flip_front(front: np.ndarray, mirror_x: float) -> np.ndarray:
  """Frontal landmarks mirrored about the plane x = mirror_x, points renamed."""
  out = np.array(front, np.float64)[..., MIRROR_68, :]
  out[..., 0] = 2.0 * mirror_x - out[..., 0]
  return out


def flip_pose(pose: np.ndarray, size: float, mirror_x: float) -> np.ndarray:
  """The pose of flipped landmarks against the mirrored frontal space (module docstring)."""
  pose = np.asarray(pose, np.float64)
  rotvec = pose[..., :3] * _MIRROR * -1.0  # M·R·M has rotation vector −M·ω = (x, −y, −z)
  rotation = rigid.rotvec_to_matrix(rotvec)
  translation = pose[..., 3:] * _MIRROR
  translation[..., 0] += 2.0 * mirror_x
  translation = translation - size * rotation[..., :, 0]
  return np.concatenate([rotvec, translation], axis=-1)


def mouth_box_mask(points: np.ndarray, size: int, margin: float) -> np.ndarray:
  """(size, size) float32: 1 on the pixels whose centres lie in the box ±margin around the
  mouth points 48, 50, 51, 54, 57."""
  xy = np.asarray(points, np.float64)[list(MOUTH_BOX_POINTS), :2]
  low, high = xy.min(axis=0) - margin, xy.max(axis=0) + margin
  centres = np.arange(size) + 0.5
  cols = (centres >= low[0]) & (centres <= high[0])
  rows = (centres >= low[1]) & (centres <= high[1])
  return (rows[:, None] & cols[None, :]).astype(np.float32)


class GeneratorSampler(common.StageSampler):
  """One (references, target) sample of a clip (see the module docstring)."""

  stage = "generator"
  salt = 4
  input_features = ("frames", "landmarks", "pose", "front", "key_frame", "num_frames")

  def __init__(self, config, artifacts: common.DatasetArtifacts, split: str):
    data = config.data
    self.num_references = int(common.data_field(data, "num_references", 8))
    if self.num_references < 1:
      raise ConfigError(f"data.num_references must be >= 1, got {self.num_references}")
    self.ref_ratio = float(common.data_field(data, "ref_ratio", 0.25))
    if not 0.0 <= self.ref_ratio < 1.0:
      raise ConfigError(f"data.ref_ratio must be in [0, 1), got {self.ref_ratio}")
    rule = str(common.data_field(data, "matching", "auto"))
    self.rule = ("train" if split == "train" else "test") if rule == "auto" else rule
    if self.rule not in matching.RULES:
      raise ConfigError(f"data.matching must be 'auto', 'train' or 'test', got {rule!r}")
    self.worst_prob = float(common.data_field(data, "worst_ref_prob", matching.WORST_PROB))
    self.augment = bool(common.data_field(data, "augment", True)) and split == "train"
    self.flip_prob = float(common.data_field(data, "flip_prob", 0.5))
    self.crop_scale = tuple(float(v) for v in common.data_field(data, "crop_scale", (0.8, 1.2)))
    self.crop_shift = float(common.data_field(data, "crop_shift", 0.2))
    if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1]:
      raise ConfigError(f"data.crop_scale must be (low, high) with 0 < low <= high, got {self.crop_scale}")
    self.flow_gt = bool(common.data_field(data, "flow_gt", False))
    self.stored_size = int(artifacts.info["size"])
    self.size = int(common.data_field(data, "image_size", 0)) or self.stored_size
    self.resize = self.size / self.stored_size
    self.canonical_x = float(np.mean(np.asarray(artifacts.canonical, np.float64)[:, 0]))
    self.mouth_margin = MOUTH_BOX_MARGIN_256 * self.size / 256.0
    self.min_frames = self.num_references + 1
    model = config.get("model", None) or {}
    self.key_position_map = (bool(common.data_field(data, "key_position_map", False))
                             or model.get("position_source", "") == "ground_truth")
    if self.key_position_map:
      missing = [k for k in ("position_map", "position_frames") if k not in artifacts.features]
      if missing:
        raise TalkingHeadError(f"the key frame's position map (model.position_source=ground_truth) needs a data set "
                               f"with stored position maps (SynthTalk); this one has no {', '.join(missing)}")
      self.input_features = (*self.input_features, "position_map", "position_frames")

  def output_spec(self):
    k, s = self.num_references, self.size
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    spec = {
        schema.REF_IMAGE: ((k, s, s, 3), u8), schema.REF_LABEL: ((k, s, s, 1), f32), schema.REF_POSE: ((k, 6), f32),
        schema.TGT_IMAGE: ((s, s, 3), u8), schema.TGT_LABEL: ((s, s, 1), f32), schema.TGT_POSE: ((6,), f32),
        schema.TGT_LANDMARKS: ((68, 3), f32),
        schema.WARPING_REF: ((s, s, 3), u8), schema.WARPING_REF_LABEL: ((s, s, 1), f32),
        schema.KEY_IMAGE: ((s, s, 3), u8), schema.KEY_FRONT: ((68, 3), f32), schema.KEY_POSE: ((6,), f32),
        schema.MOUTH_BOX: ((s, s, 1), f32), schema.RENDERED_LABEL: ((s, s, 1), f32),
    }
    if self.key_position_map:
      spec[schema.KEY_POSITION_MAP] = ((s, s, 3), f32)
    if self.flow_gt:
      spec[schema.FLOW_REF] = ((s, s, 2), f32)
      spec[schema.FLOW_REF_CONFIDENCE] = ((s, s, 1), f32)
    return spec

  def reference_window(self, frames: int) -> int:
    """References come from frames [0, w), targets from [w, frames): w = max(K, ⌊ref_ratio·T⌋)
    (at most T − 1), or K with ref_ratio 0."""
    k = self.num_references
    if self.ref_ratio <= 0:
      return k
    return min(max(k, int(self.ref_ratio * frames)), frames - 1)

  def choose_references(self, frames: int, rng: np.random.Generator) -> np.ndarray:
    """K sorted reference frame indices from the reference window (the first K with ref_ratio 0)."""
    k = self.num_references
    if self.ref_ratio <= 0:
      return np.arange(k)
    return np.sort(rng.choice(self.reference_window(frames), size=k, replace=False))

  def choose_frames(self, frames: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(K reference frame indices, target frame index)."""
    refs = self.choose_references(frames, rng)
    return refs, int(rng.integers(self.reference_window(frames), frames))

  def _key_position_map(self, clip, key: int, sim: Similarity, flip: bool) -> np.ndarray:
    """The key frame's stored map at the output size, its values moved like the target's pixels."""
    stored = np.flatnonzero(np.asarray(clip["position_frames"]) == key)
    if not len(stored):
      raise TalkingHeadError(f"the clip stores no position map of its key frame {key}")
    uv_map = np.asarray(clip["position_map"][stored[0]], np.float32)
    if uv_map.shape[0] != self.size:  # the UV grid at the output size
      uv_map = cv2.resize(uv_map, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
    moved = sim.points(uv_map)
    if flip:
      moved[..., 0] = self.size - moved[..., 0]
      moved = moved[:, ::-1]
    return np.ascontiguousarray(moved, dtype=np.float32)

  def sample(self, clip, rng, noise_clip=None):
    refs, target = self.choose_frames(int(clip["num_frames"]), rng)
    return self.sample_frames(clip, refs, target, rng)

  def sample_frames(self, clip, refs: Sequence[int], target: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The sample with these references and this target (evaluation picks them itself); `rng`
    draws the rest (the train-rule matcher's coin, augmentation), nothing with neither."""
    lmk = np.asarray(clip["landmarks"], np.float64)
    pose = np.asarray(clip["pose"], np.float64)
    front = np.asarray(clip["front"], np.float64)
    key = int(clip["key_frame"])
    refs, target = np.asarray(refs, np.int64), int(target)
    match = matching.select_reference(pose[refs], pose[target], self.rule, rng, self.worst_prob)

    flip = False
    ref_sim = tgt_sim = Similarity(self.resize)
    if self.augment:
      flip = bool(rng.random() < self.flip_prob)
      ref_sim = jitter(lmk[refs[0]], rng, self.crop_scale, self.crop_shift, self.resize)
      tgt_sim = jitter(lmk[target], rng, self.crop_scale, self.crop_shift, self.resize)

    images = common.decode_frames(clip["frames"], [*refs, target, key])
    # One warp per image does the zoom, the shift and the flip.
    flip_size = self.size if flip else None
    ref_images = common.warp_images(images[:-2], ref_sim.image_matrix(flip_size), self.size)
    tgt_images = common.warp_images(images[-2:], tgt_sim.image_matrix(flip_size), self.size)
    ref_lmk, tgt_lmk = ref_sim.points(lmk[refs]), tgt_sim.points(lmk[target])
    ref_pose, tgt_pose, key_pose = ref_sim.pose(pose[refs]), tgt_sim.pose(pose[target]), tgt_sim.pose(pose[key])
    key_front = tgt_sim.scale * front[key]
    if flip:
      ref_mirror, tgt_mirror = ref_sim.scale * self.canonical_x, tgt_sim.scale * self.canonical_x
      ref_lmk, tgt_lmk = flip_points(ref_lmk, self.size), flip_points(tgt_lmk, self.size)
      ref_pose = flip_pose(ref_pose, self.size, ref_mirror)
      tgt_pose, key_pose = flip_pose(tgt_pose, self.size, tgt_mirror), flip_pose(key_pose, self.size, tgt_mirror)
      key_front = flip_front(key_front, tgt_mirror)

    rendered_lmk = rigid.unfrontalize(key_front, tgt_pose)  # the key face re-posed to the target
    labels = landmarks_lib.draw_landmark_images(np.concatenate([ref_lmk, tgt_lmk[None], rendered_lmk[None]]),
                                                self.size)[..., None]
    out = {
        schema.REF_IMAGE: ref_images, schema.REF_LABEL: labels[:-2],
        schema.REF_POSE: ref_pose.astype(np.float32),
        schema.TGT_IMAGE: tgt_images[0], schema.TGT_LABEL: labels[-2],
        schema.TGT_POSE: tgt_pose.astype(np.float32), schema.TGT_LANDMARKS: tgt_lmk.astype(np.float32),
        schema.WARPING_REF: ref_images[match], schema.WARPING_REF_LABEL: labels[match],
        schema.KEY_IMAGE: tgt_images[1], schema.KEY_FRONT: key_front.astype(np.float32),
        schema.KEY_POSE: key_pose.astype(np.float32),
        schema.MOUTH_BOX: mouth_box_mask(tgt_lmk, self.size, self.mouth_margin)[..., None],
        schema.RENDERED_LABEL: labels[-1],
    }
    if self.key_position_map:
      out[schema.KEY_POSITION_MAP] = self._key_position_map(clip, key, tgt_sim, flip)
    if self.flow_gt:
      from talkinghead_jax.data import flow  # noqa: PLC0415 (OpenCV's DIS, only when asked for)

      source, target_image = out[schema.WARPING_REF], out[schema.TGT_IMAGE]
      flow_field = flow.dis_flow(source, target_image)
      out[schema.FLOW_REF] = flow_field.astype(np.float32)
      out[schema.FLOW_REF_CONFIDENCE] = flow.flow_confidence(source, target_image, flow_field)[..., None].astype(
          np.float32)
    return out
