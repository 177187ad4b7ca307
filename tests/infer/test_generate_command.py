"""`talkinghead generate` (infer/command.py): a run from a checkpoint-set directory with the
options that shape the output, the driving-video mode, and one-line errors."""

import numpy as np
import pytest

import generate_testdata as testdata
from talkinghead_jax import cli, media
from talkinghead_jax.data import input_synthetic
from talkinghead_jax.infer import checkpoint_set


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory):
  """The tiny test set as a directory, as `talkinghead export` writes one."""
  return checkpoint_set.save_checkpoint_set(testdata.checkpoints(), tmp_path_factory.mktemp("set") / "tiny")


def _generate(capsys, *args):
  try:
    status = cli.main(["generate", "--no-progress", "--batch-size", "4", *map(str, args)])
  except SystemExit as exit_:  # argparse's errors
    status = exit_.code
  out, err = capsys.readouterr()
  return status, out, err


def test_generate_from_a_set_directory_with_a_pose_file_and_an_output_size(tmp_path, set_dir, capsys):
  reference = testdata.write_reference_video(tmp_path, frames=12, size=48)
  speech = testdata.write_speech(tmp_path / "speech.mp3", seconds=0.8)
  # A head motion of another (numpy-made) face, in pixels of Θ's crop.
  poses = input_synthetic.make_clip(5, frames=7, size=testdata.SIZE, audio_rates=(), synthtalk=False)["pose"]
  np.save(tmp_path / "poses.npy", poses)
  status, out, err = _generate(capsys, "--reference", reference, "--audio", speech, "--out", tmp_path / "out.mp4",
                               "--checkpoints", set_dir, "--size", 64, "--k", 2, "--pose", tmp_path / "poses.npy",
                               "--pose-scale", 0.5, "--expression-scale", 0.5, "--seed", 3, "--detector", "sidecar")
  assert status == 0, err
  info = media.probe_video(tmp_path / "out.mp4")
  assert (info.width, info.height, info.fps) == (64, 64, 25) and info.has_audio
  assert abs(info.num_frames - 20) <= 1
  assert out.count("\n") == 1 and f"{info.num_frames} frames in" in out and "frames/s" in out


def test_driving_video_sets_the_length_and_lends_its_sound(tmp_path, set_dir, capsys):
  reference = testdata.write_reference_video(tmp_path, frames=12, size=48)
  driver_folder = tmp_path / "driver"
  driver_folder.mkdir()
  driver = testdata.write_reference_video(driver_folder, frames=9, size=40, index=3)
  silent = media.read_video(driver).frames
  media.write_video(driver, silent, fps=25, audio=testdata.speech(9 / 25), sample_rate=16000)  # with sound
  status, _, err = _generate(capsys, "--reference", reference, "--driving-video", driver, "--out", tmp_path / "out.mp4",
                             "--checkpoints", set_dir)
  assert status == 0, err
  info = media.probe_video(tmp_path / "out.mp4")
  assert info.num_frames == 9 and info.has_audio


@pytest.mark.parametrize("args, status, message", [
    (["--size", "15"], 1, "--size must be an even number of pixels"),
    (["--size", "64", "--paste-back"], 1, "--size and --paste-back exclude each other"),
    (["--k", "0"], 2, "argument --k: must be >= 1"),
    (["--pose-scale", "-1"], 2, "argument --pose-scale: must be a finite number >= 0"),
    (["--detector", "eyes"], 2, "argument --detector: invalid choice"),
    (["--pose", "wobble"], 1, "--pose must be one of learner, reference, still or a .npy file"),
])
def test_option_errors_are_one_line(tmp_path, capsys, args, status, message):
  got, out, err = _generate(capsys, "--reference", "ref.mp4", "--audio", "speech.wav", "--out", tmp_path / "o.mp4",
                            *args)
  assert got == status and message in err and err.count("\n") == 1 and not out


def test_input_errors_are_one_line_and_name_the_file(tmp_path, set_dir, capsys):
  reference = testdata.write_reference_video(tmp_path, frames=12, size=48)
  speech = testdata.write_speech(tmp_path / "speech.wav", seconds=0.4)
  garbage = tmp_path / "noise.wav"
  garbage.write_bytes(b"RIFF" + bytes(range(256)) * 4)
  cases = [
      (["--reference", reference, "--out", tmp_path / "o.mp4"], "--audio is needed"),
      (["--reference", reference, "--audio", garbage, "--out", tmp_path / "o.mp4"], f"{garbage}: not a readable"),
      (["--reference", reference, "--audio", speech, "--out", tmp_path / "o.mp4", "--checkpoints", tmp_path / "none"],
       f"{tmp_path / 'none'}: checkpoint set not found"),
      (["--reference", tmp_path / "missing.mp4", "--audio", speech, "--out", tmp_path / "o.mp4", "--checkpoints",
        set_dir], f"{tmp_path / 'missing.mp4'}: file not found"),
  ]
  one_frame = tmp_path / "one"
  one_frame.mkdir()
  short = testdata.write_reference_video(one_frame, frames=1, size=48)
  cases.append((["--reference", short, "--audio", speech, "--out", tmp_path / "o.mp4", "--checkpoints", set_dir],
                f"{short}: only 1 usable frames"))
  for args, message in cases:
    status, out, err = _generate(capsys, *args)
    assert status == 1 and err.startswith("talkinghead generate: error: ") and message in err, err
    assert err.count("\n") == 1 and not out
  assert not (tmp_path / "o.mp4").exists()
