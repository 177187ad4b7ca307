"""Video write → read round trips, constant-rate resampling, probing and input errors."""

import fractions
import os

import av
import numpy as np
import pytest

from talkinghead_jax import media
from talkinghead_jax.errors import InputError

HEIGHT, WIDTH = 48, 64


def _smooth_frames(count):
  """Soft moving gradients: easy for H.264, so a high PSNR is expected after encoding."""
  y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
  frames = []
  for t in range(count):
    red = 128 + 90 * np.sin(2 * np.pi * (x / WIDTH + t / 50))
    green = 128 + 90 * np.cos(2 * np.pi * (y / HEIGHT - t / 40))
    blue = 60 + 2 * t + 0 * x
    frames.append(np.stack([red, green, blue], axis=-1))
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _numbered_frames(count):
  """Flat frames that show their index in two digits of base 16: the left half's grey level
  is 16·(i mod 16), the right half's 16·(i div 16) (robust to compression)."""
  index = np.arange(count)
  frames = np.zeros((count, HEIGHT, WIDTH, 3), np.uint8)
  frames[:, :, :WIDTH // 2] = (16 * (index % 16)).astype(np.uint8)[:, None, None, None]
  frames[:, :, WIDTH // 2:] = (16 * (index // 16)).astype(np.uint8)[:, None, None, None]
  return frames


def _frame_numbers(frames):
  low = np.rint(frames[:, :, :WIDTH // 2].reshape(len(frames), -1).mean(axis=1) / 16)
  high = np.rint(frames[:, :, WIDTH // 2:].reshape(len(frames), -1).mean(axis=1) / 16)
  return (low + 16 * high).astype(int)


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255.0**2 / mse)


def _tone(seconds, rate, hz=440.0):
  t = np.arange(int(round(seconds * rate))) / rate
  return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_round_trip_frames_fps_and_audio(tmp_path):
  frames = _smooth_frames(25)
  tone = _tone(1.0, 16000)
  path = tmp_path / "clip.mp4"
  media.write_video(path, frames, 25, audio=tone, sample_rate=16000)
  video = media.read_video(path)
  assert video.frames.shape == frames.shape and video.frames.dtype == np.uint8
  assert video.fps == 25.0 and video.source_fps == 25.0 and video.num_frames == 25
  assert min(_psnr(a, b) for a, b in zip(video.frames, frames)) > 35.0
  assert video.sample_rate == 16000 and video.audio.dtype == np.float32
  assert abs(video.audio.size / 16000 - video.duration) <= 1 / 25
  # mp4 records the exact audio length; the AAC end padding must be trimmed off.
  assert video.audio.size == tone.size
  spectrum = np.abs(np.fft.rfft(video.audio))
  assert abs(np.argmax(spectrum) * 16000 / video.audio.size - 440.0) < 2.0
  resampled = media.read_video(path, audio_sample_rate=50000)
  assert resampled.sample_rate == 50000 and abs(resampled.audio.size - 50000) <= 2000
  assert media.read_video(path, with_audio=False).audio is None
  assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]  # No temporary file left behind.


def test_audio_at_a_rate_aac_cannot_store_is_resampled(tmp_path):
  path = tmp_path / "hi.mp4"
  media.write_video(path, _smooth_frames(10), 25, audio=_tone(0.4, 50000), sample_rate=50000)
  video = media.read_video(path, audio_sample_rate=50000)
  assert media.probe_video(path).audio_sample_rate == 48000
  assert abs(video.audio.size - 20000) <= 2000


def test_probe_reads_headers(tmp_path):
  path = tmp_path / "probe.mp4"
  media.write_video(path, _numbered_frames(30), 30, audio=_tone(1.0, 16000), sample_rate=16000)
  info = media.probe_video(path)
  assert (info.num_frames, info.width, info.height) == (30, WIDTH, HEIGHT)
  assert info.fps == 30.0 and abs(info.duration - 1.0) < 1e-6
  assert info.has_audio and info.audio_sample_rate == 16000
  media.write_video(tmp_path / "mute.mp4", _numbered_frames(4), 25)
  assert not media.probe_video(tmp_path / "mute.mp4").has_audio


@pytest.mark.parametrize("source_fps,count", [(50, 100), (30, 30)])
def test_constant_rate_resampling_picks_nearest_frames(tmp_path, source_fps, count):
  path = tmp_path / f"src{source_fps}.mp4"
  media.write_video(path, _numbered_frames(count), source_fps)
  video = media.read_video(path, fps=25)
  seconds = count / source_fps
  assert video.num_frames == round(seconds * 25) and video.source_fps == source_fps
  # Output frame k shows the source frame nearest to k/25 s; no exact ties occur here.
  expected = np.rint(np.arange(video.num_frames) * source_fps / 25).astype(int)
  np.testing.assert_array_equal(_frame_numbers(video.frames), expected)
  native = media.read_video(path, fps=None)
  assert native.num_frames == count and native.fps == source_fps


def test_variable_frame_rate_input(tmp_path):
  times_ms = [0, 40, 120, 130, 200, 260, 400, 410, 420, 600, 640]
  path = tmp_path / "vfr.mp4"
  time_base = fractions.Fraction(1, 1000)
  with av.open(str(path), "w", format="mp4") as container:
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.codec_context.time_base = time_base
    for index, image in enumerate(_numbered_frames(len(times_ms))):
      frame = av.VideoFrame.from_ndarray(image, format="rgb24")
      frame.pts, frame.time_base = times_ms[index], time_base
      container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
  video = media.read_video(path, fps=25)
  # Reference: brute-force nearest timestamp (ties → earlier) over 0.64 s + 40 ms (the
  # median spacing as the last frame's duration) = 17 frames at 25 fps.
  source = np.array(times_ms)
  targets = np.arange(17) * 40
  expected = [int(np.flatnonzero(np.abs(source - t) == np.abs(source - t).min())[0])
              for t in targets]
  np.testing.assert_array_equal(_frame_numbers(video.frames), expected)


def test_audio_is_aligned_to_the_first_video_frame(tmp_path):
  # Video starts at 0.2 s, audio at 0 s with a click at 0.3 s: after reading, sample 0 plays
  # with frame 0, so the click sits at 0.1 s.
  rate = 16000
  clicks = np.zeros(rate, np.float32)
  clicks[int(0.3 * rate):int(0.3 * rate) + 200] = 0.8
  path = tmp_path / "late_video.mp4"
  with av.open(str(path), "w", format="mp4") as container:
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    sound = container.add_stream("aac", rate=rate)
    sound.layout = "mono"
    for index, image in enumerate(_numbered_frames(25)[5:], start=5):
      frame = av.VideoFrame.from_ndarray(image, format="rgb24")
      frame.pts, frame.time_base = index, fractions.Fraction(1, 25)
      container.mux(video.encode(frame))
    container.mux(video.encode(None))
    frame = av.AudioFrame.from_ndarray(clicks[None], format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, fractions.Fraction(1, rate)
    container.mux(sound.encode(frame))
    container.mux(sound.encode(None))
  video = media.read_video(path)
  np.testing.assert_array_equal(_frame_numbers(video.frames), np.arange(5, 25))
  onset = np.argmax(np.abs(video.audio) > 0.3) / rate
  assert abs(onset - 0.1) < 0.005
  assert video.audio.size == int(0.8 * rate)


def test_write_checks_frames_and_is_atomic(tmp_path):
  with pytest.raises(ValueError, match="even"):
    media.write_video(tmp_path / "odd.mp4", np.zeros((2, 47, 64, 3), np.uint8))
  with pytest.raises(ValueError, match="uint8"):
    media.write_video(tmp_path / "float.mp4", np.zeros((2, 48, 64, 3), np.float32))
  with pytest.raises(ValueError, match="sample_rate"):
    media.write_video(tmp_path / "a.mp4", _numbered_frames(2), audio=np.zeros(100))
  target = tmp_path / "keep.mp4"
  media.write_video(target, _numbered_frames(3), 25)
  before = target.read_bytes()
  with pytest.raises(Exception):  # The encoder rejects the preset mid-write.
    media.write_video(target, _numbered_frames(5), 25, preset="no-such-preset")
  assert target.read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == ["keep.mp4"]
  media.write_video(target, _numbered_frames(5), 25)  # Replacing an existing file works.
  assert media.probe_video(target).num_frames == 5


def _assert_input_error(path, fragment, reader=media.read_video):
  with pytest.raises(InputError) as caught:
    reader(path)
  message = str(caught.value)
  assert os.path.basename(path) in message and fragment in message, message
  assert "\n" not in message


def test_errors_name_the_file(tmp_path):
  for reader in (media.read_video, media.probe_video):
    _assert_input_error(tmp_path / "missing.mp4", "not found", reader)
  (tmp_path / "empty.mp4").write_bytes(b"")
  _assert_input_error(tmp_path / "empty.mp4", "empty")
  (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
  for reader in (media.read_video, media.probe_video):
    _assert_input_error(tmp_path / "garbage.mp4", "not a readable media file", reader)

  whole = tmp_path / "whole.mp4"
  media.write_video(whole, _smooth_frames(50), 25, audio=_tone(2.0, 16000), sample_rate=16000)
  data = whole.read_bytes()
  (tmp_path / "half.mp4").write_bytes(data[:len(data) // 2])
  _assert_input_error(tmp_path / "half.mp4", "truncated")
  _assert_input_error(tmp_path / "half.mp4", "decoded",
                      lambda path: media.read_video(path, with_audio=False))

  audio_only = tmp_path / "speech.m4a"
  with av.open(str(audio_only), "w", format="ipod") as container:
    stream = container.add_stream("aac", rate=16000)
    stream.layout = "mono"
    frame = av.AudioFrame.from_ndarray(_tone(0.5, 16000)[None], format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = 16000, 0, fractions.Fraction(1, 16000)
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
  for reader in (media.read_video, media.probe_video):
    _assert_input_error(audio_only, "no video stream", reader)

  # Matroska keeps a video track that has no packets (mp4 would drop it).
  frameless = tmp_path / "frameless.mkv"
  with av.open(str(frameless), "w", format="matroska") as container:
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    sound = container.add_stream("aac", rate=16000)
    sound.layout = "mono"
    frame = av.AudioFrame.from_ndarray(_tone(0.5, 16000)[None], format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = 16000, 0, fractions.Fraction(1, 16000)
    container.mux(sound.encode(frame))
    container.mux(sound.encode(None))
  _assert_input_error(frameless, "no decodable video frames")
  _assert_input_error(frameless, "no frames", media.probe_video)
