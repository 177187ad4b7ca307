"""Ψ's evaluation: targets and landmarks against numpy, LMD against a plain reference, the command."""

import json
import types

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from stage_clips import REPO, expression_clips, trainer_testdata

from talkinghead_jax import cli
from talkinghead_jax import config as config_lib
from talkinghead_jax.eval import stage_expression as se
from talkinghead_jax.eval import trained_stage
from talkinghead_jax.models.expression import ExpressionLearner

RATE = 2500


def _unfrontalize_reference(front, pose):
  """l = Rᵀ(f − t) with scipy's rotation matrices (independent of geometry.rigid)."""
  rotation = Rotation.from_rotvec(pose[:, :3].astype(np.float64)).as_matrix()
  return np.einsum("tji,tpj->tpi", rotation, front - pose[:, None, 3:])


def _lmd_reference(pred, gt, size, points):
  diff = (pred[:, points, :2] - gt[:, points, :2]) * (256.0 / size)
  return np.sqrt((diff ** 2).sum(-1)).mean(-1)


def _targets_reference(clip, pca):
  """Training targets in float64 numpy: PCA(f_t − (f_closed − m)), m the PCA's mean as (68, 2),
  the closed frame being 0."""
  points = clip["front"][..., :2].astype(np.float64)
  offset = points[0] - pca.mean_.astype(np.float64).reshape(68, 2)
  flat = (points - offset).reshape(len(points), 136) - pca.mean_
  return flat @ pca.components_.astype(np.float64).T, offset


def test_inputs_are_the_training_targets_and_invert_to_the_landmarks():
  clips, pca = expression_clips(count=2)
  clip = clips[0]
  inputs = se.expression_inputs(clip, pca, sample_rate=RATE)
  assert inputs.windows.shape == (16, 7, RATE // 25) and inputs.reference_index == 0
  targets, offset = _targets_reference(clip, pca)
  np.testing.assert_allclose(inputs.targets, targets, atol=1e-3)
  np.testing.assert_allclose(inputs.offset, offset, atol=1e-4)
  # Identity removed, the closed-mouth frame is the PCA's mean: all coefficients 0.
  np.testing.assert_allclose(inputs.targets[0], 0.0, atol=1e-3)
  np.testing.assert_allclose(inputs.reference_pca, pca.transform(clip["front"][0, :, :2]), atol=1e-4)
  # The reference frame and the undetected frame 1 are not scored.
  assert inputs.scored.sum() == 14 and not inputs.scored[0] and not inputs.scored[1]
  # Offset added back + reference z + true pose = the clip's landmarks (the PCA is exact here).
  landmarks = se.coefficients_to_landmarks(inputs.targets, inputs.offset, inputs.reference_front, inputs.pose, pca)
  np.testing.assert_allclose(landmarks, clip["landmarks"], atol=2e-3)
  at_rest = se.coefficients_to_landmarks(inputs.targets, inputs.offset, inputs.reference_front, np.zeros((16, 6)), pca)
  np.testing.assert_allclose(at_rest[..., 2], np.broadcast_to(clip["front"][0, :, 2], (16, 68)), atol=1e-5)


def test_mean_expression_coefficients_average_every_detected_frame():
  clips, pca = expression_clips(count=3)
  rows = [_targets_reference(clip, pca)[0][clip["detected"]] for clip in clips]
  np.testing.assert_allclose(se.mean_expression_coefficients(clips, pca), np.concatenate(rows).mean(0), atol=1e-4)


def test_truthful_predictor_scores_zero_and_baselines_match_a_numpy_reference():
  clips, pca = expression_clips(count=3, sizes=(32, 64))
  mean = se.mean_expression_coefficients(clips, pca)
  report = se.evaluate_expression(clips, lambda inputs: inputs.targets, pca, mean_coefficients=mean, sample_rate=RATE)
  methods = report["methods"]
  assert report["frames"] == 3 * 14 and len(report["clips"]) == 3
  for points in ("mouth", "face"):
    assert methods["model"][f"lmd_{points}"] < 1e-2
    assert methods["model"][f"lmd_{points}"] == pytest.approx(methods["pca_truth"][f"lmd_{points}"])
    for baseline in ("mean_expression", "closed_mouth"):
      assert methods[baseline][f"lmd_{points}"] > 0.5 > methods["model"][f"lmd_{points}"]

  # The baselines, recomputed with scipy rotations and plain numpy; 256/size per clip.
  sums = {"closed_mouth": {"mouth": 0.0, "face": 0.0}, "mean_expression": {"mouth": 0.0, "face": 0.0}}
  for clip in clips:
    size = clip["frames"].shape[1]
    scored = clip["detected"].copy()
    scored[0] = False
    reference = clip["front"][0].astype(np.float64)
    _, offset = _targets_reference(clip, pca)
    mean_front = reference.copy()
    mean_front[:, :2] = (mean.astype(np.float64) @ pca.components_ + pca.mean_).reshape(68, 2) + offset
    for name, front in (("closed_mouth", reference), ("mean_expression", mean_front)):
      pred = _unfrontalize_reference(np.broadcast_to(front, (16, 68, 3)), clip["pose"].astype(np.float64))
      for points, indices in (("mouth", list(range(48, 68))), ("face", list(range(68)))):
        sums[name][points] += _lmd_reference(pred, clip["landmarks"], size, indices)[scored].sum()
  for name, by_points in sums.items():
    for points, total in by_points.items():
      assert methods[name][f"lmd_{points}"] == pytest.approx(total / report["frames"], rel=1e-4)


def test_a_worse_prediction_scores_worse_in_proportion():
  # Coefficients off by δ along component 0 move the frontal x, y by δ·U₀; with no rotation
  # the landmarks move by as much: face LMD = δ·mean_p |U₀[p]|·256/size.
  clips, pca = expression_clips(count=1, frames=24, sizes=(64,))
  clip = clips[0]
  clip["pose"][:, :3] = 0.0
  clip["landmarks"] = clip["front"] - clip["pose"][:, None, 3:]
  delta = np.zeros(20, np.float32)
  delta[0] = 2.0
  report = se.evaluate_expression(clips, lambda inputs: inputs.targets + delta, pca, mean_coefficients=np.zeros(20),
                                  sample_rate=RATE)
  expected = 2.0 * np.linalg.norm(pca.components_[0].reshape(68, 2), axis=1).mean() * 256 / 64
  assert report["methods"]["model"]["lmd_face"] == pytest.approx(expected, rel=1e-3)


def test_predictor_runs_chunks_like_the_whole_clip(numpy_like_variables):
  model = ExpressionLearner(audio_channels=(4, 8), audio_features=8, reference_features=8, dropout=0.0)
  windows = np.random.default_rng(0).normal(size=(37, 7, RATE // 25)).astype(np.float32)
  reference = np.random.default_rng(1).normal(size=20).astype(np.float32)
  variables = numpy_like_variables(model, windows[None], reference[None], train=False)
  stage = trained_stage.TrainedStage(config=None, task=types.SimpleNamespace(model=model), variables=variables,
                                     step=0, workdir=REPO)
  inputs = types.SimpleNamespace(windows=windows, reference_pca=reference)
  got = se.expression_predictor(stage, chunk_frames=16)(inputs)
  whole = model.apply(variables, windows[None], reference[None], train=False)[0]
  np.testing.assert_allclose(got, np.asarray(whole), rtol=1e-4, atol=1e-5)


@pytest.fixture
def numpy_like_variables():
  def make(module, *args, **kwargs):
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
      if "var" in jax.tree_util.keystr(path):
        return rng.uniform(0.5, 1.5, size=leaf.shape).astype(leaf.dtype)
      return (0.3 * rng.normal(size=leaf.shape)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)

  return make


def test_command_scores_a_trained_checkpoint(tmp_path, monkeypatch, capsys):
  from talkinghead_jax.train import loop

  testdata = trainer_testdata()
  arrays = testdata.write_expression_arrays(tmp_path / "psi.npz")
  config = config_lib.load(str(REPO / "configs/expression.py:synthtalk_tiny"),
                           [*testdata.EXPRESSION_TEST_OVERRIDES, f"data.path={arrays}", "total_steps=2",
                            "checkpoint.async_save=false"])
  workdir = tmp_path / "run"
  loop.train(config, workdir)

  test_clips, pca = expression_clips(count=2, sample_rate=testdata.EXPRESSION_RATE)
  train_clips, _ = expression_clips(count=3, sample_rate=testdata.EXPRESSION_RATE, seed=1)
  splits = {"test": test_clips, "train": train_clips}
  asked = []

  def fake_source(config, split, limit=None, keys=None):
    asked.append((split, config.data.data_dir, config.data.builder_config, limit))
    # Only the asked-for features (and audio), as clip_records gives them: no frames.
    return iter([{key: clip[key] for key in (*keys, "audio") if key in clip} for clip in splits[split][:limit]])

  monkeypatch.setattr(trained_stage, "clip_source", fake_source)
  monkeypatch.setattr(trained_stage, "dataset_artifacts",
                      lambda config: types.SimpleNamespace(pca=pca, info={"size": 32}))
  out = tmp_path / "psi.json"
  status = cli.main(["evaluate", "--stage", "expression", "--checkpoint", str(workdir / "checkpoints" / "2"),
                     "--data-dir", str(tmp_path / "tfds"), "--set", "data.builder_config=sidecar_32",
                     "--mean-clips", "2", "--out", str(out)])
  assert status == 0
  printed = capsys.readouterr().out
  assert "closed_mouth" in printed and "mean_expression" in printed and "lmd_mouth" in printed
  data_dir = str(tmp_path / "tfds")
  assert asked == [("train", data_dir, "sidecar_32", 2), ("test", data_dir, "sidecar_32", None)]
  report = json.loads(out.read_text())
  assert report["checkpoint"]["step"] == 2 and report["frames"] == 2 * 14
  assert set(report["methods"]) == set(se.METHODS)
  assert all(np.isfinite(v) for row in report["methods"].values() for v in row.values())
  # Baselines do not depend on the model: the same as from the function.
  expected = se.evaluate_expression(test_clips, lambda inputs: inputs.targets, pca,
                                    mean_coefficients=se.mean_expression_coefficients(train_clips[:2], pca),
                                    sample_rate=testdata.EXPRESSION_RATE)
  for name in ("closed_mouth", "mean_expression", "pca_truth"):
    assert report["methods"][name]["lmd_mouth"] == pytest.approx(expected["methods"][name]["lmd_mouth"], rel=1e-5)

  # A Φ run, or no checkpoint at all: one-line errors.
  assert cli.main(["evaluate", "--stage", "head_motion", "--checkpoint", str(workdir)]) == 1
  assert "trained stage 'expression', not 'head_motion'" in capsys.readouterr().err
  assert cli.main(["evaluate", "--stage", "expression", "--checkpoint", str(tmp_path)]) == 1
  assert "not a training workdir" in capsys.readouterr().err
  assert cli.main(["evaluate", "--pred", str(tmp_path)]) == 1
  assert "--pred and --gt are required" in capsys.readouterr().err
