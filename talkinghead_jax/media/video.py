"""Video files in and out with PyAV: RGB uint8 frames at a constant rate, plus mono audio.

Reading resamples to a constant frame rate by nearest presentation timestamp, so variable
frame rate input and sources at 30/50/60 fps all come out at `fps`. Writing produces an
H.264 (yuv420p) + AAC mp4, written to a temporary file next to the target and renamed into
place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import math
import os
import statistics
from typing import Iterator

import av
import numpy as np

from talkinghead_jax.audio import io as audio_io
from talkinghead_jax.errors import InputError
from talkinghead_jax.fileio import atomic_write_path

# Sample rates the AAC encoder accepts; other rates are resampled to 48 kHz on writing.
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                    11025, 8000, 7350)
# A decoded frame count this far below the container's header count means a truncated file.
# A little slack: edit lists can make the header count a few frames more than what plays.
_TRUNCATION_SLACK_FRAMES = 3
_TRUNCATION_SLACK_FRACTION = 0.02


@dataclasses.dataclass(frozen=True, eq=False)
class Video:
  """Decoded video: frames (T, H, W, 3) uint8 RGB at a constant `fps`.

  `audio` is mono float32 aligned so that sample 0 plays with frame 0 (None when the file has
  no audio stream or it was not requested); `source_fps` is the file's average frame rate.
  """

  frames: np.ndarray
  fps: float
  audio: np.ndarray | None
  sample_rate: int | None
  source_fps: float

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])

  @property
  def duration(self) -> float:
    """Seconds covered by the frames: T / fps."""
    return self.num_frames / self.fps


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `probe_video` learns from the container without decoding frames."""

  num_frames: int
  fps: float
  width: int
  height: int
  duration: float
  has_audio: bool
  audio_sample_rate: int | None


def _open(path) -> av.container.InputContainer:
  audio_io.check_readable(path)
  try:
    return av.open(os.fspath(path))
  except (av.error.FFmpegError, UnicodeDecodeError) as error:
    reason = audio_io.ffmpeg_reason(error)
    raise InputError(path, f"not a readable media file ({reason})") from error


def _video_stream(container, path):
  """The first real video stream; cover art (attached pictures) does not count."""
  for stream in container.streams.video:
    if not stream.disposition & av.stream.Disposition.attached_pic:
      return stream
  raise InputError(path, "no video stream in file (audio-only?)")


def _stream_fps(stream) -> float | None:
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  return float(rate) if rate else None


def _stream_duration(stream, container) -> float | None:
  if stream.duration is not None and stream.time_base is not None:
    return float(stream.duration * stream.time_base)
  if container.duration is not None:
    return container.duration / av.time_base
  return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
  """Frame count, rate, size, duration and audio presence from the headers.

  When the container does not state a frame count, packets are counted (demuxing only, no
  decoding). Raises InputError for missing, empty, unreadable or video-less files.
  """
  container = _open(path)
  with container:
    stream = _video_stream(container, path)
    num_frames = int(stream.frames or 0)
    if num_frames == 0:
      try:
        num_frames = sum(1 for packet in container.demux(stream) if packet.size)
      except av.error.FFmpegError as error:
        raise InputError(path, f"cannot read packets ({audio_io.ffmpeg_reason(error)})") from error
    if num_frames == 0:
      raise InputError(path, "video stream has no frames")
    fps = _stream_fps(stream)
    duration = _stream_duration(stream, container)
    if fps is None and duration:
      fps = num_frames / duration
    if duration is None and fps:
      duration = num_frames / fps
    audio = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        num_frames=num_frames,
        fps=float(fps or 0.0),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
        duration=float(duration or 0.0),
        has_audio=audio is not None,
        audio_sample_rate=None if audio is None else int(audio.rate),
    )


def _timed_frames(container, stream, path) -> Iterator[tuple[fractions.Fraction, av.VideoFrame]]:
  """(exact presentation time in seconds, frame) in display order, times strictly increasing.

  Times are Fractions (pts · time_base), so the nearest-frame choice has no rounding ties.
  A frame without a timestamp is placed one nominal frame after the previous one; a frame
  whose time does not advance (duplicate or out-of-order pts) is dropped.
  """
  nominal_step = 1 / fractions.Fraction(_stream_fps(stream) or 25).limit_denominator(1001)
  previous = None
  try:
    for frame in container.decode(stream):
      if frame.pts is not None and frame.time_base is not None:
        time = frame.pts * fractions.Fraction(frame.time_base)
      else:
        time = fractions.Fraction(0) if previous is None else previous + nominal_step
      if previous is not None and time <= previous:
        continue
      previous = time
      yield time, frame
  except av.error.FFmpegError as error:
    raise InputError(path, f"video decoding failed, file truncated or corrupt "
                     f"({audio_io.ffmpeg_reason(error)})") from error


class _SourceFrame:
  """A decoded frame and its time; converted to RGB only if some output frame uses it."""

  def __init__(self, time, frame):
    self.time, self._frame, self._rgb = time, frame, None

  def rgb(self) -> np.ndarray:
    if self._rgb is None:
      self._rgb, self._frame = self._frame.to_ndarray(format="rgb24"), None
    return self._rgb


def _resample_to_constant_rate(timed_frames, fps: float | None):
  """Picks, for each output time k/fps (from the first frame), the nearest source frame.

  Ties go to the earlier frame. The output covers the source's duration (last timestamp
  plus the last frame's duration, estimated as the median frame spacing), rounded to whole
  output frames (half up). Streams, holding one pending source frame. fps=None keeps every
  frame. Returns (frames, source times in seconds from the first, first frame's time).
  """
  out, times = [], []
  start = None
  pending = None
  next_index = 0
  step = None if fps is None else 1 / fractions.Fraction(fps)
  for time, frame in timed_frames:
    if start is None:
      start = time
    current = _SourceFrame(time - start, frame)
    times.append(current.time)
    if fps is None:
      out.append(current.rgb())
      continue
    while pending is not None and next_index * step <= current.time:
      target = next_index * step
      nearer = pending if target - pending.time <= current.time - target else current
      out.append(nearer.rgb())
      next_index += 1
    pending = current
  if fps is None or pending is None:
    return out, [float(t) for t in times], float(start or 0)
  spacing = statistics.median_low(np.diff(times)) if len(times) > 1 else step
  total = max(1, math.floor((times[-1] + spacing) / step + fractions.Fraction(1, 2)))
  while len(out) < total:
    out.append(pending.rgb())
  return out[:total], [float(t) for t in times], float(start)


def _read_audio_for_video(path, video_start: float, sample_rate: int | None):
  decoded = audio_io.decode_audio_stream(path)
  samples = decoded.samples
  # Align sample 0 with the first video frame: trim audio that starts earlier, pad audio
  # that starts later with silence.
  offset = int(round((decoded.start_time - video_start) * decoded.sample_rate))
  if offset < 0:
    samples = samples[-offset:]
  elif offset > 0:
    samples = np.concatenate([np.zeros(offset, np.float32), samples])
  rate = decoded.sample_rate
  if sample_rate is not None and sample_rate != rate:
    samples, rate = audio_io.resample(samples, rate, int(sample_rate)), int(sample_rate)
  return samples, rate


def read_video(path: str | os.PathLike, fps: float | None = 25, with_audio: bool = True,
               audio_sample_rate: int | None = None) -> Video:
  """Decodes a video file to RGB uint8 frames at a constant `fps` (None: keep all frames).

  Audio (when present and `with_audio`) is mono float32 at `audio_sample_rate` (None: the
  file's rate). Raises InputError naming the file when it is missing, empty, unreadable,
  truncated, has no video stream, or no frame decodes.
  """
  if fps is not None and fps <= 0:
    raise ValueError(f"fps must be positive, got {fps!r}")
  container = _open(path)
  with container:
    stream = _video_stream(container, path)
    stream.thread_type = "AUTO"
    expected = int(stream.frames or 0)
    source_fps = _stream_fps(stream)
    frames, times, start = _resample_to_constant_rate(
        _timed_frames(container, stream, path), fps)
    has_audio = bool(container.streams.audio)
  if not frames:
    raise InputError(path, "no decodable video frames")
  if expected and len(times) < expected - max(_TRUNCATION_SLACK_FRAMES,
                                              _TRUNCATION_SLACK_FRACTION * expected):
    raise InputError(path, f"truncated or corrupt: decoded {len(times)} of {expected} frames")
  if source_fps is None:
    span = times[-1] - times[0]
    source_fps = (len(times) - 1) / span if span > 0 else float(fps or 25)
  audio, sample_rate = None, None
  if with_audio and has_audio:
    audio, sample_rate = _read_audio_for_video(path, start, audio_sample_rate)
  return Video(
      frames=np.stack(frames),
      fps=float(fps if fps is not None else source_fps),
      audio=audio,
      sample_rate=sample_rate,
      source_fps=float(source_fps),
  )


def _check_frames(frames) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {frames.shape}")
  if frames.dtype != np.uint8:
    raise ValueError(f"frames must be uint8, got {frames.dtype}")
  if frames.shape[0] == 0:
    raise ValueError("no frames to write")
  height, width = frames.shape[1:3]
  if height % 2 or width % 2:
    raise ValueError(f"H.264 yuv420p needs even frame sizes, got {width}x{height}; "
                     "crop or pad the frames to even width and height")
  return frames


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25,
                audio: np.ndarray | None = None, sample_rate: int | None = None,
                crf: int = 18, preset: str = "medium") -> None:
  """Writes (T, H, W, 3) uint8 RGB frames (+ optional mono audio) as an H.264/AAC mp4.

  H and W must be even (yuv420p). Audio at a rate AAC cannot store (e.g. 50 kHz) is
  resampled to 48 kHz. The file is written next to `path` under a temporary name and renamed
  into place; parent folders are created.
  """
  frames = _check_frames(frames)
  with VideoWriter(path, width=frames.shape[2], height=frames.shape[1], fps=fps, audio=audio,
                   sample_rate=sample_rate, crf=crf, preset=preset) as writer:
    writer.write(frames)


class VideoWriter:
  """An H.264/AAC mp4 written frame batch by frame batch (what `write_video` writes), so a
  long video never has to be in memory at once:

      with VideoWriter(path, width, height, fps=25, audio=audio, sample_rate=rate) as writer:
        for frames in batches:        # uint8 (n, height, width, 3) or (height, width, 3)
          writer.write(frames)

  The audio (known up front) is muxed alongside: with frame i go the samples from
  round(i·rate/fps) to round((i+1)·rate/fps); whatever is left when the writer closes follows
  the last frame. Written to a temporary file beside `path`, renamed into place when the block
  ends without an error (removed otherwise).
  """

  def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float = 25,
               audio: np.ndarray | None = None, sample_rate: int | None = None, crf: int = 18,
               preset: str = "medium"):
    if fps <= 0:
      raise ValueError(f"fps must be positive, got {fps!r}")
    if width % 2 or height % 2 or width < 2 or height < 2:
      raise ValueError(f"H.264 yuv420p needs even frame sizes, got {width}x{height}; "
                       "crop or pad the frames to even width and height")
    if audio is not None:
      if sample_rate is None:
        raise ValueError("sample_rate is required with audio")
      audio = np.asarray(audio, dtype=np.float32)
      if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {audio.shape}")
      sample_rate = int(sample_rate)
      if sample_rate not in AAC_SAMPLE_RATES:
        audio, sample_rate = audio_io.resample(audio, sample_rate, 48000), 48000
    self.path = path
    self.width, self.height = int(width), int(height)
    self.rate = fractions.Fraction(fps).limit_denominator(1001)
    self.audio, self.sample_rate = audio, sample_rate
    self.crf, self.preset = int(crf), preset
    self.frames_written = 0
    self._stack: contextlib.ExitStack | None = None
    self._container = None

  def __enter__(self) -> "VideoWriter":
    self._stack = contextlib.ExitStack()
    with self._stack:  # unwinds (removing the temporary file) if opening fails
      temporary = self._stack.enter_context(atomic_write_path(self.path))
      # The muxer creates the temporary file itself, so it gets the usual permissions.
      self._container = av.open(str(temporary), mode="w", format="mp4", options={"movflags": "+faststart"})
      self._stack.callback(self._container.close)
      self._video = self._container.add_stream("libx264", rate=self.rate)
      self._video.width, self._video.height = self.width, self.height
      self._video.pix_fmt = "yuv420p"
      self._video.options = {"crf": str(self.crf), "preset": self.preset}
      self._sound = None
      if self.audio is not None:
        self._sound = self._container.add_stream("aac", rate=self.sample_rate)
        self._sound.layout = "mono"
      self._stack = self._stack.pop_all()
    return self

  def _audio_bound(self, frame: int) -> int:
    return min(self.audio.size, int(round(frame * self.sample_rate / float(self.rate))))

  def _mux_audio(self, start: int, stop: int) -> None:
    if stop <= start:
      return
    chunk = av.AudioFrame.from_ndarray(self.audio[None, start:stop], format="fltp", layout="mono")
    chunk.sample_rate, chunk.pts, chunk.time_base = self.sample_rate, start, fractions.Fraction(1, self.sample_rate)
    self._container.mux(self._sound.encode(chunk))

  def write(self, frames: np.ndarray) -> None:
    """Appends uint8 RGB frames (n, height, width, 3), or one frame (height, width, 3)."""
    if self._container is None:
      raise RuntimeError("VideoWriter.write outside its `with` block")
    frames = np.asarray(frames)
    frames = _check_frames(frames[None] if frames.ndim == 3 else frames)
    if frames.shape[1:3] != (self.height, self.width):
      raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[1]}, the video is {self.width}x{self.height}")
    for image in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
      frame.pts, frame.time_base = self.frames_written, 1 / self.rate
      self._container.mux(self._video.encode(frame))
      if self._sound is not None:
        self._mux_audio(self._audio_bound(self.frames_written), self._audio_bound(self.frames_written + 1))
      self.frames_written += 1

  def _finish(self) -> None:
    if self.frames_written == 0:
      raise ValueError("no frames to write")
    if self._sound is not None:  # the audio past the last frame's share
      self._mux_audio(self._audio_bound(self.frames_written), self.audio.size)
    self._container.mux(self._video.encode(None))
    if self._sound is not None:
      self._container.mux(self._sound.encode(None))

  def __exit__(self, exc_type, exc, traceback):
    stack, self._stack = self._stack, None
    container, self._container = self._container, None
    if exc is not None:  # closes the container and removes the temporary file
      return stack.__exit__(exc_type, exc, traceback)
    self._container = container
    with stack:  # closes the container, then renames the file into place (removes it on an error)
      self._finish()
    self._container = None
    return False
