"""Synthetic clip records (the `data.pipelines.clip_records` layout) for the Ψ/Φ evaluation tests.

(A plain module with a unique name, imported by test_stage_expression.py and test_stage_head_motion.py.)
"""

import importlib.util
import pathlib

import numpy as np

from talkinghead_jax.geometry import rigid
from talkinghead_jax.geometry.pca import LandmarkPCA

REPO = pathlib.Path(__file__).resolve().parents[2]


def trainer_testdata():
  """tests/train/trainer_testdata.py (array files and test-size overrides of the trainer tests)."""
  spec = importlib.util.spec_from_file_location("trainer_testdata", REPO / "tests/train/trainer_testdata.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def expression_clips(count=3, frames=16, sizes=(32,), sample_rate=2500, seed=0, expression_dims=4):
  """Clips whose frontal landmarks are an identity face plus a few expression directions (x, y
  only; z stays the identity's), seen at random poses; every clip's first frame has its mouth
  shut (its inner lips meet), so it is the closed-mouth reference frame.

  Returns (clips, pca): a 20-component PCA of the frontal x, y that represents every frame's
  targets (f_t − f_0 + the PCA mean) exactly.
  """
  rng = np.random.default_rng(seed)
  directions = rng.normal(size=(expression_dims, 68, 2))
  directions[:, 48:68] *= 4.0  # mostly the mouth moves
  clips = []
  for i in range(count):
    size = sizes[i % len(sizes)]
    scale = size / 32
    identity = np.concatenate([16 + 5 * rng.normal(size=(68, 2)), 3 * rng.normal(size=(68, 1))], axis=1) * scale
    for top, bottom in ((61, 67), (62, 66), (63, 65)):
      identity[bottom, :2] = identity[top, :2]  # a shut mouth at rest
    identity[54, 0] = identity[48, 0] + 8 * scale
    amplitude = rng.normal(size=(frames, expression_dims)) * 0.5 * scale
    amplitude[0] = 0.0
    front = np.repeat(identity[None], frames, axis=0)
    front[..., :2] += np.einsum("td,dpc->tpc", amplitude, directions)
    pose = np.concatenate([0.15 * rng.normal(size=(frames, 3)), 2 * scale * rng.normal(size=(frames, 3))], axis=1)
    detected = np.ones(frames, bool)
    detected[1] = False
    clips.append(dict(
        clip_id=f"id{i:05d}/video/00001", identity=f"id{i:05d}",
        frames=np.zeros((frames, size, size, 3), np.uint8),
        landmarks=rigid.unfrontalize(front, pose).astype(np.float32), detected=detected,
        pose=pose.astype(np.float32), front=front.astype(np.float32), key_frame=np.int32(frames // 2),
        num_frames=np.int32(frames),
        audio=(0.1 * rng.normal(size=frames * sample_rate // 25)).astype(np.float32)))
  pca = LandmarkPCA(20).fit(np.concatenate([clip["front"][..., :2] for clip in clips]).reshape(-1, 136))
  return clips, pca


def motion_clip(pose, size=32, sample_rate=1000, seed=0, clip_id="id00000/video/00001"):
  """A clip record for Φ: the given (T, 6) poses, noise audio, empty frames of `size` px."""
  pose = np.asarray(pose, np.float32)
  rng = np.random.default_rng(seed)
  frames = len(pose)
  return dict(clip_id=clip_id, identity=clip_id.split("/")[0], frames=np.zeros((frames, size, size, 3), np.uint8),
              pose=pose, key_frame=np.int32(0), num_frames=np.int32(frames),
              audio=(0.1 * rng.normal(size=frames * sample_rate // 25)).astype(np.float32))


def wavy_poses(frames, seed=0):
  """(T, 6) smooth head motion: sinusoids of random phase and amplitude per dof."""
  rng = np.random.default_rng(seed)
  t = np.arange(frames)[:, None]
  amplitude = np.array([0.05, 0.1, 0.03, 2.0, 1.5, 3.0]) * rng.uniform(0.5, 1.5, size=6)
  offset = rng.normal(size=6) * np.array([0.02, 0.02, 0.02, 1.0, 1.0, 1.0])
  return (amplitude * np.sin(0.3 * t + rng.uniform(0, 6, size=6)) + offset).astype(np.float32)
