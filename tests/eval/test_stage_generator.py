"""Θ's evaluation (eval/stage_generator.py): deterministic samples from the training sampler,
metric aggregation against numpy/scikit-image, the warped-reference baseline against `warp`,
evaluation-mode batches, and the `evaluate --stage generator` command."""

import importlib.util
import json
import pathlib
import shutil

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from talkinghead_jax import cli
from talkinghead_jax.data import input_common, input_synthetic
from talkinghead_jax.eval import stage_generator as sg
from talkinghead_jax.eval import trained_stage
from talkinghead_jax.geometry import matching

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZE = 32
FRAMES = 16


def _testdata():
  """tests/train/generator_testdata.py (Θ's test-size configs and checkpoints)."""
  spec = importlib.util.spec_from_file_location("generator_testdata", REPO / "tests/train/generator_testdata.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _clips(count=3, frames=FRAMES, seed=7):
  return input_synthetic.make_clips(count, frames=frames, size=SIZE, audio_rates=(4000,), seed=seed, synthtalk=True,
                                    unprojection_frames=2)


def _artifacts(clips):
  return input_common.DatasetArtifacts(canonical=input_synthetic.canonical_face(SIZE), pca=None,
                                       info={"size": SIZE, "audio_rates": (4000,), "fps": 25},
                                       features=frozenset(clips[0]))


def _sampler(clips, *overrides):
  config = _testdata().generator_config("data.augment=true", "data.matching=train", *overrides)
  return sg.evaluation_sampler(config, _artifacts(clips))


def test_target_frames_known_answers():
  np.testing.assert_array_equal(sg.target_frames(100, 25, 8), [25, 36, 46, 57, 67, 78, 88, 99])
  np.testing.assert_array_equal(sg.target_frames(30, 27, 8), [27, 28, 29])  # fewer frames than asked
  np.testing.assert_array_equal(sg.target_frames(30, 7, 1), [7])
  assert len(sg.target_frames(10, 10, 4)) == 0
  with pytest.raises(ValueError):
    sg.target_frames(10, 2, 0)


def test_samples_are_deterministic_test_rule_and_unaugmented():
  clips = _clips()
  sampler = _sampler(clips)  # the run's config asks for augmentation and the train rule: evaluation drops both
  assert sampler.rule == "test" and not sampler.augment and not sampler.flow_gt
  window = sampler.reference_window(FRAMES)
  assert window == max(2, int(0.25 * FRAMES))
  for clip in clips:
    first, again = (sg.clip_samples(sampler, clip, frames_per_clip=3, seed=5) for _ in range(2))
    np.testing.assert_array_equal(first.references, again.references)
    np.testing.assert_array_equal(first.targets, [4, 10, 15])  # round(linspace(4, 15, 3))
    assert len(set(first.references)) == 2 and first.references.max() < window
    for a, b in zip(first.samples, again.samples):
      assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for target, sample in zip(first.targets, first.samples):
      matched = first.references[matching.nearest_reference(clip["pose"][first.references], clip["pose"][target])]
      np.testing.assert_array_equal(sample["tgt_image"], clip["frames"][target])  # no zoom, shift or flip
      np.testing.assert_array_equal(sample["warping_ref"], clip["frames"][matched])
      np.testing.assert_array_equal(sample["ref_image"], clip["frames"][first.references])
  # References depend on the seed and the clip's name, not on its position in the split.
  drawn = {tuple(sg.clip_samples(sampler, clip, 1, seed=s).references) for clip in clips for s in range(4)}
  assert len(drawn) > 1
  short = dict(clips[0], num_frames=np.int32(2))
  assert sg.clip_samples(sampler, short, 3).samples == []


def _fake_predict(batch):
  """Θ as a fixed perturbation of the target; the baselines from the batch's own images."""
  target = batch["tgt_image"].astype(np.int16)
  noise = np.stack([np.random.default_rng(int(row.sum())).integers(-20, 21, row.shape) for row in target])
  return {"model": np.clip(target + noise, 0, 255).astype(np.uint8),
          "warped_reference": np.clip(target + 2 * noise, 0, 255).astype(np.uint8),
          "reference": batch["warping_ref"], "rendered_face": np.zeros_like(batch["tgt_image"])}


def test_metrics_aggregate_as_numpy_over_frames_and_clips():
  clips = _clips()
  clips.append(dict(input_synthetic.make_clip(9, frames=2, size=SIZE, seed=7)))  # too short: skipped
  sampler = _sampler(clips)
  l1 = lambda a, b: np.abs(a.astype(np.float64) - b).mean(axis=(1, 2, 3))  # noqa: E731  (LPIPS stand-in)
  scorer = sg.frame_scorer(lpips=l1, batch_size=4)
  report = sg.evaluate_generator(iter(clips), sampler, _fake_predict, frames_per_clip=3, batch_size=4, seed=1,
                                 scorer=scorer)
  assert report["frames"] == 9 and len(report["clips"]) == 3
  assert [s["clip_id"] for s in report["skipped"]] == [clips[-1]["clip_id"]]
  expected = {method: {"ssim": [], "psnr": [], "lpips": []} for method in sg.METHODS}
  for clip, row in zip(clips, report["clips"]):
    chosen = sg.clip_samples(sampler, clip, 3, seed=1)
    assert row["targets"] == chosen.targets.tolist() and row["references"] == chosen.references.tolist()
    images = _fake_predict({k: np.stack([s[k] for s in chosen.samples]) for k in ("tgt_image", "warping_ref")})
    truth = clip["frames"][chosen.targets]
    np.testing.assert_array_equal(images["reference"], clip["frames"][row["matched_reference"]])
    for method in sg.METHODS:
      ssim = [structural_similarity(p, t, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255) for p, t in zip(images[method], truth)]
      mse = ((images[method].astype(np.float64) - truth) ** 2).mean(axis=(1, 2, 3))
      values = {"ssim": ssim, "psnr": 10 * np.log10(255.0 ** 2 / mse), "lpips": l1(images[method], truth)}
      for metric, value in values.items():
        assert row["metrics"][method][metric] == pytest.approx(np.mean(value), rel=1e-4, abs=1e-4)
        expected[method][metric].extend(value)
  for method in sg.METHODS:
    for metric in sg.METRICS:
      assert report["methods"][method][metric] == pytest.approx(np.mean(expected[method][metric]), rel=1e-4, abs=1e-4)
  assert report["methods"]["model"]["ssim"] > report["methods"]["warped_reference"]["ssim"]
  table = sg.format_table(report)
  assert "warped_reference" in table and "LPIPS" in table
  again = sg.evaluate_generator(iter(clips), sampler, _fake_predict, frames_per_clip=3, batch_size=4, seed=1,
                                scorer=scorer)
  assert again == report


def _save_run(workdir, step, params, collections, config):
  """A workdir with one checkpoint holding what evaluation reads (no optimizer state: making
  Adam's zeros compiles one program per leaf)."""
  from talkinghead_jax.train import checkpoint as checkpoint_lib
  from talkinghead_jax.train import state as state_lib

  state = state_lib.TrainState(step=np.int32(step), params=params, opt_state={"unused": np.zeros((), np.float32)},
                               collections=collections, rng=np.zeros((2,), np.uint32))
  checkpoints = checkpoint_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False)
  try:
    checkpoints.save(step, state, {"epoch": 0, "position": 0}, config)
  finally:
    checkpoints.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Untrained (host-initialised) unprojection and Θ checkpoints; Θ's config names an
  unprojection workdir that has since moved (to `unprojection`), as a copied run looks."""
  import jax

  from talkinghead_jax.train import host_init, tasks

  testdata = _testdata()
  root = tmp_path_factory.mktemp("theta_runs")
  config = testdata.unprojection_config("data.image_size=16", "model.num_downsamples=2")
  task = tasks.get_task(config)
  params, collections = task.host_init_variables(0, {})
  _save_run(root / "unprojection_old", 5, params, collections, config)
  config = testdata.generator_config("model.position_source=unprojection", "loss.vgg=0",
                                     f"model.unprojection_checkpoint={root / 'unprojection_old'}")
  task = tasks.get_task(config)
  abstract = jax.eval_shape(task.generator.init, jax.random.key(0), task._dummy_inputs()[0])  # Θ only: no D
  variables = host_init.initialize(abstract, "upstream", 0, prefix="generator")
  _save_run(root / "theta", 3, {"generator": variables["params"]},
            {"generator": {k: v for k, v in variables.items() if k != "params"}}, config)
  shutil.move(root / "unprojection_old", root / "unprojection")
  return root


def test_command_scores_theta_and_its_baselines(runs, tmp_path, monkeypatch, capsys):
  import jax.numpy as jnp

  from talkinghead_jax.models.flow import warp

  clips = _clips(count=3)
  asked, seen = [], []

  def fake_source(config, split, limit=None, keys=None):
    asked.append((split, limit))
    return iter([{key: clip[key] for key in keys} for clip in clips[:limit]])

  real_predictor = sg.generator_predictor

  def recording_predictor(*args, **kwargs):
    # XLA's quick CPU options (test speed only; the tests of the generator task use them too).
    predict = real_predictor(*args, compiler_options=_testdata().FAST_COMPILE, **kwargs)

    def recorded(batch):
      out = predict(batch)
      seen.append((predict, dict(batch), out))
      return out

    return recorded

  monkeypatch.setattr(trained_stage, "clip_source", fake_source)
  monkeypatch.setattr(trained_stage, "dataset_artifacts", lambda config: _artifacts(clips))
  monkeypatch.setattr(sg, "generator_predictor", recording_predictor)
  out = tmp_path / "theta.json"
  args = ["evaluate", "--stage", "generator", "--checkpoint", str(runs / "theta"), "--data-dir", str(tmp_path),
          "--frames-per-clip", "2", "--max-clips", "2", "--batch-size", "3"]
  # The run's unprojection workdir has moved: a clear error, then the override.
  assert cli.main(args) == 1
  assert "unprojection_old" in capsys.readouterr().err
  assert cli.main([*args, "--unprojection-checkpoint", str(runs / "unprojection"), "--out", str(out)]) == 0
  captured = capsys.readouterr()
  assert "warped_reference" in captured.out and "rendered_face" in captured.out
  assert asked == [("test", 2)]
  report = json.loads(out.read_text())
  assert report["stage"] == "generator" and report["frames"] == 4 and len(report["clips"]) == 2
  assert report["checkpoint"]["step"] == 3
  assert report["checkpoint"]["unprojection_checkpoint"] == str(runs / "unprojection")
  assert set(report["methods"]) == set(sg.METHODS)
  for row in report["methods"].values():
    assert -1 <= row["ssim"] <= 1 and 0 <= row["lpips"] < 2 and np.isfinite(row["psnr"])
  # An untrained Θ's output is far from the target; the unwarped reference is close to it.
  assert report["methods"]["reference"]["lpips"] < report["methods"]["model"]["lpips"]

  # The baselines: the whole matched reference (Θ sees its mouth box blacked out), warped by the
  # flow Θ predicted; the render as Θ receives it.
  assert [len(batch["tgt_image"]) for _, batch, _ in seen] == [3, 1]
  predict, batch, images = seen[0]
  reference = jnp.asarray(batch["warping_ref"], jnp.float32) / 127.5 - 1.0
  expected = np.clip(np.round((np.asarray(warp(reference, jnp.asarray(images["flow_ref"]))) + 1) * 127.5), 0, 255)
  assert np.abs(images["warped_reference"].astype(np.int16) - expected).max() <= 1  # float rounding at .5 only
  assert np.mean(images["warped_reference"] != batch["warping_ref"]) > 0.1  # the flow moved it
  mouth = batch["mouth_box"][..., 0] > 0.5
  assert mouth.any()
  np.testing.assert_array_equal(images["reference"], batch["warping_ref"])
  assert np.all(images["rendered_face"][mouth] == 0)
  # Evaluation mode: a sample's output does not depend on the rest of its batch (or the padding).
  alone = predict({k: v[1:2] for k, v in batch.items()})
  for name in sg.METHODS:
    np.testing.assert_array_equal(alone[name][0], images[name][1])


def test_command_refuses_other_stages_and_flags(runs, capsys):
  assert cli.main(["evaluate", "--stage", "generator", "--checkpoint", str(runs / "unprojection"), "--data-dir",
                   "x"]) == 1
  assert "trained stage 'unprojection', not 'generator'" in capsys.readouterr().err
  assert cli.main(["evaluate", "--stage", "expression", "--checkpoint", str(runs / "theta"), "--frames-per-clip",
                   "2"]) == 1
  assert "--stage generator" in capsys.readouterr().err
  assert cli.main(["evaluate", "--stage", "generator", "--checkpoint", str(runs / "theta"), "--data-dir", "x",
                   "--unprojection-checkpoint", str(runs / "missing")]) == 1
  assert "missing" in capsys.readouterr().err


def test_launch_script_trains_both_nets_then_evaluates(tmp_path):
  import os
  import subprocess

  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "calls.txt"
  (bin_dir / "talkinghead").write_text(f'#!/bin/bash\necho "$*" >> {log}\n')
  (bin_dir / "talkinghead").chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "THETA_STEPS": "1200"}
  out = tmp_path / "out"
  result = subprocess.run(["bash", str(REPO / "launch/generator_synthtalk.sh"), str(out), "/data/prepared"], cwd=REPO,
                          text=True, capture_output=True, env=env, timeout=60)
  assert result.returncode == 0, result.stderr
  calls = log.read_text().splitlines()
  assert [call.split()[0] for call in calls] == ["train", "train", "evaluate"]
  assert "configs/unprojection.py:synthtalk_tiny" in calls[0] and "total_steps=2000" in calls[0]
  assert f"model.unprojection_checkpoint={out}/runs/unprojection" in calls[1] and "total_steps=1200" in calls[1]
  assert calls[2].startswith(f"evaluate --stage generator --checkpoint {out}/runs/theta --data-dir /data/prepared")
  assert (out / "logs" / "training_wall_time.txt").is_file()
  # Without DATA it makes and prepares the SynthTalk set first.
  log.unlink()
  assert subprocess.run(["bash", str(REPO / "launch/generator_synthtalk.sh"), str(out)], cwd=REPO, env=env,
                        capture_output=True, timeout=60).returncode == 0
  calls = log.read_text().splitlines()
  assert [call.split()[0] for call in calls] == ["synth", "prepare", "train", "train", "evaluate"]
  assert f"--data-dir {out}/prepared" in calls[1] and f"data.data_dir={out}/prepared" in calls[2]
