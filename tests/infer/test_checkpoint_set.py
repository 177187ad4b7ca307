"""Checkpoint sets: fresh sets, export from runs → load round trip, and the one-line errors."""

import json
import pathlib
import types

import jax
import ml_collections
import numpy as np
import pytest

import infer_motion_testdata as testdata
from talkinghead_jax import cli, fileio
from talkinghead_jax import config as config_lib
from talkinghead_jax.data import crop
from talkinghead_jax.errors import ConfigError, InputError
from talkinghead_jax.eval import trained_stage
from talkinghead_jax.infer import checkpoint_set
from talkinghead_jax.fileio import flatten_tree


def test_fresh_set_fits_together():
  checkpoints = testdata.tiny_set()
  assert (checkpoints.image_size, checkpoints.crop_size, checkpoints.scale) == (32, 64, 0.5)
  assert checkpoints.num_references == 2 and checkpoints.fps == 25
  assert checkpoints.pca.components_.shape == (20, 136)
  # The canonical face sits where `talkinghead prepare` puts one: its own crop box is the crop.
  box = crop.crop_box(checkpoints.canonical[None], np.array([True]))
  np.testing.assert_allclose([box.x0, box.y0, box.side], [0, 0, 64], atol=1e-3)
  # The PCA's faces are frontal SynthTalk faces aligned to that canonical face: the mean's
  # stable points (which expressions do not move) lie on it to within the identities' shapes.
  mean = checkpoints.pca.mean_.reshape(68, 2)
  assert np.abs(mean[27:36] - checkpoints.canonical[27:36, :2]).max() < 2.0
  np.testing.assert_array_equal(checkpoints.pose_mean, np.zeros(6))
  np.testing.assert_array_equal(checkpoints.pose_std, np.ones(6))
  # Θ's task can render the key frame without a training workdir: the set's net is attached.
  task = checkpoints.generator.task
  assert task._unprojection[0] is checkpoints.unprojection.task.model


def _write_run(workdir: pathlib.Path, config, params, collections, step):
  """A run's workdir as the training loop leaves it: resolved config and one checkpoint."""
  from talkinghead_jax.train import checkpoint as checkpoint_lib

  checkpoints = checkpoint_lib.Checkpointer(workdir / "checkpoints", async_save=False)
  try:
    checkpoints.save(step, {"step": np.int32(step), "params": params, "collections": collections},
                     {"epoch": 0, "position": 0}, config)
  finally:
    checkpoints.close()
  config_lib.write(config, workdir)
  return workdir


def _runs(tmp_path, checkpoints, *, frozen_unprojection=None):
  """Workdirs of the four stages holding a fresh set's variables (plus what training keeps:
  Φ's and Θ's discriminators, Θ's frozen nets)."""
  psi, phi, theta, net = (checkpoints.expression, checkpoints.head_motion, checkpoints.generator,
                          checkpoints.unprojection)
  split = lambda v: ({k: x for k, x in v.items() if k != "params"})  # noqa: E731
  unprojection = _write_run(tmp_path / "unprojection", net.config, {"model": net.variables["params"]},
                            split(net.variables), 2000)
  theta_config = ml_collections.ConfigDict(theta.config.to_dict())
  theta_config.model.unprojection_checkpoint = str(unprojection)
  frozen = net.variables if frozen_unprojection is None else frozen_unprojection
  runs = {
      "expression": _write_run(tmp_path / "psi", psi.config, {"model": psi.variables["params"]},
                               split(psi.variables), 4000),
      "head_motion": _write_run(tmp_path / "phi", phi.config,
                                {"model": phi.variables["params"], "discriminator": {"l_0": {"bias": np.zeros(1)}}},
                                split(phi.variables), 1500),
      "generator": _write_run(tmp_path / "theta", theta_config,
                              {"generator": theta.variables["params"], "discriminator": {"d": {"bias": np.ones(2)}}},
                              {"generator": split(theta.variables), "unprojection": frozen}, 250),
  }
  return runs, unprojection


@pytest.fixture
def prepared_data(monkeypatch):
  """Φ's training clips (its config has no pose statistics) and the data set's artifacts."""
  checkpoints = testdata.tiny_set()
  rng = np.random.default_rng(3)
  clips = [{"pose": rng.normal(size=(n, 6)).astype(np.float32) * [0.1, 0.2, 0.05, 2, 3, 1] + [0, 0, 0, 1, 2, 3],
            "num_frames": n} for n in (30, 41, 25)]
  asked = []

  def clip_source(config, split, limit=None, keys=None):
    asked.append(split)
    return iter(clips[:limit])

  artifacts = types.SimpleNamespace(canonical=checkpoints.canonical, pca=checkpoints.pca,
                                    info={"size": 64, "fps": 25, "detector": "sidecar"})
  monkeypatch.setattr(trained_stage, "clip_source", clip_source)
  monkeypatch.setattr(trained_stage, "dataset_artifacts", lambda config: artifacts)
  poses = np.concatenate([clip["pose"] for clip in clips]).astype(np.float64)
  return types.SimpleNamespace(mean=poses.mean(0), std=poses.std(0), asked=asked)


def test_export_then_load_gives_the_runs_variables(tmp_path, prepared_data, capsys):
  checkpoints = testdata.tiny_set()
  runs, unprojection = _runs(tmp_path, checkpoints)
  out = tmp_path / "set"
  status = cli.main(["export", "--out", str(out), "--expression", str(runs["expression"]),
                     "--head-motion", str(runs["head_motion"]),
                     "--generator", str(runs["generator"] / "checkpoints/250"),
                     "--data-dir", str(tmp_path), "--builder-config", "sidecar_64"])
  assert status == 0
  assert "K = 2" in capsys.readouterr().out
  loaded = checkpoint_set.load_checkpoint_set(out)
  for stage in checkpoint_set.STAGES:
    want, got = flatten_tree(checkpoints.stage(stage).variables), flatten_tree(loaded.stage(stage).variables)
    assert want.keys() == got.keys(), stage
    for name in want:
      np.testing.assert_array_equal(got[name], want[name], err_msg=f"{stage} {name}")
  assert [loaded.stage(s).step for s in checkpoint_set.STAGES] == [4000, 1500, 2000, 250]
  # Φ's statistics are those of its training clips (population std, as the pipeline's).
  np.testing.assert_allclose(loaded.pose_mean, prepared_data.mean, rtol=1e-5)
  np.testing.assert_allclose(loaded.pose_std, prepared_data.std, rtol=1e-5)
  assert prepared_data.asked == ["train"]
  np.testing.assert_array_equal(loaded.canonical, checkpoints.canonical)
  np.testing.assert_array_equal(loaded.pca.components_, checkpoints.pca.components_)
  assert (loaded.crop_size, loaded.image_size, loaded.num_references, loaded.detector) == (64, 32, 2, "sidecar")
  # Θ's config points at the set's own unprojection net, whatever the run's path was.
  stored = json.loads((out / "generator/config.json").read_text())
  assert stored["model"]["unprojection_checkpoint"] == "unprojection"
  assert loaded.generator.config.model.unprojection_checkpoint == str(out / "unprojection")
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["stages"]["generator"]["source"] == str(runs["generator"])
  # Without --unprojection, Θ's own model.unprojection_checkpoint is the net.
  assert manifest["stages"]["unprojection"]["source"] == str(unprojection)
  assert set(manifest["sha256"]) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
  # Atomic: nothing but the set was left beside it.
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
  with pytest.raises(InputError, match="set: already exists and is not empty"):
    checkpoint_set.save_checkpoint_set(loaded, out)
  # --force replaces it, atomically.
  checkpoint_set.save_checkpoint_set(loaded, out, overwrite=True)
  assert json.loads((out / "manifest.json").read_text())["stages"]["unprojection"]["source"] == ""
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_refuses_an_unprojection_net_theta_did_not_train_with(tmp_path, prepared_data):
  checkpoints = testdata.tiny_set()
  other = jax.tree.map(lambda x: np.asarray(x) + 1.0, checkpoints.unprojection.variables)
  runs, unprojection = _runs(tmp_path, checkpoints, frozen_unprojection=other)
  with pytest.raises(ConfigError, match=r"unprojection: not the unprojection net Θ trained with"):
    checkpoint_set.export_checkpoint_set(tmp_path / "set", expression=runs["expression"],
                                         head_motion=runs["head_motion"], generator=runs["generator"],
                                         unprojection=unprojection, data_dir=tmp_path)
  with pytest.raises(ConfigError, match=r"psi: the run trained stage 'expression', not 'head_motion'"):
    checkpoint_set.export_checkpoint_set(tmp_path / "set", expression=runs["expression"],
                                         head_motion=runs["expression"], generator=runs["generator"],
                                         data_dir=tmp_path)
  assert not (tmp_path / "set").exists()


def _edit_config(root: pathlib.Path, stage: str, **sections):
  """Sets fields of a stage's config.json in place (`model={"ngf": 16}`), then re-checksums."""
  path = root / stage / "config.json"
  config = json.loads(path.read_text())
  for section, fields in sections.items():
    config[section].update(fields)
  path.write_text(json.dumps(config))
  _resave(root)


def _resave(root: pathlib.Path):
  """Rewrites manifest.json's checksums after an edit (as a careless tool would)."""
  manifest = json.loads((root / "manifest.json").read_text())
  manifest["sha256"] = {name: fileio.file_digest(root / name, "sha256") for name in manifest["sha256"]}
  (root / "manifest.json").write_text(json.dumps(manifest))


def test_load_errors_name_the_file(tmp_path, monkeypatch):
  checkpoints = testdata.tiny_set()
  good = checkpoint_set.save_checkpoint_set(checkpoints, tmp_path / "good")
  with pytest.raises(InputError, match=r"missing: checkpoint set not found"):
    checkpoint_set.load_checkpoint_set(tmp_path / "missing")

  def broken(name, edit):
    root = checkpoint_set.save_checkpoint_set(checkpoints, tmp_path / name)
    edit(root)
    return root

  # A damaged file.
  root = broken("flipped", lambda r: (r / "head_motion/variables.npz").write_bytes(b"junk"))
  with pytest.raises(InputError, match=r"flipped/head_motion/variables.npz: checksum differs"):
    checkpoint_set.load_checkpoint_set(root)

  # Ψ predicting another number of coefficients than the set's PCA has.
  root = broken("coefficients", lambda r: _edit_config(r, "expression", model={"num_coeffs": 12}))
  with pytest.raises(ConfigError, match=rf"{root}/expression/config.json: Ψ predicts 12 PCA coefficients"):
    checkpoint_set.load_checkpoint_set(root)
  small_pca = checkpoint_set.synthtalk_face_statistics(64, identities=2, expressions=8, components=12)[1]
  mismatched = checkpoint_set.CheckpointSet(**{**vars(checkpoints), "pca": small_pca})
  root = checkpoint_set.save_checkpoint_set(mismatched, tmp_path / "pca")
  with pytest.raises(ConfigError, match=r"pca/expression/config.json: Ψ predicts 20 PCA coefficients, the set's "
                                        r"landmark PCA .* has 12"):
    checkpoint_set.load_checkpoint_set(root)

  # Θ's config edited to a wider network than its variables.
  with pytest.raises(ConfigError, match=r"wider/generator/variables.npz: the variables do not fit .* is \(.*, "
                                        r"the config builds \("):
    checkpoint_set.load_checkpoint_set(broken("wider", lambda r: _edit_config(r, "generator", model={"ngf": 16})))

  # Φ at another frame rate (3200 Hz keeps the samples per frame: the same network).
  other_fps = broken("fps", lambda r: _edit_config(r, "head_motion", data={"fps": 20, "sample_rate": 3200}))
  with pytest.raises(ConfigError, match=r"fps/head_motion/config.json: trained at 20 fps"):
    checkpoint_set.load_checkpoint_set(other_fps)

  # No bundled set in this checkout: one line that says what to pass.
  monkeypatch.setattr(checkpoint_set, "bundled_path", lambda: tmp_path / "assets/synthtalk_tiny")
  with pytest.raises(ConfigError, match=r"no bundled checkpoint set .* pass --checkpoints DIR"):
    checkpoint_set.load_checkpoint_set(None)
  monkeypatch.setattr(checkpoint_set, "bundled_path", lambda: good)
  assert checkpoint_set.load_checkpoint_set(None).path == good
