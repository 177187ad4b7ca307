"""Per-video-frame raw-waveform windows, as both audio learners consume them.

Video frame t owns the chunk of samples [t·spf, (t+1)·spf) with spf = sample_rate // fps
(640 at 16 kHz, 2000 at 50 kHz). Its window stacks the chunks t−C … t+C (C = `context`,
3 upstream), so it is centred on the frame. Chunks outside the audio are filled as
upstream's RotateAudio/dataset.py does (see `frame_windows`).

Scale: upstream feeds the raw int16 sample values of its 16 kHz wav files; here audio is
float32 in [-1, 1], so upstream's inputs are ours × 32768.
"""

from __future__ import annotations

import numpy as np

PAD_MODES = ("upstream", "edge", "zeros")


def samples_per_frame(sample_rate: int, fps: int = 25) -> int:
  """sample_rate // fps; raises ValueError unless a frame is a whole number of samples."""
  if int(fps) != fps or fps <= 0:
    raise ValueError(f"fps must be a positive integer, got {fps!r}")
  if int(sample_rate) != sample_rate or sample_rate <= 0:
    raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
  sample_rate, fps = int(sample_rate), int(fps)
  if sample_rate % fps:
    raise ValueError(
        f"sample_rate {sample_rate} Hz is not a whole number of samples per frame at {fps} fps; "
        f"resample to a multiple of {fps} Hz (e.g. 16000 or 50000)")
  return sample_rate // fps


def frame_windows(audio: np.ndarray, sample_rate: int, fps: int = 25, context: int = 3,
                  num_frames: int | None = None, pad_mode: str = "upstream") -> np.ndarray:
  """Cuts mono audio into one (2·context+1, spf) window per video frame.

  Returns float32 (T, 2·context+1, spf); window[t, k] is chunk t + k − context of the
  extended chunk sequence below, so slot `context` is frame t's own chunk.

  Chunks: the audio is cut into N = ceil(len(audio) / spf) chunks, the last one zero-filled
  if partial. T = floor(len(audio) / spf) = floor(duration · fps) (whole chunks only), or
  `num_frames`, e.g. a video's frame count: a larger T reads further into the extension, a
  smaller one keeps the real audio after frame T−1 as right context.

  Extension of the N chunks to indices j < 0 and j ≥ N (C = context), by `pad_mode`:
    "upstream": [copy of chunks 0…C−1] + chunks 0…N−1 + [copy of chunks N−C−1…N−1] +
        silence, as RotateAudio `parse_audio` pads its samples (3 chunks in front, 4
        behind): j < 0 → chunk j + C, N ≤ j ≤ N+C → chunk j − (C+1), beyond → zeros.
        So for C = 3 frame 0 sees chunks [0, 1, 2, 0, 1, 2, 3]. Upstream inserts the
        tail copy before the very last sample (np.insert(x, -1, …)); we append it after
        it. With N < C+1 the copied index is clamped into [0, N).
    "edge": chunk 0 repeated before, chunk N−1 repeated after.
    "zeros": silence on both sides.
  """
  if pad_mode not in PAD_MODES:
    raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
  if int(context) != context or context < 0:
    raise ValueError(f"context must be a non-negative integer, got {context!r}")
  context = int(context)
  spf = samples_per_frame(sample_rate, fps)
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim != 1:
    raise ValueError(f"expected mono audio of shape (n,), got {audio.shape}")
  if num_frames is None:
    num_frames = audio.size // spf
  elif int(num_frames) != num_frames or num_frames < 0:
    raise ValueError(f"num_frames must be a non-negative integer, got {num_frames!r}")
  num_frames = int(num_frames)
  width = 2 * context + 1
  if num_frames == 0:
    return np.zeros((0, width, spf), np.float32)

  num_chunks = -(-audio.size // spf)
  silent = num_chunks  # Index of an extra all-zero row.
  chunks = np.zeros((num_chunks + 1, spf), np.float32)
  chunks.reshape(-1)[:audio.size] = audio
  index = np.arange(num_frames)[:, None] + np.arange(-context, context + 1)[None, :]
  if num_chunks == 0:
    return chunks[np.full_like(index, silent)]
  before, after = index < 0, index >= num_chunks
  if pad_mode == "upstream":
    tail = index - (context + 1)
    mapped = np.where(before, index + context, np.where(after, tail, index))
    mapped = np.clip(mapped, 0, num_chunks - 1)
    index = np.where(after & (tail >= num_chunks), silent, mapped)
  elif pad_mode == "edge":
    index = np.clip(index, 0, num_chunks - 1)
  else:
    index = np.where(before | after, silent, index)
  return chunks[index]


def _hanning_weights(taps: int) -> np.ndarray:
  weights = np.hanning(taps)
  return weights / weights.sum()


def smooth_windows(windows: np.ndarray, taps: int = 21, align: str = "centered") -> np.ndarray:
  """Smooths every (slot, sample) series over time (axis 0) with a normalised Hanning window.

  Upstream (RotateAudio) smooths each windows[:, i, j] with np.hanning(21) / sum after
  mirror-padding (reflection without repeating the edge value). Its trimming makes output t
  centred on input t−1 (a one-frame lag); `align="upstream"` reproduces that exactly,
  `align="centered"` (default) centres output t on input t. The length is unchanged. Works on
  any array whose axis 0 is time; taps < 3 returns a copy, as upstream does.
  """
  if align not in ("centered", "upstream"):
    raise ValueError(f"align must be 'centered' or 'upstream', got {align!r}")
  if int(taps) != taps or taps < 1 or taps % 2 == 0:
    raise ValueError(f"taps must be a positive odd integer, got {taps!r}")
  windows = np.asarray(windows)
  out_dtype = windows.dtype if np.issubdtype(windows.dtype, np.floating) else np.float32
  if taps < 3 or windows.shape[0] == 0:
    return windows.astype(out_dtype, copy=True)
  half = taps // 2
  pad_before, pad_after = (half, half) if align == "centered" else (half + 1, half - 1)
  widths = [(pad_before, pad_after)] + [(0, 0)] * (windows.ndim - 1)
  padded = np.pad(windows.astype(np.float64), widths, mode="reflect")
  length = windows.shape[0]
  out = np.zeros((length,) + windows.shape[1:], np.float64)
  for tap, weight in enumerate(_hanning_weights(taps)):
    out += weight * padded[tap:tap + length]
  return out.astype(out_dtype)
