"""SynthTalk speech: timeline, formant synthesis at any rate, and the mouth that follows it."""

import numpy as np
import pytest
from scipy import signal

from talkinghead_jax.data import synthtalk_speech as speech


def _speaker(seed=0, **overrides):
  values = speech.sample_speaker(np.random.default_rng(seed)).__dict__ | overrides
  return speech.Speaker(**values)


def _sustained(vowel, seconds=0.6, onset=0):
  """A timeline with one long syllable."""
  return speech.Timeline(
      seconds=seconds + 0.2, start=np.array([0.1]), duration=np.array([seconds]),
      vowel=np.array([vowel]), onset=np.array([onset]), stressed=np.array([False]),
      loudness=np.array([1.0]), phrase=np.array([0]), phrase_start=np.array([0.1]),
      phrase_end=np.array([0.1 + seconds]))


def _frame_rms(audio, sample_rate, fps=25):
  hop = sample_rate // fps
  frames = audio[: audio.size // hop * hop].reshape(-1, hop)
  return np.sqrt((frames ** 2).mean(1))


def test_resonator_has_unit_gain_at_its_centre_and_peaks_there():
  sos = speech._resonator_sos(1000.0, 100.0, 16000)
  freqs, response = signal.sosfreqz(sos[None], worN=8192, fs=16000)
  assert abs(np.abs(response[np.argmin(np.abs(freqs - 1000.0))]) - 1.0) < 1e-3
  assert abs(freqs[np.argmax(np.abs(response))] - 1000.0) < 10.0


def test_timeline_is_ordered_and_fills_the_clip():
  speaker = _speaker()
  timeline = speech.make_timeline(np.random.default_rng(1), 6.0, speaker)
  ends = timeline.start + timeline.duration
  assert np.all(np.diff(timeline.start) > 0) and np.all(ends[:-1] <= timeline.start[1:] + 1e-12)
  assert timeline.start[0] > 0 and ends[-1] > 4.5
  assert 0 < timeline.stressed.mean() < 1
  assert np.all(timeline.phrase_end > timeline.phrase_start)
  # Pauses between phrases: at least 150 ms of silence.
  gaps = timeline.phrase_start[1:] - timeline.phrase_end[:-1]
  assert np.all(gaps >= 0.15 - 1e-9)


def test_same_draws_give_the_same_audio_and_any_rate_says_the_same_thing():
  speaker = _speaker(2)
  timeline = speech.make_timeline(np.random.default_rng(3), 4.0, speaker)
  a = speech.synthesize(timeline, speaker, 16000, np.random.default_rng(4))
  b = speech.synthesize(timeline, speaker, 16000, np.random.default_rng(4))
  np.testing.assert_array_equal(a, b)
  high = speech.synthesize(timeline, speaker, 50000, np.random.default_rng(4))
  assert a.dtype == high.dtype == np.float32
  assert a.size == 64000 and high.size == 200000
  assert np.max(np.abs(a)) <= 0.61
  assert np.corrcoef(_frame_rms(a, 16000), _frame_rms(high, 50000))[0, 1] > 0.95


def test_formants_separate_the_vowels():
  """/i/ (F2 ≈ 2.3 kHz) puts far more energy at 1.8–3 kHz than /u/ (F2 ≈ 0.9 kHz)."""
  speaker = _speaker(0, f0_hz=120.0, formant_scale=1.0, breathiness=0.0)

  def band_ratio(vowel):
    audio = speech.synthesize(_sustained(vowel), speaker, 16000, np.random.default_rng(0))
    freqs, power = signal.welch(audio, fs=16000, nperseg=1024)
    band = lambda lo, hi: power[(freqs >= lo) & (freqs < hi)].sum()
    return band(1800, 3000) / band(200, 1200)

  i, u, a = band_ratio(2), band_ratio(4), band_ratio(0)
  assert i > 5 * u
  assert a > u  # /a/'s F2 (1.1 kHz) is above /u/'s


def test_pitch_follows_the_speaker_and_rises_on_stress():
  speaker = _speaker(0, f0_hz=200.0, f0_range_st=4.0)
  timeline = speech.make_timeline(np.random.default_rng(5), 8.0, speaker)
  times = np.linspace(0, 8, 8001)
  f0 = speech.pitch_contour(timeline, speaker, times, np.random.default_rng(0))
  assert 130 < np.median(f0) < 300
  accents = timeline.nucleus_start[timeline.stressed] + 0.4 * timeline.duration[timeline.stressed]
  plain = timeline.nucleus_start[~timeline.stressed] + 0.4 * timeline.duration[~timeline.stressed]
  assert np.mean(np.interp(accents, times, f0)) > np.mean(np.interp(plain, times, f0))


@pytest.mark.parametrize("seed", range(4))
def test_jaw_opening_follows_the_audio_envelope(seed):
  rng = np.random.default_rng(seed)
  speaker = speech.sample_speaker(rng)
  timeline = speech.make_timeline(rng, 8.0, speaker)
  audio = speech.synthesize(timeline, speaker, 16000, rng)
  mouth = speech.mouth_trajectory(timeline, speaker, 25)
  assert mouth.jaw.shape == (200,)
  assert np.corrcoef(_frame_rms(audio, 16000), mouth.jaw)[0, 1] > 0.5


def test_lip_shape_follows_the_vowel_and_rests_in_silence():
  speaker = _speaker(1)
  spread_i = speech.mouth_trajectory(_sustained(2), speaker, 25)
  round_u = speech.mouth_trajectory(_sustained(4), speaker, 25)
  open_a = speech.mouth_trajectory(_sustained(0), speaker, 25)
  mid = slice(5, 15)
  assert spread_i.spread[mid].mean() > 0.5 > spread_i.round[mid].mean()
  assert round_u.round[mid].mean() > 0.5 > round_u.spread[mid].mean()
  assert open_a.jaw[mid].mean() > 2 * round_u.jaw[mid].mean()
  assert spread_i.vowel[10] == 2 and round_u.vowel[10] == 4
  # Before the syllable starts: silence, a closed and relaxed mouth.
  assert spread_i.jaw[0] == 0 and spread_i.spread[0] == 0 and spread_i.vowel[0] == speech.SILENCE


def test_bilabial_onsets_close_the_lips():
  timeline = _sustained(0, onset=4)
  mouth = speech.mouth_trajectory(timeline, _speaker(1), 25, lead_s=0.0)
  onset_frames = speech.frame_times(timeline.seconds, 25) < timeline.nucleus_start[0]
  assert np.all(mouth.jaw[onset_frames] == 0)
  assert mouth.jaw.max() > 0.5


def test_stress_marks_the_stressed_vowel_onsets():
  speaker = _speaker(3, stress_prob=0.5)
  timeline = speech.make_timeline(np.random.default_rng(6), 5.0, speaker)
  mouth = speech.mouth_trajectory(timeline, speaker, 25)
  expected = np.unique(np.floor(timeline.nucleus_start[timeline.stressed] * 25).astype(int))
  np.testing.assert_array_equal(np.flatnonzero(mouth.stress), expected[expected < 125])
