"""Φ's evaluation: metrics with known answers, baselines, normalisation, the predictor, the command."""

import json
import math
import types

import jax
import numpy as np
import pytest
from stage_clips import REPO, motion_clip, trainer_testdata, wavy_poses

from talkinghead_jax import cli
from talkinghead_jax import config as config_lib
from talkinghead_jax.data import input_common
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.eval import stage_head_motion as sh
from talkinghead_jax.eval import trained_stage
from talkinghead_jax.models.head_motion import HeadMotionLearner

RATE = 1000
AUDIO = sh.AudioSettings(sample_rate=RATE)


def test_motion_errors_known_answers():
  gt = wavy_poses(30)[None].astype(np.float64)
  degrees = np.array([180 / math.pi] * 3 + [1.0] * 3)
  shift = np.array([0.01, -0.02, 0.005, 3.0, 0.0, -1.0])
  shifted = sh.motion_errors(gt + shift, gt)
  np.testing.assert_allclose(shifted["l1"][0], np.abs(shift) * degrees, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(shifted["mean_diff"][0], np.abs(shift) * degrees, rtol=1e-4, atol=1e-4)
  for name in ("std_diff", "velocity_l1", "velocity_mean_diff", "velocity_std_diff"):
    np.testing.assert_allclose(shifted[name][0], 0.0, atol=1e-4)
  # Twice the motion about the mean: std and velocity std double, the means stay.
  mean = gt.mean(axis=1, keepdims=True)
  doubled = sh.motion_errors(mean + 2 * (gt - mean), gt)
  units = gt[0] * degrees
  velocity = np.diff(units, axis=0)
  np.testing.assert_allclose(doubled["l1"][0], np.abs(units - units.mean(0)).mean(0), rtol=1e-4)
  np.testing.assert_allclose(doubled["mean_diff"][0], 0.0, atol=1e-4)
  np.testing.assert_allclose(doubled["std_diff"][0], units.std(0), rtol=1e-4)
  np.testing.assert_allclose(doubled["velocity_l1"][0], np.abs(velocity).mean(0), rtol=1e-4)
  np.testing.assert_allclose(doubled["velocity_mean_diff"][0], np.abs(velocity.mean(0)), rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(doubled["velocity_std_diff"][0], velocity.std(0), rtol=1e-4)


def test_translations_are_rescaled_to_256_px():
  pose = np.array([[[math.pi, 0.0, -0.5, 1.0, 2.0, -4.0]], [[0.1] * 3 + [1.0, 1.0, 1.0]]])
  got = sh.translations_at_256(pose, np.array([64, 128]))
  np.testing.assert_allclose(got[0, 0], [math.pi, 0.0, -0.5, 4.0, 8.0, -16.0], rtol=1e-6)
  np.testing.assert_allclose(got[1, 0], [0.1, 0.1, 0.1, 2.0, 2.0, 2.0], rtol=1e-6)


def test_normalisation_round_trip_and_where_the_statistics_come_from():
  config = config_lib.load(str(REPO / "configs/head_motion.py:synthtalk_tiny"))
  with pytest.raises(ConfigError, match="pose_mean/pose_std are empty"):
    sh.pose_normalisation(config)
  mean, std = np.array([0.1, 0.0, 0.0, 5.0, 2.0, 1.0]), np.array([0.1, 0.2, 0.1, 3.0, 4.0, 5.0])
  normalisation = sh.pose_normalisation(config, (mean, std))
  assert normalisation.smooth_taps == 11
  pose = np.tile(np.array([0.1, -0.2, 0.05, 10.0, 3.0, -2.0], np.float32), (20, 1))
  normalised = normalisation.normalise(pose)
  np.testing.assert_allclose(normalised, (pose - mean) / std, rtol=1e-5, atol=1e-6)  # smoothing keeps a constant
  np.testing.assert_allclose(normalisation.denormalise(normalised), pose, rtol=1e-5, atol=1e-5)
  config.data.pose_mean = (0.0,) * 6  # the config's own statistics win
  config.data.pose_std = (2.0,) * 6
  np.testing.assert_allclose(sh.pose_normalisation(config, (mean, std)).denormalise(np.ones((2, 6))), 2.0)


def test_last_pose_baseline_is_exact_on_a_still_head_and_baselines_match_numpy():
  still = np.tile(np.array([0.05, 0.1, -0.02, 3.0, 1.0, 2.0], np.float32), (30, 1))
  wavy = wavy_poses(40, seed=3)
  clips = [motion_clip(still, size=32, clip_id="id00000/a/00001"),
           motion_clip(wavy, size=64, clip_id="id00001/b/00001"), motion_clip(wavy[:20], clip_id="id00002/c/00001")]
  report = sh.evaluate_head_motion(clips, {}, observed=16, predicted=8, audio=AUDIO, batch_size=3)
  assert report["windows"] == 2 and [s["clip_id"] for s in report["skipped"]] == ["id00002/c/00001"]
  rows = {row["clip_id"]: row for row in report["clips"]}
  for name in ("last_pose", "mean_pose"):
    assert all(v == pytest.approx(0.0, abs=1e-5) for v in rows["id00000/a/00001"]["l1"][name].values())
  # The wavy clip: numpy reference in report units (degrees; px × 256/64).
  scale = np.array([180 / math.pi] * 3 + [256 / 64] * 3)
  future = wavy[16:24] * scale
  last = np.abs(wavy[15] * scale - future).mean(0)
  mean = np.abs(wavy[:16].mean(0) * scale - future).mean(0)
  np.testing.assert_allclose(list(rows["id00001/b/00001"]["l1"]["last_pose"].values()), last, rtol=1e-4)
  np.testing.assert_allclose(list(rows["id00001/b/00001"]["l1"]["mean_pose"].values()), mean, rtol=1e-4)
  # The aggregate is the mean over the two windows (the still one contributes 0).
  assert report["methods"]["last_pose"]["l1"]["ry"] == pytest.approx(last[1] / 2, rel=1e-4)
  assert report["methods"]["last_pose"]["l1_rotation_deg"] == pytest.approx(last[:3].mean() / 2, rel=1e-4)
  # A still head's baselines keep its statistics: std and velocity terms are those of the truth.
  velocity = np.diff(future, axis=0)
  np.testing.assert_allclose(list(report["methods"]["last_pose"]["std_diff"].values()), future.std(0) / 2, rtol=1e-4)
  np.testing.assert_allclose(list(report["methods"]["last_pose"]["velocity_std_diff"].values()),
                             velocity.std(0) / 2, rtol=1e-4)


def test_predictors_see_audio_and_observed_poses_only():
  wavy = wavy_poses(50, seed=4)
  clip = motion_clip(wavy, sample_rate=RATE)
  seen = []

  def truthful_from_audio(audio, observed_pose):
    seen.append((audio, observed_pose))
    return np.broadcast_to(wavy[14:20], (len(audio), 6, 6))

  report = sh.evaluate_head_motion([clip], {"model": truthful_from_audio}, observed=14, predicted=6, audio=AUDIO,
                                   windows_per_clip=2)
  assert report["windows"] == 2
  audio, observed_pose = seen[0]
  # The audio windows are those of the training pipeline (frame windows smoothed over 21 frames).
  for k in range(2):
    training = input_common.smoothed_rows(
        lambda low, high: input_common.windows_for_frames(clip["audio"], RATE, 25, 3, 50, low, high), 50, 20 * k,
        20, taps=21)
    np.testing.assert_allclose(audio[k], training, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(observed_pose[1], wavy[20:34])
  # The first window's truth is frames 14..19: that one scores 0; the aggregate is half the second's.
  rows = report["clips"][0]["l1"]["model"]
  assert report["methods"]["model"]["l1"]["tx"] == pytest.approx(rows["tx"])
  second = np.abs(wavy[14:20, 3] - wavy[34:40, 3]).mean() * 256 / 32
  assert rows["tx"] == pytest.approx(second / 2, rel=1e-4)


def test_model_predictor_pads_batches_and_ignores_future_poses():
  model = HeadMotionLearner(audio_hidden=16, audio_features=8, pose_hidden=8, pose_features=8, encoder_channels=16,
                            dropout=0.0)
  observed, predicted = 13, 4
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(3, observed + predicted, 7, RATE // 25)).astype(np.float32)
  poses = np.stack([wavy_poses(observed + predicted, seed=s) for s in range(3)])
  lengths = np.array([observed]), np.array([predicted])
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), audio[:1], poses[:1], *lengths,
                                               max_observed=observed, train=False))
  variables = jax.tree_util.tree_map_with_path(
      lambda path, leaf: (rng.uniform(0.5, 1.5, leaf.shape) if "var" in jax.tree_util.keystr(path)
                          else 0.3 * rng.normal(size=leaf.shape)).astype(np.float32), abstract)
  stage = trained_stage.TrainedStage(config=None, task=types.SimpleNamespace(model=model), variables=variables,
                                     step=0, workdir=REPO)
  normalisation = sh.PoseNormalisation(mean=np.array([0.0, 0.1, 0, 1, 2, 3], np.float32),
                                       std=np.array([0.1, 0.2, 0.1, 2, 3, 4], np.float32))
  got = sh.head_motion_predictor(stage, observed, predicted, normalisation, batch_size=2)(audio, poses[:, :observed])
  inputs = np.stack([normalisation.normalise(p[:observed]) for p in poses])
  full = np.concatenate([inputs, rng.normal(size=(3, predicted, 6))], axis=1).astype(np.float32)  # future: any
  out, _ = jax.jit(lambda a, p: model.apply(variables, a, p, np.full(3, observed), np.full(3, predicted),
                                            max_observed=observed, train=False))(audio, full)
  np.testing.assert_allclose(got, normalisation.denormalise(np.asarray(out)), rtol=1e-4, atol=1e-4)


def _config(variant, arrays, testdata):
  return config_lib.load(str(REPO / f"configs/head_motion.py:{variant}"),
                         [*testdata.HEAD_MOTION_TEST_OVERRIDES, f"data.path={arrays}", "total_steps=2", "mesh.data=1",
                          "checkpoint.async_save=false"])


def _untrained_checkpoint(workdir, config):
  """A step-1 checkpoint of numpy-filled variables in a run's layout (no compilation: the
  trained few-shot run already covers the loop, the baseline only needs to load and run)."""
  from talkinghead_jax.train import checkpoint as checkpoint_lib
  from talkinghead_jax.train import state as state_lib
  from talkinghead_jax.train import tasks

  task = tasks.get_task(config)
  data = task.make_input("train", 0, 1)
  optimizers, _ = state_lib.make_optimizers(config.optim, task.groups, data.steps_per_epoch)
  abstract = jax.eval_shape(lambda: state_lib.create_state(
      *task.init_variables(jax.random.key(0), data.element_spec), optimizers, jax.random.key(1)))
  rng = np.random.default_rng(0)
  state = jax.tree_util.tree_map_with_path(
      lambda path, leaf: (rng.uniform(0.5, 1.5, leaf.shape) if "var" in jax.tree_util.keystr(path)
                          else 0.1 * rng.normal(size=leaf.shape)).astype(leaf.dtype), abstract)
  state = state.replace(step=np.int32(1))
  checkpoints = checkpoint_lib.Checkpointer(workdir / "checkpoints", async_save=False)
  checkpoints.save(1, state, data.get_state(), config)
  checkpoints.close()
  config_lib.write(config, workdir)
  return workdir


def test_command_scores_phi_against_its_baselines(tmp_path, monkeypatch, capsys):
  testdata = trainer_testdata()
  arrays = testdata.write_head_motion_arrays(tmp_path / "phi.npz")
  from talkinghead_jax.train import loop

  few_shot = tmp_path / "phi"
  loop.train(_config("synthtalk_tiny", arrays, testdata), few_shot)
  static = _untrained_checkpoint(tmp_path / "phi_static", _config("synthtalk_tiny_static", arrays, testdata))
  clips = [motion_clip(wavy_poses(30, seed=s), sample_rate=testdata.HEAD_MOTION_RATE, seed=s,
                       clip_id=f"id{s:05d}/v/00001") for s in range(3)]
  clips.append(motion_clip(wavy_poses(10), sample_rate=testdata.HEAD_MOTION_RATE, clip_id="id00009/short/00001"))
  asked = []

  def fake_source(config, split, limit=None, keys=None):
    asked.append((split, limit, keys))
    return iter([{key: clip[key] for key in (*keys, "audio") if key in clip} for clip in clips[:limit]])

  monkeypatch.setattr(trained_stage, "clip_source", fake_source)
  monkeypatch.setattr(trained_stage, "dataset_artifacts", lambda config: types.SimpleNamespace(info={"size": 32}))
  out = tmp_path / "phi.json"
  status = cli.main(["evaluate", "--stage", "head_motion", "--checkpoint", str(few_shot), "--data-dir",
                     str(tmp_path), "--baseline-checkpoint", str(static), "--out", str(out)])
  assert status == 0
  captured = capsys.readouterr()
  assert "static" in captured.out and "last_pose" in captured.out and "L1 rx" in captured.out
  assert "id00009/short/00001" in captured.err
  # Pose statistics from the train split (the configs leave them empty), once per run.
  assert asked == [("train", 256, ("pose", "num_frames"))] * 2 + [("test", None, ("clip_id", "pose", "num_frames"))]
  report = json.loads(out.read_text())
  train_poses = np.concatenate([clip["pose"] for clip in clips])
  np.testing.assert_allclose(report["checkpoint"]["model"]["pose_std"], train_poses.std(0), rtol=1e-5)
  # Default lengths: the run's largest training lengths (16 observed, 8 predicted at test sizes).
  assert report["settings"]["observed"] == 16 and report["settings"]["predicted"] == 8
  assert report["windows"] == 3 and set(report["methods"]) == {"model", "static", "last_pose", "mean_pose"}
  assert report["checkpoint"]["model"]["few_shot"] is True and report["checkpoint"]["static"]["few_shot"] is False
  for row in report["methods"].values():
    assert all(np.isfinite(row[metric][dof]) for metric in sh.METRIC_NAMES for dof in sh.DOF_NAMES)
  # The pose baselines do not depend on the networks.
  expected = sh.evaluate_head_motion(clips, {}, observed=16, predicted=8, windows_per_clip=1,
                                     audio=sh.AudioSettings(sample_rate=testdata.HEAD_MOTION_RATE))
  for name in ("last_pose", "mean_pose"):
    assert report["methods"][name]["l1"] == pytest.approx(expected["methods"][name]["l1"])
    assert report["methods"][name]["std_diff"] == pytest.approx(expected["methods"][name]["std_diff"])

  assert cli.main(["evaluate", "--stage", "head_motion", "--checkpoint", str(few_shot)]) == 1
  assert "pass --data-dir" in capsys.readouterr().err
  assert cli.main(["evaluate", "--stage", "head_motion", "--checkpoint", str(few_shot), "--data-dir", str(tmp_path),
                   "--observed", "8"]) == 1
  assert "8 observed frames are too few" in capsys.readouterr().err
