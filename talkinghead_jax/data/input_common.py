"""What every stage's sampler shares: the sampler interface, the epoch plan, and numpy helpers
for frames, audio and smoothing. Pure numpy (+ OpenCV for JPEG); the TensorFlow plumbing is in
`pipelines.py`.

A *sampler* turns one decoded clip (a dict of numpy arrays with the tfds feature names, see
docs/data.md) into one training sample (a dict with the stage's batch names, `schema.py`),
drawing every random choice from the `numpy.random.Generator` it is given. The pipeline gives
sample `e` of epoch `n` the generator `default_rng([seed, n, e, salt])`, so a sample depends on
(seed, epoch, position) only: not on threads, hosts or where a run was resumed.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
from scipy import ndimage

from talkinghead_jax.audio import frame_windows, resample, samples_per_frame
from talkinghead_jax.errors import ConfigError, TalkingHeadError

INT16_SCALE = 32767.0
AUDIO_PREFIX = "audio_"
_ORDER_SALT = 0x0D0E
_NOISE_SALT = 0xBAB1


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetArtifacts:
  """What a prepared data set keeps beside its examples (`data.tfds.PreparedDataset`).

  canonical (68, 3) crop px; pca a `geometry.pca.LandmarkPCA`; info {"size", "audio_rates",
  "fps", ...}; features: the names of the features the examples have.
  """

  canonical: np.ndarray
  pca: Any
  info: Mapping[str, Any]
  features: frozenset[str]


class StageSampler(abc.ABC):
  """One stage's per-clip sample function (see the module docstring)."""

  stage: str = ""
  salt: int = 0  # keeps different stages' draws for the same (seed, epoch, e) apart
  input_features: tuple[str, ...] = ()  # the clip features `sample` reads
  noise_features: tuple[str, ...] = ()  # features of a second clip it reads (babble noise)
  min_frames: int = 1  # clips shorter than this are skipped (see EpochPlan.clip_at)

  @abc.abstractmethod
  def output_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (per-sample shape, dtype)} of what `sample` returns."""

  @abc.abstractmethod
  def sample(self, clip: Mapping[str, np.ndarray], rng: np.random.Generator,
             noise_clip: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One training sample from one clip."""


def data_field(data_config, name: str, default: Any) -> Any:
  """`config.data.<name>`, or `default` where the config does not have the field."""
  value = data_config.get(name, default) if hasattr(data_config, "get") else default
  return default if value is None else value


def sample_rng(seed: int, epoch: int, position: int, salt: int) -> np.random.Generator:
  return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(position), int(salt)])


class EpochPlan:
  """Which clip each sample of an epoch comes from.

  An epoch is `num_clips · samples_per_clip` slots (each clip repeated), in an order drawn from
  (seed, epoch) (or kept, without shuffling). Slot e's sample comes from the first clip at or
  after position e of that order (cyclically) that has at least `min_frames` frames: a clip too
  short for the stage hands its turn to the next one. This is a function of the order and the
  clip lengths only, so every reader (any host, any thread, a resumed run) agrees on it.
  """

  def __init__(self, num_clips: int, samples_per_clip: int, seed: int, shuffle: bool):
    if num_clips < 1:
      raise TalkingHeadError("the data set split has no clips")
    if samples_per_clip < 1:
      raise ConfigError(f"data.samples_per_clip must be >= 1, got {samples_per_clip}")
    self.num_clips = int(num_clips)
    self.samples_per_clip = int(samples_per_clip)
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self._orders: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  @property
  def num_slots(self) -> int:
    return self.num_clips * self.samples_per_clip

  def order(self, epoch: int) -> np.ndarray:
    """(num_slots,) clip index of each slot of `epoch`, cached for the last few epochs."""
    with self._lock:
      order = self._orders.get(epoch)
      if order is None:
        order = np.repeat(np.arange(self.num_clips, dtype=np.int64), self.samples_per_clip)
        if self.shuffle:
          rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(epoch), _ORDER_SALT])
          order = order[rng.permutation(len(order))]
        order.setflags(write=False)
        for old in sorted(self._orders)[:-2]:
          del self._orders[old]
        self._orders[epoch] = order
    return order

  def clip_at(self, epoch: int, position: int, frames_of: Callable[[int], int], min_frames: int) -> int:
    """The clip of slot `position` (see the class docstring); `frames_of(clip)` its length."""
    order = self.order(epoch)
    count = len(order)
    for step in range(count):
      clip = int(order[(position + step) % count])
      if min_frames <= 1 or frames_of(clip) >= min_frames:
        return clip
    raise TalkingHeadError(f"no clip of the split has the {min_frames} frames this stage needs")

  def noise_clip_at(self, epoch: int, position: int, avoid: int) -> int:
    """A second clip for slot `position` (babble noise): another order, never `avoid`."""
    if self.num_clips < 2:
      raise TalkingHeadError("babble noise needs at least 2 clips in the split (or set data.noise_dir)")
    rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(epoch), int(position), _NOISE_SALT])
    clip = int(rng.integers(self.num_clips - 1))
    return clip + 1 if clip >= avoid else clip


# --- Frames ------------------------------------------------------------------------------------


def decode_frames(frames: np.ndarray, indices: Sequence[int]) -> np.ndarray:
  """Frames `indices` of a clip: (n, H, W, 3) uint8 RGB.

  `frames` is either decoded, (T, H, W, 3) uint8, or encoded, (T,) JPEG/PNG bytes (tfds stores
  video frames as JPEG; the pipeline leaves them encoded so that only the frames a sample
  uses are decoded, here with OpenCV).
  """
  indices = [int(i) for i in indices]
  if frames.dtype == np.uint8 and frames.ndim == 4:
    return frames[indices]
  if not indices:
    return np.zeros((0, 0, 0, 3), np.uint8)
  out = []
  for i in indices:
    data = np.frombuffer(frames[i], np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
      raise TalkingHeadError(f"frame {i} of a clip is not a decodable image")
    out.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
  return np.stack(out)


IDENTITY_2X3 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def warp_images(images: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """Images (n, H, W, C) under the affine map p' = matrix[:, :2]·p + matrix[:, 2] of the
  project's pixel coordinates (centres at i + 0.5), bilinear, zeros outside, output
  (n, size, size, C). The identity is a copy."""
  matrix = np.asarray(matrix, np.float64)
  if np.array_equal(matrix, IDENTITY_2X3) and images.shape[1:3] == (size, size):
    return images.copy()
  # OpenCV puts pixel centres at integers: p_cv = p − 0.5.
  opencv = matrix.copy()
  opencv[:, 2] += matrix[:, :2].sum(axis=1) * 0.5 - 0.5
  out = [cv2.warpAffine(image, opencv, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0) for image in images]
  out = np.stack(out)
  return out.reshape((len(images), size, size) + images.shape[3:])


# --- Audio -------------------------------------------------------------------------------------


def stored_rates(features: Sequence[str]) -> list[int]:
  rates = []
  for name in features:
    if name.startswith(AUDIO_PREFIX) and name[len(AUDIO_PREFIX):].isdigit():
      rates.append(int(name[len(AUDIO_PREFIX):]))
  return sorted(rates)


def audio_source(features: Sequence[str], sample_rate: int) -> tuple[str, int]:
  """(feature name, its rate) to read audio at `sample_rate` from: that rate if stored, else the
  highest stored rate (resampled when read)."""
  rates = stored_rates(features)
  if not rates:
    raise TalkingHeadError("the data set stores no audio (no audio_<rate> feature)")
  rate = int(sample_rate) if int(sample_rate) in rates else rates[-1]
  return f"{AUDIO_PREFIX}{rate}", rate


def clip_audio(samples: np.ndarray, stored_rate: int, sample_rate: int) -> np.ndarray:
  """int16 samples at `stored_rate` -> float32 in [-1, 1] at `sample_rate` (soxr if they differ)."""
  audio = np.asarray(samples).astype(np.float32) / INT16_SCALE
  if int(stored_rate) != int(sample_rate):
    audio = resample(audio, int(stored_rate), int(sample_rate))
  return audio


def chunk_index(num_chunks: int, num_frames: int, fps: int, context: int, pad_mode: str = "upstream") -> np.ndarray:
  """(num_frames, 2·context+1) chunk of each window slot, −1 for silence.

  The same mapping `audio.frame_windows` applies to the whole clip (edge padding and all),
  obtained by running it on one "sample" per chunk that holds the chunk's number.
  """
  marks = np.arange(1, num_chunks + 1, dtype=np.float64)
  windows = frame_windows(marks, sample_rate=fps, fps=fps, context=context, num_frames=num_frames,
                          pad_mode=pad_mode)
  return windows[..., 0].astype(np.int64) - 1


def windows_for_frames(audio: np.ndarray, sample_rate: int, fps: int, context: int, num_frames: int,
                       start: int, stop: int, pad_mode: str = "upstream") -> np.ndarray:
  """`audio.frame_windows(audio, …, num_frames=num_frames)[start:stop]`, cutting only those rows.

  The padding is the whole clip's (upstream's), so a window at the clip's edge is the same as
  in the whole-clip windows.
  """
  spf = samples_per_frame(sample_rate, fps)
  num_chunks = -(-audio.size // spf)
  index = chunk_index(num_chunks, num_frames, fps, context, pad_mode)[start:stop]
  chunks = np.zeros((num_chunks + 1, spf), np.float32)  # the last row is the silence
  chunks.reshape(-1)[:audio.size] = audio
  return chunks[np.where(index < 0, num_chunks, index)]


def _hanning(taps: int) -> np.ndarray:
  weights = np.hanning(taps)
  return weights / weights.sum()


def smooth(rows: np.ndarray, taps: int, align: str = "centered") -> np.ndarray:
  """`audio.smooth_windows(rows, taps, align)` in float32 with one scipy pass (the same mirror
  padding and weights; equal to float32 rounding, several times faster)."""
  if align not in ("centered", "upstream"):
    raise ValueError(f"align must be 'centered' or 'upstream', got {align!r}")
  rows = np.asarray(rows, np.float32)
  if taps < 3 or len(rows) == 0:
    return rows.copy()
  # "upstream" centres output t on input t − 1 (origin 1); scipy's "mirror" is numpy's "reflect".
  return ndimage.correlate1d(rows, _hanning(taps), axis=0, mode="mirror", origin=0 if align == "centered" else 1)


def smoothed_rows(rows_of: Callable[[int, int], np.ndarray], total: int, start: int, length: int,
                  taps: int, align: str = "centered") -> np.ndarray:
  """`smooth(all rows, taps, align)[start:start+length]` from a few rows only.

  `rows_of(lo, hi)` gives rows [lo, hi) of a series of `total` rows. Output row t depends on
  input rows within taps/2 + 1 of it, and the reflection padding only matters at the series'
  own ends, so smoothing the rows [start − m, start + length + m) (clipped to the series) with
  m = taps/2 + 1 gives exactly the rows of the whole series' smoothing.
  """
  margin = taps // 2 + 1
  low, high = max(0, start - margin), min(total, start + length + margin)
  smoothed = smooth(rows_of(low, high), taps, align)
  return smoothed[start - low:start - low + length]


def smoothed_windows(audio: np.ndarray, sample_rate: int, fps: int, context: int, num_frames: int, start: int,
                     length: int, taps: int, align: str = "centered") -> np.ndarray:
  """`smooth(frame_windows(audio, …, num_frames), taps, align)[start:start+length]`, cheaply.

  Away from the clip's ends, window t is chunks t−C … t+C, so smoothing the windows over time
  is smoothing the chunk sequence and cutting windows from it: 2C+1 times less work. Rows whose
  smoothing reaches a padded window or the clip's ends are computed the direct way.
  """
  spf = samples_per_frame(sample_rate, fps)
  num_chunks = -(-audio.size // spf)
  index = chunk_index(num_chunks, num_frames, fps, context)
  width = 2 * context + 1
  regular = np.all(index == np.arange(num_frames)[:, None] + np.arange(-context, context + 1)[None, :], axis=1)
  half, lag = taps // 2, (0 if align == "centered" else 1)
  # Output t reads input rows t − half − lag … t + half − lag: simple if all are regular rows.
  first, last = np.arange(num_frames) - half - lag, np.arange(num_frames) + half - lag
  inside = (first >= 0) & (last < num_frames)
  irregular = np.concatenate([[0], np.cumsum(~regular)])
  simple = inside.copy()
  simple[inside] = irregular[last[inside] + 1] - irregular[first[inside]] == 0
  if taps < 3:
    simple[:] = False

  chunks = np.zeros((num_chunks, spf), np.float32)
  chunks.reshape(-1)[:audio.size] = audio
  out = np.empty((length, width, spf), np.float32)
  rows = np.arange(start, start + length)
  easy = simple[rows]
  if easy.any():
    low_chunk = int(rows[easy][0]) - context - half - lag
    high_chunk = int(rows[easy][-1]) + context + half - lag + 1
    smoothed_chunks = smooth(chunks[low_chunk:high_chunk], taps, align)
    # smoothed_chunks[i] is centred (with the lag) on chunk low_chunk + i, and reads only real chunks.
    wanted = index[rows[easy]] - low_chunk
    out[easy] = smoothed_chunks[wanted]
  hard = np.flatnonzero(~easy)
  for run in np.split(hard, np.flatnonzero(np.diff(hard) > 1) + 1) if len(hard) else []:
    out[run] = smoothed_rows(
        lambda low, high: windows_for_frames(audio, sample_rate, fps, context, num_frames, low, high),
        num_frames, start + int(run[0]), len(run), taps, align)
  return out


def noise_segment(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
  """`length` samples of `audio` from a random offset, read circularly (zeros if it is empty)."""
  if audio.size == 0:
    return np.zeros(length, np.float32)
  start = int(rng.integers(audio.size))
  return np.take(audio, np.arange(start, start + length), mode="wrap").astype(np.float32)
