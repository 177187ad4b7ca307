"""load_audio: formats, mono mixdown, resampling, and one-line errors that name the file."""

import fractions

import av
import numpy as np
import pytest
import soundfile

from talkinghead_jax import audio
from talkinghead_jax import media
from talkinghead_jax.errors import InputError

SOURCE_RATE = 44100
TONE_HZ = 440.0


def _tone(seconds=1.0, rate=SOURCE_RATE, hz=TONE_HZ, amplitude=0.5):
  t = np.arange(int(seconds * rate)) / rate
  return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _write_encoded(path, samples, rate, container_format, codec="aac"):
  """AAC in an mp4-family container ('ipod' → .m4a) or raw ADTS ('adts' → .aac); MP3 ('mp3')."""
  with av.open(str(path), "w", format=container_format) as container:
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "mono"
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, fractions.Fraction(1, rate)
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _peak_hz(signal, rate):
  spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
  return np.argmax(spectrum) * rate / signal.size


def _make(kind, tmp_path, samples, rate):
  if kind in ("wav", "flac"):
    path = tmp_path / f"tone.{kind}"
    soundfile.write(path, samples, rate)
  elif kind == "m4a":
    path = tmp_path / "tone.m4a"
    _write_encoded(path, samples, rate, "ipod")
  elif kind == "aac":
    path = tmp_path / "tone.aac"
    _write_encoded(path, samples, rate, "adts")
  elif kind == "mp3":
    path = tmp_path / "tone.mp3"
    _write_encoded(path, samples, rate, "mp3", codec="libmp3lame")
  else:
    path = tmp_path / "tone.mp4"
    frames = np.zeros((25, 16, 16, 3), np.uint8)
    media.write_video(path, frames, 25, audio=samples, sample_rate=rate)
  return path


@pytest.mark.parametrize("kind", ["wav", "flac", "m4a", "aac", "mp3", "mp4"])
def test_round_trip_preserves_frequency_and_length(kind, tmp_path):
  path = _make(kind, tmp_path, _tone(), SOURCE_RATE)
  loaded = audio.load_audio(path, 16000)
  assert loaded.dtype == np.float32 and loaded.ndim == 1
  if kind in ("wav", "flac"):
    assert loaded.size == 16000  # Lossless: exactly duration × new rate.
  elif kind == "mp3":
    # The LAME header records the encoder delay; the decoder may still return up to one
    # 1152-sample MP3 frame (at the source rate) of end padding.
    assert 0 <= loaded.size - 16000 <= 1152 * 16000 // SOURCE_RATE + 1, loaded.size
  elif kind == "aac":
    # Raw ADTS stores no encoder delay or end padding, so up to two 1024-sample AAC frames
    # (at the source rate) come back on top of the signal.
    assert 0 <= loaded.size - 16000 <= 2 * 1024 * 16000 // SOURCE_RATE + 1, loaded.size
  else:
    assert loaded.size == 16000  # mp4/m4a record the length: AAC padding is trimmed off.
  assert abs(_peak_hz(loaded, 16000) - TONE_HZ) < 2.0
  middle = loaded[2000:14000]
  assert abs(np.sqrt(np.mean(middle**2)) - 0.5 / np.sqrt(2)) < 0.02


def test_resampling_length_and_tone_to_50k(tmp_path):
  path = _make("wav", tmp_path, _tone(seconds=0.8, rate=16000), 16000)
  loaded = audio.load_audio(path, 50000)
  assert loaded.size == 40000
  assert abs(_peak_hz(loaded, 50000) - TONE_HZ) < 2.0
  assert audio.resample(np.zeros(1000, np.float32), 16000, 16000).size == 1000
  native = audio.decode_audio(path)
  assert native.sample_rate == 16000 and native.samples.size == 12800


def test_stereo_is_averaged_to_mono(tmp_path):
  left = _tone(0.5, 16000)
  stereo = np.stack([left, np.zeros_like(left)], axis=1)
  soundfile.write(tmp_path / "stereo.wav", stereo, 16000)
  loaded = audio.load_audio(tmp_path / "stereo.wav", 16000)
  np.testing.assert_allclose(loaded, 0.5 * left, atol=1e-4)


def _assert_input_error(path, fragment):
  with pytest.raises(InputError) as caught:
    audio.load_audio(path, 16000)
  message = str(caught.value)
  assert path.name in message and fragment in message, message
  assert "\n" not in message


def test_errors_name_the_file(tmp_path):
  _assert_input_error(tmp_path / "missing.wav", "not found")
  (tmp_path / "empty.m4a").write_bytes(b"")
  _assert_input_error(tmp_path / "empty.m4a", "empty")
  (tmp_path / "garbage.mp3").write_bytes(np.random.default_rng(0).bytes(4000))
  _assert_input_error(tmp_path / "garbage.mp3", "not a readable media file")
  (tmp_path / "garbage.wav").write_bytes(b"RIFF" + np.random.default_rng(1).bytes(4000))
  _assert_input_error(tmp_path / "garbage.wav", "not a readable media file")
  silent_video = tmp_path / "silent.mp4"
  media.write_video(silent_video, np.zeros((5, 16, 16, 3), np.uint8), 25)
  _assert_input_error(silent_video, "no audio stream")
