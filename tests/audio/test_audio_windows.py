"""Per-frame audio windows: chunk placement, edge padding, shapes and Hanning smoothing."""

import numpy as np
import pytest

from talkinghead_jax import audio

SPF_16K = 640


def _ramp_audio(num_chunks: int, spf: int = SPF_16K) -> np.ndarray:
  """Audio whose chunk j holds the constant value j, so a window shows which chunks it took."""
  return np.repeat(np.arange(num_chunks, dtype=np.float32), spf)


def _chunk_ids(windows: np.ndarray) -> np.ndarray:
  """(T, 7) chunk value of every slot; each slot must be a constant chunk."""
  assert np.all(windows == windows[..., :1])
  return windows[..., 0].astype(int)


def _impulse_slots(windows: np.ndarray, offset: int) -> set[tuple[int, int]]:
  hits = np.argwhere(windows != 0)
  assert np.all(hits[:, 2] == offset), "impulse moved within its chunk"
  return {(int(t), int(k)) for t, k, _ in hits}


@pytest.mark.parametrize("sample_rate,spf", [(16000, 640), (50000, 2000)])
def test_shapes_and_frame_count(sample_rate, spf):
  two_seconds = np.zeros(2 * sample_rate, np.float32)
  windows = audio.frame_windows(two_seconds, sample_rate)
  assert windows.shape == (50, 7, spf) and windows.dtype == np.float32
  # A trailing partial chunk does not make a frame of its own (T = floor(duration · fps)).
  assert audio.frame_windows(two_seconds[:-1], sample_rate).shape[0] == 49
  assert audio.frame_windows(np.zeros(spf * 3 + 5, np.float32), sample_rate).shape[0] == 3
  assert audio.frame_windows(two_seconds, sample_rate, num_frames=60).shape == (60, 7, spf)
  assert audio.frame_windows(two_seconds, sample_rate, num_frames=7).shape == (7, 7, spf)
  assert audio.frame_windows(two_seconds, sample_rate, context=1).shape == (50, 3, spf)
  assert audio.frame_windows(np.zeros(10, np.float32), sample_rate).shape == (0, 7, spf)


def test_rejects_rates_that_do_not_divide():
  assert audio.samples_per_frame(16000) == 640 and audio.samples_per_frame(50000) == 2000
  with pytest.raises(ValueError, match="16001"):
    audio.frame_windows(np.zeros(32000, np.float32), 16001)
  with pytest.raises(ValueError, match="whole number"):
    audio.frame_windows(np.zeros(32000, np.float32), 16000, fps=30)
  with pytest.raises(ValueError, match="pad_mode"):
    audio.frame_windows(np.zeros(32000, np.float32), 16000, pad_mode="reflect")


def test_upstream_padding_copies_first_three_and_last_four_chunks():
  ids = _chunk_ids(audio.frame_windows(_ramp_audio(10), 16000))
  assert ids.shape == (10, 7)
  np.testing.assert_array_equal(ids[0], [0, 1, 2, 0, 1, 2, 3])
  np.testing.assert_array_equal(ids[1], [1, 2, 0, 1, 2, 3, 4])
  np.testing.assert_array_equal(ids[2], [2, 0, 1, 2, 3, 4, 5])
  np.testing.assert_array_equal(ids[3], [0, 1, 2, 3, 4, 5, 6])
  np.testing.assert_array_equal(ids[5], [2, 3, 4, 5, 6, 7, 8])
  np.testing.assert_array_equal(ids[7], [4, 5, 6, 7, 8, 9, 6])
  np.testing.assert_array_equal(ids[8], [5, 6, 7, 8, 9, 6, 7])
  np.testing.assert_array_equal(ids[9], [6, 7, 8, 9, 6, 7, 8])


@pytest.mark.parametrize("sample_rate", [16000, 50000])
def test_upstream_mode_matches_upstream_sample_slicing(sample_rate):
  # Upstream (RotateAudio parse_audio) pads the sample stream with its first 3 chunks and
  # its last 4 chunks and slices 7 chunks from t·spf. Reference written that way, with the
  # tail copy appended after the last sample (upstream's np.insert(…, -1, …) is one sample off).
  spf = sample_rate // 25
  signal = np.random.default_rng(0).standard_normal(spf * 12).astype(np.float32)
  padded = np.concatenate([signal[:3 * spf], signal, signal[-4 * spf:]])
  reference = np.stack([padded[t * spf:t * spf + 7 * spf] for t in range(12)]).reshape(12, 7, spf)
  np.testing.assert_array_equal(audio.frame_windows(signal, sample_rate), reference)


def test_edge_and_zero_padding():
  edge = _chunk_ids(audio.frame_windows(_ramp_audio(10), 16000, pad_mode="edge"))
  np.testing.assert_array_equal(edge[0], [0, 0, 0, 0, 1, 2, 3])
  np.testing.assert_array_equal(edge[1], [0, 0, 0, 1, 2, 3, 4])
  np.testing.assert_array_equal(edge[9], [6, 7, 8, 9, 9, 9, 9])
  ramp_from_one = _ramp_audio(10) + 1  # Chunk j holds j + 1, silence reads 0.
  zeros = _chunk_ids(audio.frame_windows(ramp_from_one, 16000, pad_mode="zeros"))
  np.testing.assert_array_equal(zeros[0], [0, 0, 0, 1, 2, 3, 4])
  np.testing.assert_array_equal(zeros[8], [6, 7, 8, 9, 10, 0, 0])


@pytest.mark.parametrize(
    "pad_mode,chunk,offset,expected",
    [
        # Mid-clip: chunk 5 is seen by frames 2…8, sliding from the last slot to the first.
        ("upstream", 5, 17, {(2, 6), (3, 5), (4, 4), (5, 3), (6, 2), (7, 1), (8, 0)}),
        # The very first sample: its own frames plus the front copy (chunk −3 → chunk 0).
        ("upstream", 0, 0, {(0, 0), (0, 3), (1, 2), (2, 1), (3, 0)}),
        ("upstream", 1, 300, {(0, 1), (1, 0), (0, 4), (1, 3), (2, 2), (3, 1), (4, 0)}),
        # Chunk N−4 is also the first chunk of the tail copy (chunk N → chunk N−4).
        ("upstream", 6, 5, {(3, 6), (4, 5), (5, 4), (6, 3), (7, 2), (8, 1), (9, 0),
                            (7, 6), (8, 5), (9, 4)}),
        # The very last sample appears only where the clip really has it.
        ("upstream", 9, 639, {(6, 6), (7, 5), (8, 4), (9, 3)}),
        ("edge", 0, 0, {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0),
                        (2, 1), (3, 0)}),
        ("edge", 9, 639, {(6, 6), (7, 5), (7, 6), (8, 4), (8, 5), (8, 6), (9, 3), (9, 4),
                          (9, 5), (9, 6)}),
        ("zeros", 0, 0, {(0, 3), (1, 2), (2, 1), (3, 0)}),
    ],
)
def test_impulse_lands_in_the_right_frames_and_slots(pad_mode, chunk, offset, expected):
  signal = np.zeros(10 * SPF_16K, np.float32)
  signal[chunk * SPF_16K + offset] = 1.0
  windows = audio.frame_windows(signal, 16000, pad_mode=pad_mode)
  assert _impulse_slots(windows, offset) == expected
  assert np.all(windows[windows != 0] == 1.0)


def test_partial_chunk_is_zero_filled_and_used_as_right_context():
  signal = np.concatenate([np.zeros(4 * SPF_16K, np.float32), np.ones(100, np.float32)])
  windows = audio.frame_windows(signal, 16000)
  assert windows.shape[0] == 4
  # Frame 3's slot 4 is chunk 4: the 100 real samples, then zero fill.
  np.testing.assert_array_equal(windows[3, 4, :100], 1.0)
  np.testing.assert_array_equal(windows[3, 4, 100:], 0.0)
  # Chunk 4 is right context of frames 1-3 only; the tail copy covers chunks 5, 6 → 1, 2.
  assert {(int(t), int(k)) for t, k in np.argwhere(windows[..., 0] != 0)} == {
      (1, 6), (2, 5), (3, 4)}


def test_num_frames_beyond_audio_reads_tail_copy_then_silence():
  # Chunk j holds j + 1; 5 real chunks, tail copy = chunks 1…4 (values 2…5), then zeros.
  longer = _chunk_ids(audio.frame_windows(_ramp_audio(5) + 1, 16000, num_frames=9))
  np.testing.assert_array_equal(longer[0], [1, 2, 3, 1, 2, 3, 4])
  np.testing.assert_array_equal(longer[4], [2, 3, 4, 5, 2, 3, 4])
  np.testing.assert_array_equal(longer[6], [4, 5, 2, 3, 4, 5, 0])
  np.testing.assert_array_equal(longer[8], [2, 3, 4, 5, 0, 0, 0])
  edge = _chunk_ids(audio.frame_windows(_ramp_audio(5) + 1, 16000, num_frames=9,
                                        pad_mode="edge"))
  np.testing.assert_array_equal(edge[8], [5, 5, 5, 5, 5, 5, 5])
  silent = audio.frame_windows(np.zeros(0, np.float32), 16000, num_frames=2)
  assert silent.shape == (2, 7, 640) and not silent.any()


def test_num_frames_below_audio_keeps_real_right_context():
  shorter = _chunk_ids(audio.frame_windows(_ramp_audio(10), 16000, num_frames=3))
  np.testing.assert_array_equal(shorter[2], [2, 0, 1, 2, 3, 4, 5])


def _smooth_reference_upstream(series: np.ndarray, taps: int) -> np.ndarray:
  """The cookbook formula RotateAudio/utils.smooth uses, on one 1-D series."""
  mirrored = np.r_[series[taps - 1:0:-1], series, series[-2:-taps - 1:-1]]
  weights = np.hanning(taps)
  full = np.convolve(weights / weights.sum(), mirrored, mode="valid")
  return full[(taps // 2 - 1):-(taps // 2 + 1)]


def _smooth_reference_centered(series: np.ndarray, taps: int) -> np.ndarray:
  half = taps // 2
  weights = np.hanning(taps) / np.hanning(taps).sum()
  out = np.zeros_like(series, dtype=np.float64)
  for t in range(series.size):
    for m in range(-half, half + 1):
      j = t + m
      j = -j if j < 0 else (2 * (series.size - 1) - j if j >= series.size else j)
      out[t] += weights[m + half] * series[j]
  return out


@pytest.mark.parametrize("taps", [21, 11, 5])
def test_smoothing_matches_numpy_references(taps):
  windows = np.random.default_rng(1).standard_normal((30, 3, 4)).astype(np.float32)
  upstream = audio.smooth_windows(windows, taps, align="upstream")
  centered = audio.smooth_windows(windows, taps)
  assert upstream.shape == centered.shape == windows.shape
  assert upstream.dtype == np.float32
  for i in range(3):
    for j in range(4):
      series = windows[:, i, j].astype(np.float64)
      np.testing.assert_allclose(upstream[:, i, j], _smooth_reference_upstream(series, taps),
                                 atol=1e-5)
      np.testing.assert_allclose(centered[:, i, j], _smooth_reference_centered(series, taps),
                                 atol=1e-5)


def test_smoothing_known_answers():
  constant = np.full((25, 7, 2), 3.0, np.float32)
  np.testing.assert_allclose(audio.smooth_windows(constant), 3.0, rtol=1e-6)
  impulse = np.zeros((40, 1, 1), np.float32)
  impulse[20] = 1.0
  weights = np.hanning(21) / np.hanning(21).sum()
  np.testing.assert_allclose(audio.smooth_windows(impulse)[10:31, 0, 0], weights, atol=1e-7)
  # Upstream's trimming lags by one frame.
  np.testing.assert_allclose(audio.smooth_windows(impulse, align="upstream")[11:32, 0, 0],
                             weights, atol=1e-7)
  np.testing.assert_array_equal(audio.smooth_windows(impulse, taps=1), impulse)
  with pytest.raises(ValueError):
    audio.smooth_windows(impulse, taps=20)
