"""Audio decoding and resampling: any common file → mono float32 at a chosen rate.

WAV/FLAC/OGG/AIFF are read with soundfile (libsndfile); everything else (mp3, m4a, aac, the
audio track of an mp4/mkv/…) with PyAV (ffmpeg). Resampling uses soxr at its high-quality
setting. A file that cannot be used raises `InputError(path, reason)` with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import os

import av
import numpy as np
import soundfile
import soxr

from talkinghead_jax.errors import InputError

# Extensions that libsndfile decodes natively; PyAV is the fallback for them too.
_SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedAudio:
  """Audio as stored in a file: mono float32 at the file's own rate.

  `start_time` is the presentation time (seconds) of the first sample in its container; it
  lets a video reader line the audio up with the first video frame.
  """

  samples: np.ndarray
  sample_rate: int
  start_time: float = 0.0


def check_readable(path: str | os.PathLike) -> None:
  """Raises InputError if `path` is missing, not a file, or empty."""
  if not os.path.exists(path):
    raise InputError(path, "file not found")
  if not os.path.isfile(path):
    raise InputError(path, "not a regular file")
  if os.path.getsize(path) == 0:
    raise InputError(path, "file is empty (0 bytes)")


def ffmpeg_reason(error: Exception) -> str:
  """A short, one-line reason from an ffmpeg/PyAV error (without the repeated path)."""
  reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
  return " ".join(str(reason).split())


def _to_mono(samples: np.ndarray) -> np.ndarray:
  """(channels, n) or (n,) → (n,) float32 by averaging channels (no level change)."""
  samples = np.asarray(samples, dtype=np.float32)
  if samples.ndim == 2:
    samples = samples.mean(axis=0, dtype=np.float64).astype(np.float32)
  return np.ascontiguousarray(samples)


def _decode_with_soundfile(path) -> DecodedAudio:
  data, rate = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
  return DecodedAudio(_to_mono(data.T), int(rate))


def decode_audio_stream(path: str | os.PathLike) -> DecodedAudio:
  """Decodes the first audio stream of any ffmpeg-readable file with PyAV.

  mp4-family containers pad the last AAC frame; the padding is trimmed to the stream's
  declared duration so that the audio is as long as what was encoded.
  """
  check_readable(path)
  try:
    container = av.open(os.fspath(path))
  except (av.error.FFmpegError, UnicodeDecodeError) as error:
    raise InputError(path, f"not a readable media file ({ffmpeg_reason(error)})") from error
  with container:
    if not container.streams.audio:
      raise InputError(path, "no audio stream in file")
    stream = container.streams.audio[0]
    # Normalise every decoded frame to planar float; layout and rate stay as stored.
    resampler = av.AudioResampler(format="fltp")
    pieces = []
    start_time = None
    try:
      for frame in container.decode(stream):
        if start_time is None and frame.time is not None:
          start_time = float(frame.time)
        for converted in resampler.resample(frame):
          pieces.append(converted.to_ndarray())
      for converted in resampler.resample(None):
        pieces.append(converted.to_ndarray())
    except av.error.FFmpegError as error:
      raise InputError(path, f"audio decoding failed, file truncated or corrupt "
                       f"({ffmpeg_reason(error)})") from error
    if not pieces:
      raise InputError(path, "audio stream has no decodable samples")
    rate = int(stream.rate or stream.codec_context.sample_rate)
    samples = _to_mono(np.concatenate(pieces, axis=1))
    declared = None
    if stream.duration is not None and stream.time_base is not None:
      declared = int(round(float(stream.duration * stream.time_base) * rate))
    if "mp4" in container.format.name and declared and 0 < declared < samples.size:
      samples = samples[:declared]
  if samples.size == 0:
    raise InputError(path, "audio stream has no decodable samples")
  return DecodedAudio(samples, rate, start_time or 0.0)


def decode_audio(path: str | os.PathLike) -> DecodedAudio:
  """Decodes a file's audio to mono float32 at its native rate (no resampling)."""
  check_readable(path)
  if os.path.splitext(os.fspath(path))[1].lower() in _SOUNDFILE_EXTENSIONS:
    try:
      decoded = _decode_with_soundfile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
      decoded = None  # Unusual codec inside a WAV, or a misnamed file: let ffmpeg try.
    if decoded is not None:
      if decoded.samples.size == 0:
        raise InputError(path, "audio has no samples")
      return decoded
  return decode_audio_stream(path)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
  """Resamples mono audio with soxr (high quality); the length becomes ≈ n·to/from."""
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim != 1:
    raise ValueError(f"expected mono audio of shape (n,), got {audio.shape}")
  if from_rate <= 0 or to_rate <= 0:
    raise ValueError(f"sample rates must be positive, got {from_rate} → {to_rate}")
  if from_rate == to_rate or audio.size == 0:
    return audio.copy()
  out = soxr.resample(audio, from_rate, to_rate, quality="HQ")
  return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
  """Loads any audio file (or a video's audio track) as mono float32 at `sample_rate`.

  Channels are averaged. Raises InputError naming the file when it is missing, empty,
  undecodable or has no audio stream.
  """
  if int(sample_rate) != sample_rate or sample_rate <= 0:
    raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
  decoded = decode_audio(path)
  return resample(decoded.samples, decoded.sample_rate, int(sample_rate))
