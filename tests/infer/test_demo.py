"""`talkinghead demo --quick` end to end, and the demo's metrics against known answers."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from talkinghead_jax.errors import TalkingHeadError
from talkinghead_jax.infer import demo

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """One `talkinghead demo --quick` in a fresh process with one CPU device (as a user runs it)."""
  out = tmp_path_factory.mktemp("demo") / "out"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "PYTHONPATH": str(REPO)}
  result = subprocess.run([sys.executable, "-m", "talkinghead_jax", "demo", "--out", str(out), "--quick"],
                          cwd=REPO, env=env, text=True, capture_output=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
  return out, result.stdout


def _finite(value):
  if isinstance(value, dict):
    return all(_finite(v) for v in value.values())
  return isinstance(value, (int, float)) and math.isfinite(value)


def test_quick_demo_writes_the_video_the_set_and_finite_metrics(demo_run):
  out, stdout = demo_run
  last = stdout.strip().splitlines()[-1]
  assert str(out) in last and str(out / "report.json") in last
  for name in ("generated.mp4", "comparison.mp4", "report.json", "checkpoints/manifest.json",
               "inputs/reference.mp4", "inputs/reference.npz", "inputs/speech.wav", "synthtalk/synthtalk.json"):
    assert (out / name).is_file(), name
  for stage in demo.STAGES:
    assert (out / "runs" / stage / "checkpoints").is_dir(), stage
  report = json.loads((out / "report.json").read_text())
  # The held-out identity is from the test split and both clips are its own.
  assert report["held_out"]["identity"] == "id00002"
  assert "/test/mp4/id00002/" in report["held_out"]["reference"]
  assert "/test/mp4/id00002/" in report["held_out"]["speech"]
  assert report["held_out"]["reference"] != report["held_out"]["speech"]
  for row in ("model", "copy_reference"):
    assert _finite(report["metrics"][row]), report["metrics"][row]
  model = report["metrics"]["model"]
  # 2-s clips: 50 frames of speech → 50 generated frames, all scored, driven by 50 motion frames.
  from talkinghead_jax import media

  frames = media.read_video(out / "generated.mp4", with_audio=False).frames
  assert frames.shape == (50, 64, 64, 3)
  assert model["frames"] == model["motion_frames"] == report["generate"]["frames"] == 50
  assert 0.0 < model["ssim"] < 1.0 and model["lmd_mouth"] > 0
  assert set(report["seconds"]) >= {"synth", "prepare", "export", "generate", "metrics", "total"}


def test_ground_truth_of_the_reference_clip_is_the_reference_itself(demo_run):
  """Known answer: the truth of the reference clip, cropped with its own box and posed against
  the set's canonical face, is what `prepare_reference` made of it; scoring it against itself
  gives SSIM 1 and zero distances, and known shifts give known errors (px at 256 = 4 × px at 64)."""
  from talkinghead_jax.infer import checkpoint_set, reference as reference_lib

  out, _ = demo_run
  checkpoints = checkpoint_set.load_checkpoint_set(out / "checkpoints")
  path = out / "inputs" / "reference.mp4"
  reference = reference_lib.prepare_reference(path, checkpoints)
  truth = demo.ground_truth(path, reference, checkpoints)
  np.testing.assert_array_equal(truth.frames, reference.frames)
  np.testing.assert_allclose(truth.landmarks, reference.landmarks, atol=1e-4)
  np.testing.assert_allclose(truth.pose, reference.pose, atol=1e-4)
  np.testing.assert_allclose(truth.front, reference.front, atol=1e-3)

  same = demo.score(reference.frames, reference.landmarks, reference.front, reference.pose, truth, 64)
  assert same["ssim"] == pytest.approx(1.0, abs=1e-6)
  for key in ("lmd_mouth", "lmd_face", "lmd_mouth_frontal", "pose_l1_rotation_deg", "pose_l1_translation_px"):
    assert same[key] == pytest.approx(0.0, abs=2e-3), key

  shifted = reference.landmarks + np.array([3.0, 4.0, 0.0], np.float32)  # 5 px at 64 → 20 px at 256
  pose = reference.pose + np.array([0, 0, 0, 2.0, 0, 0], np.float32)  # tx + 2 px at 64 → 8 px at 256
  moved = demo.score(reference.frames, shifted, reference.front, pose, truth, 64)
  assert moved["lmd_mouth"] == pytest.approx(20.0, abs=2e-3)
  assert moved["lmd_face"] == pytest.approx(20.0, abs=2e-3)
  assert moved["pose_l1"]["tx"] == pytest.approx(8.0, abs=2e-3)
  assert moved["pose_l1_translation_px"] == pytest.approx(8.0 / 3, abs=2e-3)


def test_held_out_pair_is_two_clips_of_one_video_of_a_test_identity(tmp_path):
  def clip(split, identity, video, number):
    return {"split": split, "identity": identity, "video": video, "clip": number,
            "path": f"{split}/mp4/{identity}/{video}/{number:05d}.mp4"}

  manifest = {"clips": [clip("dev", "id00001", "a", 1), clip("dev", "id00001", "a", 2),
                        clip("test", "id00002", "b", 1), clip("test", "id00002", "c", 2),
                        clip("test", "id00002", "c", 3), clip("test", "id00007", "d", 1)]}
  held_out = demo.choose_held_out(tmp_path, manifest)
  assert held_out.identity == "id00002"
  assert held_out.reference == tmp_path / "test/mp4/id00002/c/00002.mp4"
  assert held_out.speech == tmp_path / "test/mp4/id00002/c/00003.mp4"
  # Without two clips of one video, two clips of one identity; without those, an error.
  manifest["clips"] = manifest["clips"][:4]
  assert demo.choose_held_out(tmp_path, manifest).speech == tmp_path / "test/mp4/id00002/c/00002.mp4"
  manifest["clips"] = manifest["clips"][:3]
  with pytest.raises(TalkingHeadError, match="no test-split identity with two clips"):
    demo.choose_held_out(tmp_path, manifest)


def test_copy_reference_baseline_plays_the_reference_forwards_and_backwards():
  import types

  for length, expected in ((1, [0] * 7), (2, [0, 1, 0, 1, 0, 1, 0]), (4, [0, 1, 2, 3, 2, 1, 0])):
    frames = np.arange(length)
    reference = types.SimpleNamespace(num_frames=length, frames=frames, landmarks=frames, front=frames, pose=frames)
    baseline = demo.copy_reference_baseline(reference, 7)
    for key in ("frames", "landmarks", "front", "pose"):
      assert baseline[key].tolist() == expected
