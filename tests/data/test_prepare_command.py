"""`talkinghead prepare`: errors, the summary, reruns that redo nothing, resuming a half-done run."""

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from talkinghead_jax import cli
from talkinghead_jax.data import synthetic
from talkinghead_jax.data.tfds import artifacts as artifacts_lib
from talkinghead_jax.errors import TalkingHeadError

pytest.importorskip("tensorflow_datasets")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
  """Two identities, one clip each: id00001 in train, id00002 in test."""
  root = tmp_path_factory.mktemp("synthtalk")
  synthetic.generate(root, identities=2, clips_per_identity=1, seconds=1.2, image_size=64, seed=1)
  return root


def _argv(manual, data_dir, *extra):
  return ["prepare", "--dataset", "synthtalk", "--manual-dir", str(manual), "--data-dir",
          str(data_dir), "--detector", "sidecar", "--size", "32", "--audio-rates", "16000",
          "--no-progress", *extra]


@pytest.fixture(scope="module")
def prepared(synth, tmp_path_factory):
  """A prepared set, and the last line the command printed."""
  data_dir = tmp_path_factory.mktemp("prepared")
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    assert cli.main(_argv(synth, data_dir)) == 0
  return data_dir, printed.getvalue().strip().splitlines()[-1]


def _state(data_dir):
  """Modification times of everything the run wrote (tfds build and artifacts)."""
  return {str(p.relative_to(data_dir)): p.stat().st_mtime_ns
          for p in sorted(data_dir.rglob("*")) if p.is_file() and p.name != "summary.json"}


def test_missing_or_empty_manual_dir_is_an_error_naming_it(tmp_path, capsys):
  missing = tmp_path / "nowhere"
  assert cli.main(_argv(missing, tmp_path / "out")) == 1
  error = capsys.readouterr().err
  assert f"{missing}: no such folder" in error and "talkinghead synth" in error
  assert len(error.strip().splitlines()) == 1

  empty = tmp_path / "empty"
  empty.mkdir()
  argv = _argv(empty, tmp_path / "out")
  argv[argv.index("synthtalk")] = "voxceleb2"
  assert cli.main(argv) == 1
  error = capsys.readouterr().err
  assert f"{empty}: folder is empty" in error and "dev/mp4/idXXXXX" in error
  assert not (tmp_path / "out").exists()  # nothing written for a run that cannot start


def test_bad_arguments_are_one_line_errors(synth, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(_argv(synth, tmp_path, "--audio-rates", "16k"))
  assert exit_info.value.code == 2
  assert "--audio-rates" in capsys.readouterr().err
  bad = tmp_path / "canonical.npy"
  np.save(bad, np.zeros((5, 3), np.float32))
  assert cli.main(_argv(synth, tmp_path / "out", "--canonical", str(bad))) == 1
  assert f"{bad}: a canonical face must be a finite (68, 3) array" in capsys.readouterr().err


def test_prepare_prints_the_summary_and_writes_it(prepared):
  prepared, line = prepared
  assert line.startswith("prepare synthtalk/sidecar_32: train 1 clips kept (30 frames, 0.00 h "
                         "of audio), 0 rejected; test 1 clips kept (30 frames, 0.00 h of audio), "
                         "0 rejected; shards in ")
  summary = json.loads((prepared / "artifacts/synthtalk/sidecar_32/summary.json").read_text())
  assert summary["splits"]["train"] == {"clips": 1, "kept": 1, "rejected": {}, "frames": 30,
                                        "hours_of_audio": pytest.approx(30 / 25 / 3600)}
  assert summary["settings"] == {"size": 32, "audio_rates": [16000], "detector": "sidecar",
                                 "unprojection_frames": 4}
  assert os.path.isdir(summary["tfds_dir"]) and summary["tfds_dir"].endswith("sidecar_32/1.0.0")
  from talkinghead_jax.data import tfds as tfds_lib

  dataset = tfds_lib.open_dataset(prepared, "synthtalk")  # the only config there
  assert dataset.info == {"size": 32, "audio_rates": (16000,), "fps": 25, "detector": "sidecar",
                          "unprojection_frames": 4}
  assert dataset.split_sizes == {"train": 1, "test": 1} and dataset.canonical.shape == (68, 3)
  assert dataset.pca.components_.shape == (20, 136)


def test_rerun_redoes_nothing(synth, prepared, capsys):
  prepared, _ = prepared
  before = _state(prepared)
  assert any("/landmarks/train/" in name for name in before)
  assert cli.main(_argv(synth, prepared)) == 0
  assert "train 1 clips kept" in capsys.readouterr().out
  assert _state(prepared) == before


def test_other_settings_in_the_same_config_are_refused(synth, prepared, capsys):
  prepared, _ = prepared
  assert cli.main(_argv(synth, prepared, "--unprojection-frames", "2")) == 1
  error = capsys.readouterr().err
  assert "prepared with other settings (unprojection_frames: 4 there, 2 asked)" in error


def test_a_half_finished_run_is_resumed(synth, prepared, capsys):
  prepared, _ = prepared
  from talkinghead_jax.data import tfds as tfds_lib

  artifacts = artifacts_lib.Artifacts.of(prepared, "synthtalk", "sidecar_32")
  dataset = tfds_lib.open_dataset(prepared, "synthtalk", "sidecar_32")
  version_dir = dataset.builder.data_path
  # A build killed part-way: the finished version folder is not there, tfds's temporary one is.
  shutil.rmtree(version_dir)
  stale = version_dir.parent / f"incomplete.ABC123_{version_dir.name}"
  stale.mkdir()
  (stale / "synthtalk-train.tfrecord-00000-of-00001").write_bytes(b"half")
  lost = artifacts.landmarks("test", "id00002/" + next(
      p.parent.name for p in (synth / "test/mp4/id00002").rglob("*.mp4")) + "/00001")
  lost.unlink()
  kept = artifacts.landmarks("train", next(
      str(p.relative_to(synth / "dev/mp4").with_suffix("")) for p in (synth / "dev/mp4").rglob("*.mp4")))
  kept_mtime = kept.stat().st_mtime_ns
  canonical_mtime = artifacts.canonical.stat().st_mtime_ns

  assert cli.main(_argv(synth, prepared)) == 0
  assert "train 1 clips kept" in capsys.readouterr().out
  assert lost.is_file() and kept.stat().st_mtime_ns == kept_mtime
  assert artifacts.canonical.stat().st_mtime_ns == canonical_mtime
  assert not stale.exists() and (version_dir / "dataset_info.json").is_file()
  assert tfds_lib.open_dataset(prepared, "synthtalk", "sidecar_32").split_sizes == {"train": 1,
                                                                                   "test": 1}


def test_open_dataset_names_the_command_that_makes_a_missing_build(tmp_path):
  from talkinghead_jax.data import tfds as tfds_lib

  with pytest.raises(TalkingHeadError, match=(
      r"talkinghead prepare --dataset voxceleb2 --manual-dir DIR --data-dir .* "
      r"--detector face_alignment --size 256")):
    tfds_lib.open_dataset(tmp_path, "voxceleb2", "face_alignment_256")
  with pytest.raises(TalkingHeadError, match="none is prepared; run `talkinghead prepare"):
    tfds_lib.open_dataset(tmp_path, "voxceleb2")


def test_a_split_whose_every_clip_is_rejected_in_the_build_is_left_out(synth, tmp_path, capsys):
  from talkinghead_jax.data import tfds as tfds_lib

  manual = tmp_path / "synthtalk"
  shutil.copytree(synth, manual)
  # The test clip's ground truth names another identity: its landmark pass succeeds (the
  # sidecar reads the landmarks), its build fails — the only clip of the split.
  truth_path = next((manual / "test").rglob("*.npz"))
  with np.load(truth_path) as archive:
    truth = {name: archive[name] for name in archive.files}
  truth["identity"] = truth["identity"] + 1
  np.savez(truth_path, **truth)
  assert cli.main(_argv(manual, tmp_path / "out")) == 0
  assert ("train 1 clips kept (30 frames, 0.00 h of audio), 0 rejected; test 0 clips kept "
          "(0 frames, 0.00 h of audio), 1 rejected (error 1)") in capsys.readouterr().out
  assert tfds_lib.open_dataset(tmp_path / "out", "synthtalk", "sidecar_32").split_sizes == {
      "train": 1}
