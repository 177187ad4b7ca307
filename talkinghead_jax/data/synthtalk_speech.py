"""SynthTalk speech: a syllable timeline, a source-filter synthesiser and the mouth it drives.

A clip's speech is a `Timeline`: phrases of syllables separated by pauses. Each syllable has an
optional onset consonant, a vowel nucleus, a duration, a loudness and a stress flag. The same
timeline gives

- the waveform (`synthesize`): a glottal pulse train that follows a pitch contour (declination
  over each phrase, accents on stressed syllables, slow jitter), filtered by the vowel's formants
  (scaled by the speaker's vocal-tract length), plus noise bursts for the consonants; at any
  sample rate, so the 16 kHz and 50 kHz versions of a clip say the same thing;
- the mouth (`mouth_trajectory`): jaw opening follows the vowel envelope (the loudness of the
  voiced part), lip spread and rounding follow the vowel, bilabial onsets close the lips.

So audio → expression is learnable (envelope → jaw, formants → lip shape) but not trivial (the
vowel must be heard, the speaker's articulation gain must be inferred).

Everything is numpy and vectorised over samples; a clip takes milliseconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

# Vowels: name, formants F1–F4 (Hz, adult male reference), mouth targets (jaw, spread, round).
VOWELS = ("a", "e", "i", "o", "u")
_FORMANTS_HZ = np.array([
    [730.0, 1090.0, 2440.0, 3400.0],  # a as in "father"
    [530.0, 1840.0, 2480.0, 3500.0],  # e as in "bed"
    [270.0, 2290.0, 3010.0, 3600.0],  # i as in "beet"
    [570.0, 840.0, 2410.0, 3300.0],   # o as in "bought"
    [300.0, 870.0, 2240.0, 3300.0],   # u as in "boot"
])
_BANDWIDTHS_HZ = np.array([80.0, 100.0, 140.0, 200.0])
# Mouth targets per vowel: (jaw opening, lip spread, lip rounding), each in [0, 1].
VOWEL_MOUTH = np.array([
    [1.00, 0.25, 0.00],
    [0.55, 0.70, 0.00],
    [0.28, 1.00, 0.00],
    [0.65, 0.00, 0.75],
    [0.25, 0.00, 1.00],
], dtype=np.float64)

# Onset consonants. Bilabials close the lips; the others differ only in sound.
ONSETS = ("none", "plosive", "fricative", "nasal", "bilabial")
_ONSET_PROBS = np.array([0.25, 0.22, 0.2, 0.13, 0.2])

SILENCE = -1  # vowel index of frames without speech
_ENVELOPE_RATE = 4000.0  # Hz at which syllable envelopes are evaluated before interpolation


@dataclasses.dataclass(frozen=True)
class Speaker:
  """A speaker's voice and articulation (drawn once per identity)."""

  f0_hz: float            # pitch baseline
  f0_range_st: float      # pitch excursion of accents and declination, semitones
  formant_scale: float    # 1/vocal-tract length: >1 raises all formants
  rate_sps: float         # speaking rate, syllables per second
  stress_prob: float      # chance that a syllable is stressed
  breathiness: float      # aspiration noise relative to the voiced source
  articulation: float     # jaw-opening gain (how wide this speaker opens the mouth)


def sample_speaker(rng: np.random.Generator) -> Speaker:
  """Draws a speaker: a low or high voice, with its own rate, stress habit and articulation."""
  high_voice = rng.random() < 0.5
  f0 = rng.uniform(165.0, 250.0) if high_voice else rng.uniform(85.0, 145.0)
  formant_scale = rng.uniform(1.05, 1.18) if high_voice else rng.uniform(0.9, 1.04)
  return Speaker(
      f0_hz=float(f0),
      f0_range_st=float(rng.uniform(2.0, 6.0)),
      formant_scale=float(formant_scale),
      rate_sps=float(rng.uniform(3.0, 5.5)),
      stress_prob=float(rng.uniform(0.15, 0.4)),
      breathiness=float(rng.uniform(0.02, 0.12)),
      articulation=float(rng.uniform(0.7, 1.15)),
  )


@dataclasses.dataclass(frozen=True)
class Timeline:
  """Syllables of one clip; all arrays have one entry per syllable, times in seconds."""

  seconds: float
  start: np.ndarray      # (N,) syllable onset time
  duration: np.ndarray   # (N,)
  vowel: np.ndarray      # (N,) int index into VOWELS
  onset: np.ndarray      # (N,) int index into ONSETS
  stressed: np.ndarray   # (N,) bool
  loudness: np.ndarray   # (N,) peak amplitude of the vowel, in (0, 1]
  phrase: np.ndarray     # (N,) phrase index
  phrase_start: np.ndarray  # (P,) phrase start times
  phrase_end: np.ndarray    # (P,) phrase end times

  @property
  def nucleus_start(self) -> np.ndarray:
    """Where the vowel begins: after the onset consonant (none: right away)."""
    onset_fraction = np.where(self.onset == 0, 0.0, 0.28)
    return self.start + onset_fraction * self.duration


def make_timeline(rng: np.random.Generator, seconds: float, speaker: Speaker) -> Timeline:
  """Phrases of 3–10 syllables, pauses of 0.15–0.6 s, starting after a short silence."""
  starts, durations, phrases, stressed, phrase_bounds = [], [], [], [], []
  time = rng.uniform(0.05, 0.35)
  mean_duration = 1.0 / speaker.rate_sps
  phrase = 0
  while time < seconds - 0.15:
    count = int(rng.integers(3, 11))
    phrase_start = time
    for position in range(count):
      is_stressed = rng.random() < speaker.stress_prob
      duration = mean_duration * rng.uniform(0.7, 1.3) * (1.3 if is_stressed else 1.0)
      if position == count - 1:
        duration *= 1.2  # phrase-final lengthening
      starts.append(time)
      durations.append(duration)
      phrases.append(phrase)
      stressed.append(is_stressed)
      time += duration
      if time >= seconds:
        break
    phrase_bounds.append((phrase_start, time))
    phrase += 1
    time += rng.uniform(0.15, 0.6)
  n = len(starts)
  start = np.asarray(starts, np.float64)
  stressed_arr = np.asarray(stressed, bool)
  # Unstressed syllables are softer; the last one of a phrase fades a little more.
  loudness = np.where(stressed_arr, rng.uniform(0.85, 1.0, n), rng.uniform(0.45, 0.75, n))
  phrase_arr = np.asarray(phrases, np.int32)
  last_in_phrase = np.append(phrase_arr[1:] != phrase_arr[:-1], True) if n else np.zeros(0, bool)
  loudness = np.where(last_in_phrase, loudness * 0.8, loudness)
  bounds = np.asarray(phrase_bounds, np.float64).reshape(-1, 2)
  return Timeline(
      seconds=float(seconds),
      start=start,
      duration=np.asarray(durations, np.float64),
      vowel=rng.integers(0, len(VOWELS), n).astype(np.int32),
      onset=rng.choice(len(ONSETS), size=n, p=_ONSET_PROBS).astype(np.int32),
      stressed=stressed_arr,
      loudness=loudness,
      phrase=phrase_arr,
      phrase_start=bounds[:, 0],
      phrase_end=bounds[:, 1],
  )


def _raised_cosine(x: np.ndarray) -> np.ndarray:
  """0 at x<=0, 1 at x>=1, a half cosine between (C1 smooth)."""
  return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def vowel_envelopes(timeline: Timeline, times: np.ndarray) -> np.ndarray:
  """(N, len(times)) amplitude of each syllable's vowel at `times` (seconds).

  The vowel rises over 30 ms after the onset consonant, holds, and decays over the last 35 % of
  the syllable, peaking at the syllable's loudness.
  """
  nucleus = timeline.nucleus_start[:, None]
  end = (timeline.start + timeline.duration)[:, None]
  t = times[None, :]
  attack = _raised_cosine((t - nucleus) / 0.03)
  release_length = 0.35 * timeline.duration[:, None]
  release = 1.0 - _raised_cosine((t - (end - release_length)) / release_length)
  return timeline.loudness[:, None] * attack * release


def onset_envelopes(timeline: Timeline, times: np.ndarray) -> np.ndarray:
  """(N, len(times)) amplitude of each syllable's onset consonant (0 for vowel-initial ones)."""
  start = timeline.start[:, None]
  length = (timeline.nucleus_start - timeline.start)[:, None]
  t = times[None, :]
  with np.errstate(invalid="ignore", divide="ignore"):
    x = (t - start) / np.maximum(length, 1e-9)
  # Plosives: a closure (silence) then a burst in the last 30 % of the onset.
  plosive_like = np.isin(timeline.onset, (1, 4))[:, None]
  burst = np.where(plosive_like, (x > 0.7) & (x < 1.0), (x > 0.0) & (x < 1.0))
  shape = np.sin(np.pi * np.clip(x, 0.0, 1.0)) ** 0.5
  amplitude = np.where(timeline.onset == 0, 0.0, 0.35 * timeline.loudness)[:, None]
  return amplitude * burst * np.where(plosive_like, 1.0, shape)


def pitch_contour(timeline: Timeline, speaker: Speaker, times: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
  """F0 in Hz at `times`: declination per phrase, accents on stressed syllables, slow jitter."""
  semitones = np.zeros_like(times)
  for start, end in zip(timeline.phrase_start, timeline.phrase_end):
    inside = (times >= start) & (times < end + 0.3)
    progress = np.clip((times - start) / max(end - start, 1e-3), 0.0, 1.0)
    semitones += inside * speaker.f0_range_st * (0.5 - 0.7 * progress)
  accent_centre = timeline.nucleus_start + 0.4 * timeline.duration
  accents = timeline.stressed * speaker.f0_range_st * 0.8
  semitones += (accents[:, None]
                * np.exp(-0.5 * ((times[None, :] - accent_centre[:, None]) / 0.08) ** 2)).sum(0)
  # Slow jitter: a random walk sampled every 50 ms, interpolated.
  knots = np.arange(0.0, timeline.seconds + 0.1, 0.05)
  walk = np.cumsum(rng.normal(0.0, 0.15, knots.size))
  walk -= walk.mean()
  semitones += np.interp(times, knots, walk)
  return speaker.f0_hz * 2.0 ** (semitones / 12.0)


def _glottal_pulse(phase: np.ndarray) -> np.ndarray:
  """Rosenberg glottal flow over one period (phase in cycles): opens 40 %, closes 16 %."""
  x = phase % 1.0
  opening = 0.5 * (1.0 - np.cos(np.pi * x / 0.4))
  closing = np.cos(0.5 * np.pi * (x - 0.4) / 0.16)
  return np.where(x < 0.4, opening, np.where(x < 0.56, closing, 0.0))


def _resonator_sos(frequency: float, bandwidth: float, sample_rate: int) -> np.ndarray:
  """One second-order section with unit gain at its centre frequency."""
  radius = np.exp(-np.pi * bandwidth / sample_rate)
  omega = 2.0 * np.pi * frequency / sample_rate
  a1, a2 = -2.0 * radius * np.cos(omega), radius ** 2
  # |A(e^{jω})| at the centre frequency gives the gain that makes the peak 1.
  z = np.exp(-1j * omega)
  gain = abs(1.0 + a1 * z + a2 * z * z)
  return np.array([gain, 0.0, 0.0, 1.0, a1, a2])


def formant_filter(vowel: int, speaker: Speaker, sample_rate: int) -> np.ndarray:
  """Cascade of formant resonators for `vowel` (formants above 0.45·sample_rate dropped)."""
  sections = []
  for frequency, bandwidth in zip(_FORMANTS_HZ[vowel] * speaker.formant_scale, _BANDWIDTHS_HZ):
    if frequency < 0.45 * sample_rate:
      sections.append(_resonator_sos(frequency, bandwidth, sample_rate))
  return np.stack(sections)


def _band_noise(rng: np.random.Generator, n: int, low_hz: float, high_hz: float,
                sample_rate: int) -> np.ndarray:
  high_hz = min(high_hz, 0.45 * sample_rate)
  sos = signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
  noise = signal.sosfilt(sos, rng.normal(0.0, 1.0, n))
  return noise / (np.std(noise) + 1e-12)


def synthesize(timeline: Timeline, speaker: Speaker, sample_rate: int,
               rng: np.random.Generator) -> np.ndarray:
  """The clip's waveform, float32 mono at `sample_rate`, peak 0.6, with a faint noise floor."""
  n = int(round(timeline.seconds * sample_rate))
  times = np.arange(n) / sample_rate
  f0 = pitch_contour(timeline, speaker, times, rng)
  phase = np.cumsum(f0) / sample_rate
  flow = _glottal_pulse(phase)
  # The flow derivative is the excitation (−12 dB/octave source → −6 dB/octave radiated).
  source = np.diff(flow, prepend=flow[0]) * sample_rate / (speaker.f0_hz * 4.0)
  source += speaker.breathiness * rng.normal(0.0, 1.0, n)

  # Envelopes vary over tens of milliseconds: evaluate them at 4 kHz and interpolate, which
  # keeps the cost independent of the sample rate.
  coarse = np.arange(0.0, timeline.seconds + 1e-3, 1.0 / _ENVELOPE_RATE)
  vowel_env = vowel_envelopes(timeline, coarse)
  onset_env = onset_envelopes(timeline, coarse)
  voiced = np.zeros(n)
  for vowel in range(len(VOWELS)):
    weight = np.interp(times, coarse, vowel_env[timeline.vowel == vowel].sum(0))
    if weight.any():
      filtered = signal.sosfilt(formant_filter(vowel, speaker, sample_rate), source)
      voiced += weight * filtered / (np.std(filtered) + 1e-12)

  # Consonants: fricatives hiss high, plosive bursts are broadband, nasals and bilabials murmur.
  bands = {1: (1500.0, 6000.0), 2: (3500.0, 9000.0), 3: (150.0, 500.0), 4: (300.0, 3000.0)}
  consonants = np.zeros(n)
  for onset, (low, high) in bands.items():
    weight = np.interp(times, coarse, onset_env[timeline.onset == onset].sum(0))
    if weight.any():
      consonants += weight * _band_noise(rng, n, low, high, sample_rate)

  audio = 0.22 * voiced + 0.12 * consonants
  peak = np.max(np.abs(audio))
  if peak > 0:
    audio *= 0.6 / peak
  audio += rng.normal(0.0, 2e-4, n)  # room noise: silence is never digital zero
  return audio.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class MouthTrack:
  """Per-video-frame speech ground truth, each (T,)."""

  jaw: np.ndarray        # jaw opening in [0, 1]
  spread: np.ndarray     # lip spread in [0, 1]
  round: np.ndarray      # lip rounding in [0, 1]
  envelope: np.ndarray   # vowel envelope (voiced loudness), >= 0
  vowel: np.ndarray      # int8 index of the dominant vowel, SILENCE where quiet
  stress: np.ndarray     # float32 1.0 at frames where a stressed syllable's vowel begins


def frame_times(seconds: float, fps: int) -> np.ndarray:
  """Centres of the video frames (frame i spans [i/fps, (i+1)/fps))."""
  return (np.arange(int(round(seconds * fps))) + 0.5) / fps


def mouth_trajectory(timeline: Timeline, speaker: Speaker, fps: int,
                     lead_s: float = 0.02) -> MouthTrack:
  """The mouth that says `timeline`, sampled at the video frames.

  The lips move `lead_s` ahead of the sound, as real speakers' do. Jaw opening is the sum of
  the vowel envelopes times each vowel's jaw target and the speaker's articulation gain; spread
  and rounding are the envelope-weighted mean of the vowel targets, relaxing to 0 in silence;
  bilabial onsets press the lips shut.
  """
  times = frame_times(timeline.seconds, fps)
  # Average each frame over five sub-samples so that short events are not missed.
  offsets = (np.arange(5) - 2) / (5 * fps)
  sub = (times[:, None] + offsets[None, :] + lead_s).ravel()
  env = vowel_envelopes(timeline, sub).reshape(-1, times.size, 5).mean(-1)  # (N, T)
  targets = VOWEL_MOUTH[timeline.vowel]  # (N, 3)
  total = env.sum(0)
  jaw = 1.2 * speaker.articulation * (env * targets[:, :1]).sum(0)
  weights = env / np.maximum(total, 1e-6)
  presence = np.clip(total / 0.3, 0.0, 1.0)
  spread = presence * (weights * targets[:, 1:2]).sum(0)
  rounding = presence * (weights * targets[:, 2:3]).sum(0)
  # Bilabial closure: lips shut while the onset lasts.
  onset_env = onset_envelopes(timeline, sub).reshape(-1, times.size, 5).mean(-1)
  closure = (onset_env[timeline.onset == 4] > 0).sum(0) > 0
  jaw = np.where(closure, 0.0, jaw)
  if env.shape[0]:
    dominant = np.where(total > 0.05, timeline.vowel[np.argmax(env, axis=0)], SILENCE)
  else:
    dominant = np.full(times.size, SILENCE)
  stress = np.zeros(times.size, np.float32)
  stressed_onsets = timeline.nucleus_start[timeline.stressed]
  index = np.floor(stressed_onsets * fps).astype(int)
  stress[index[(index >= 0) & (index < times.size)]] = 1.0
  return MouthTrack(
      jaw=np.clip(jaw, 0.0, 1.0).astype(np.float32),
      spread=np.clip(spread, 0.0, 1.0).astype(np.float32),
      round=np.clip(rounding, 0.0, 1.0).astype(np.float32),
      envelope=total.astype(np.float32),
      vowel=np.asarray(dominant, np.int8),
      stress=stress,
  )
