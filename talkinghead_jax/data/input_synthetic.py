"""Small decoded clips with the prepared-data feature names, made in numpy in milliseconds: the
input-pipeline tests and `talkinghead bench input` use them where a prepared SynthTalk set
would take minutes to render and prepare.

Geometry is consistent, as in a prepared set: each clip has an identity (the SynthTalk
canonical face, slightly reshaped), a mouth that opens and closes with the audio's loudness,
and a head that turns; `front` = identity + expression, `landmarks = unfrontalize(front, pose)`,
the key frame the most frontal one. Frames show a textured background with a 3×3 dot at each
landmark whose red value encodes the point (`dot_code`), so a test can check that landmarks
and pixels stay together. SynthTalk extras: gt_landmarks/gt_pose (the same), gt_canonical,
position_map/position_frames (P maps of a plane through the face), face_mask.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from talkinghead_jax.geometry import rigid

LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)
CHIN = (6, 7, 8, 9, 10)


def dot_code(point: int) -> int:
  """The red value of landmark `point`'s dot (green is 255 on dots, 0 elsewhere)."""
  return 40 + 3 * int(point)


def canonical_face(size: int) -> np.ndarray:
  from talkinghead_jax.data import synthetic  # noqa: PLC0415

  return synthetic.canonical_face(size)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  noise = rng.uniform(0, 1, (max(size // 8, 2), max(size // 8, 2), 3)).astype(np.float32)
  smooth = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
  image = 30 + 150 * np.clip(smooth, 0, 1) + rng.normal(0, 6, (size, size, 3))
  image[..., 1] = 0  # green marks the dots
  return np.clip(image, 0, 255).astype(np.uint8)


def draw_dots(image: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Paints each landmark's 3×3 dot (red = dot_code(i), green 255, blue 0) onto `image`."""
  out = image.copy()
  size = image.shape[0]
  for index, (x, y) in enumerate(np.asarray(points)[:, :2]):
    col, row = int(np.floor(x)), int(np.floor(y))
    rows = slice(max(row - 1, 0), max(min(row + 2, size), 0))
    cols = slice(max(col - 1, 0), max(min(col + 2, size), 0))
    out[rows, cols] = (dot_code(index), 255, 0)
  return out


def make_clip(index: int, *, frames: int = 32, size: int = 64, audio_rates: Sequence[int] = (4000,),
              seed: int = 0, synthtalk: bool = True, unprojection_frames: int = 2, max_yaw: float = 0.3) -> dict:
  """One decoded clip (see the module docstring); its clip_id is idNNNNN/video/00001."""
  rng = np.random.default_rng([seed, index])
  canonical = canonical_face(size).astype(np.float64)
  centre = canonical.mean(axis=0)
  identity = canonical + (canonical - centre) * rng.uniform(-0.06, 0.06) + rng.normal(0, 0.15, canonical.shape)
  times = np.arange(frames) / 25.0
  opening = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1.0, 2.5) * times + rng.uniform(0, 6)), 0, 1)
  opening[rng.integers(frames)] = 0.0  # one frame with the mouth shut
  front = np.repeat(identity[None], frames, axis=0)
  face_height = canonical[:, 1].max() - canonical[:, 1].min()
  front[:, list(LOWER_LIP), 1] += (0.12 * face_height * opening)[:, None]
  front[:, list(CHIN), 1] += (0.06 * face_height * opening)[:, None]
  angles = np.stack([max_yaw * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * times + rng.uniform(0, 6)),
                     0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * times + rng.uniform(0, 6)),
                     0.05 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * times)], axis=-1)
  # The head turns about the face centre: l = Rᵀ(front − t) with t = centre − R·centre + shift.
  rotation = rigid.rotvec_to_matrix(angles)
  shift = np.concatenate([rng.normal(0, 0.02 * size, (frames, 2)), np.zeros((frames, 1))], axis=-1)
  translation = centre - np.einsum("tij,j->ti", rotation, centre) + shift
  pose = np.concatenate([angles, translation], axis=-1).astype(np.float32)
  landmarks = rigid.unfrontalize(front.astype(np.float32), pose)
  background = _background(rng, size)
  images = np.stack([draw_dots(background, points) for points in landmarks])
  key = int(np.argmin(np.abs(angles).sum(axis=-1)))
  clip = {
      "clip_id": f"id{index + 1:05d}/video{index:06d}/00001", "identity": f"id{index + 1:05d}",
      "frames": images, "landmarks": landmarks.astype(np.float32), "detected": np.ones(frames, bool),
      "pose": pose, "front": front.astype(np.float32), "key_frame": np.int32(key), "num_frames": np.int32(frames),
  }
  loudness = 0.05 + opening
  for rate in audio_rates:
    samples = int(round(frames * rate / 25))
    t = np.arange(samples) / rate
    envelope = np.interp(t, times, loudness)
    wave = envelope * np.sin(2 * np.pi * rng.uniform(150, 300) * t) + 0.02 * rng.normal(size=samples)
    clip[f"audio_{int(rate)}"] = np.clip(wave * 12000, -32767, 32767).astype(np.int16)
  if synthtalk:
    count = max(1, int(unprojection_frames))
    others = np.linspace(0, frames - 1, count + 1).astype(np.int32)[1:count] if count > 1 else []
    position_frames = np.array([key, *others], np.int32)[:count]
    grid = (np.arange(size) + 0.5).astype(np.float32)
    plane = np.stack(np.meshgrid(grid, grid), axis=-1)
    maps = np.concatenate([np.repeat(plane[None], count, 0), np.zeros((count, size, size, 1), np.float32)], -1)
    maps += pose[position_frames, None, None, 3:] * np.float32(0.01)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    clip.update({
        "gt_landmarks": clip["landmarks"].copy(), "gt_pose": pose.copy(),
        "gt_canonical": canonical.astype(np.float32), "position_map": maps.astype(np.float32),
        "position_frames": position_frames,
        "face_mask": (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.35 * size) ** 2,
    })
  return clip


def make_clips(count: int, **options) -> list[dict]:
  return [make_clip(i, **options) for i in range(count)]


def encode_frames(clip: dict, quality: int = 95) -> dict:
  """The clip with its frames JPEG-encoded, (T,) bytes, as a prepared set stores them (quality 95,
  4:4:4 chroma)."""
  out = dict(clip)
  options = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
  encoded = [cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), options)[1] for frame in clip["frames"]]
  out["frames"] = np.array([e.tobytes() for e in encoded], dtype=object)
  return out


def pca_of(clips: Sequence[dict], num_components: int = 20):
  """The landmark PCA of the clips' frontal (x, y), as `talkinghead prepare` fits it."""
  from talkinghead_jax.geometry.pca import LandmarkPCA  # noqa: PLC0415

  fronts = np.concatenate([clip["front"][:, :, :2] for clip in clips])
  return LandmarkPCA(num_components).fit(fronts)


def write_tfds(data_dir, clips: Sequence[dict], train_count: int, num_shards: int | None = None):
  """A tfds build (tfrecord shards) of decoded clips with the prepared-data features
  (`data.tfds.features.clip_features`, JPEG frames): the first `train_count` clips in "train",
  the rest in "test". Returns the builder (its `info.splits`, `info.features`, files)."""
  import tensorflow_datasets as tfds  # noqa: PLC0415

  from talkinghead_jax.data.tfds import features as features_lib  # noqa: PLC0415

  encoded = [encode_frames(clip) for clip in clips]
  size = int(clips[0]["frames"].shape[1])
  rates = sorted(int(name[len("audio_"):]) for name in clips[0] if name.startswith("audio_"))
  synthtalk = "position_map" in clips[0]
  unprojection_frames = len(clips[0]["position_frames"]) if synthtalk else 4

  class SyntheticClips(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # it downloads nothing: no checksums file to look for beside the code

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=features_lib.clip_features(
          size, rates, synthtalk=synthtalk, unprojection_frames=unprojection_frames))

    def _split_generators(self, dl_manager):
      splits = {"train": encoded[:train_count], "test": encoded[train_count:]}
      return {name: self._generate_examples(chosen) for name, chosen in splits.items() if chosen}

    def _generate_examples(self, chosen):
      for clip in chosen:
        example = dict(clip)
        example["frames"] = [bytes(frame) for frame in clip["frames"]]  # JPEG bytes, stored as they are
        yield clip["clip_id"], example

  builder = SyntheticClips(data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=num_shards))
  return builder
