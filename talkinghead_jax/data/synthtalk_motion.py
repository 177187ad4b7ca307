"""SynthTalk head motion: a per-identity rhythmic style, per-video variation, audio-coupled nods.

Paper §3.3 (Fig. 3b): one person's head moves alike in all of their videos, and different
people move differently. The motion here is built so that this holds and can be learned:

- `MotionStyle` (per identity): a base pose; for each of yaw, pitch and roll two sinusoids
  with identity-specific amplitudes and frequencies and a smoothed-noise term; a nod gain and a
  nod time constant (how strongly and how quickly this person nods on stressed syllables, and how
  much a nod also turns the head); the sway of the head's position.
- `VideoVariation` (per video): random phases, ±15 % amplitude and ±5 % frequency jitter, a
  small offset of the base pose.
- Per clip: nods at the vowel onsets of stressed syllables (so motion depends on the audio),
  and the clip's place in its video's continuous timeline.

`head_motion` returns Euler angles (yaw, pitch, roll; radians) and translations (pixels) per
frame; the generator turns them into the project's pose convention with `geometry.rigid`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

AXES = ("yaw", "pitch", "roll")
# Ranges per axis (radians): base pose spread, sinusoid amplitude range, noise amplitude range.
_BASE_STD = np.array([0.10, 0.06, 0.05])
_AMPLITUDE_RANGE = np.array([[0.02, 0.14], [0.01, 0.07], [0.01, 0.06]])
_NOISE_RANGE = np.array([[0.003, 0.02], [0.002, 0.012], [0.002, 0.01]])


@dataclasses.dataclass(frozen=True)
class MotionStyle:
  """One identity's way of moving its head."""

  base: np.ndarray           # (3,) yaw, pitch, roll in radians
  amplitude: np.ndarray      # (3, 2) sinusoid amplitudes, radians
  frequency: np.ndarray      # (3, 2) sinusoid frequencies, Hz
  noise: np.ndarray          # (3,) amplitude of smoothed noise, radians
  nod_gain: float            # pitch excursion of one nod, radians (head goes down)
  nod_time: float            # seconds from stress onset to the nod's peak
  nod_yaw: float             # yaw that accompanies a nod, as a fraction of its pitch
  sway: np.ndarray           # (3,) translation amplitudes, fraction of the image size
  sway_frequency: np.ndarray  # (3,) Hz


def sample_style(rng: np.random.Generator) -> MotionStyle:
  low, high = _AMPLITUDE_RANGE[:, :1], _AMPLITUDE_RANGE[:, 1:]
  # Log-uniform amplitudes: some people barely move, others move a lot.
  amplitude = np.exp(rng.uniform(np.log(low), np.log(high), (3, 2)))
  return MotionStyle(
      base=rng.normal(0.0, _BASE_STD),
      amplitude=amplitude,
      frequency=rng.uniform(0.12, 0.9, (3, 2)),
      noise=rng.uniform(_NOISE_RANGE[:, 0], _NOISE_RANGE[:, 1]),
      nod_gain=float(rng.uniform(0.0, 0.12)),
      nod_time=float(rng.uniform(0.12, 0.3)),
      nod_yaw=float(rng.uniform(-0.5, 0.5)),
      sway=rng.uniform(0.003, 0.02, 3) * np.array([1.0, 0.7, 0.5]),
      sway_frequency=rng.uniform(0.1, 0.5, 3),
  )


@dataclasses.dataclass(frozen=True)
class VideoVariation:
  """How one video of an identity departs from the identity's style."""

  phase: np.ndarray            # (3, 2) radians
  amplitude_scale: np.ndarray  # (3, 2)
  frequency_scale: np.ndarray  # (3, 2)
  base_offset: np.ndarray      # (3,) radians
  sway_phase: np.ndarray       # (3,) radians
  translation_offset: np.ndarray  # (3,) fraction of the image size
  noise_seed: int


def sample_video_variation(rng: np.random.Generator) -> VideoVariation:
  return VideoVariation(
      phase=rng.uniform(0.0, 2.0 * np.pi, (3, 2)),
      amplitude_scale=rng.uniform(0.85, 1.15, (3, 2)),
      frequency_scale=rng.uniform(0.95, 1.05, (3, 2)),
      base_offset=rng.normal(0.0, 0.015, 3),
      sway_phase=rng.uniform(0.0, 2.0 * np.pi, 3),
      translation_offset=rng.normal(0.0, 0.008, 3),
      noise_seed=int(rng.integers(2**31)),
  )


def nod_response(times: np.ndarray, onsets: np.ndarray, nod_time: float) -> np.ndarray:
  """Sum of nods started at `onsets`: h(τ) = (τ/τp)·exp(1 − τ/τp) for τ ≥ 0, peak 1 at τp."""
  tau = times[None, :] - onsets[:, None]
  x = np.maximum(tau, 0.0) / nod_time
  return (x * np.exp(1.0 - x)).sum(0) if onsets.size else np.zeros_like(times)


def _smooth_noise(rng: np.random.Generator, times: np.ndarray, knot_spacing: float) -> np.ndarray:
  """Noise with unit standard deviation varying on the scale of `knot_spacing` seconds."""
  knots = np.arange(times.min() - knot_spacing, times.max() + 2 * knot_spacing, knot_spacing)
  values = rng.normal(0.0, 1.0, knots.size)
  # Cubic-smooth interpolation (smoothstep between knots): C1 at the knots.
  position = (times - knots[0]) / knot_spacing
  index = np.clip(np.floor(position).astype(int), 0, knots.size - 2)
  frac = position - index
  weight = frac * frac * (3.0 - 2.0 * frac)
  return values[index] * (1.0 - weight) + values[index + 1] * weight


@dataclasses.dataclass(frozen=True)
class HeadMotion:
  angles: np.ndarray       # (T, 3) yaw, pitch, roll in radians
  translation: np.ndarray  # (T, 3) pixels


def head_motion(style: MotionStyle, video: VideoVariation, times: np.ndarray,
                stress_onsets: np.ndarray, image_size: int) -> HeadMotion:
  """Angles and translations at `times` (seconds on the video's timeline).

  `stress_onsets` are the vowel onsets of the clip's stressed syllables on the same timeline.
  """
  t = times[None, None, :]
  amplitude = (style.amplitude * video.amplitude_scale)[..., None]
  frequency = (style.frequency * video.frequency_scale)[..., None]
  rhythm = (amplitude * np.sin(2.0 * np.pi * frequency * t + video.phase[..., None])).sum(1)
  noise_rng = np.random.default_rng(video.noise_seed)
  noise = np.stack([_smooth_noise(noise_rng, times, 0.4) for _ in AXES]) * style.noise[:, None]
  angles = (style.base + video.base_offset)[:, None] + rhythm + noise
  nods = style.nod_gain * nod_response(times, stress_onsets, style.nod_time)
  angles[1] += nods
  angles[0] += style.nod_yaw * nods
  sway = style.sway[:, None] * np.sin(
      2.0 * np.pi * style.sway_frequency[:, None] * times[None, :] + video.sway_phase[:, None])
  translation = (sway + video.translation_offset[:, None]) * image_size
  return HeadMotion(angles=angles.T.astype(np.float64), translation=translation.T.astype(np.float64))


def motion_statistics(angles: np.ndarray) -> np.ndarray:
  """Per-clip summary used to compare styles: mean, std and mean |Δ| of each angle (9,)."""
  return np.concatenate([angles.mean(0), angles.std(0), np.abs(np.diff(angles, axis=0)).mean(0)])


def sample_blink_rate(rng: np.random.Generator) -> float:
  """Blinks per second of one identity (8–25 a minute)."""
  return float(rng.uniform(8.0, 25.0) / 60.0)


def blink_track(rng: np.random.Generator, rate: float, times: np.ndarray) -> np.ndarray:
  """Eyelid closure in [0, 1] at `times`: Poisson blinks that close in 80 ms, stay shut 40 ms
  and reopen in 150 ms (an eye closes faster than it opens)."""
  span = times.max() - times.min() + 1.0
  count = rng.poisson(rate * span)
  starts = times.min() - 0.3 + rng.uniform(0.0, span, count)
  closure = np.zeros_like(times)
  for start in starts:
    t = times - start
    closing = np.clip(t / 0.08, 0.0, 1.0)
    opening = 1.0 - np.clip((t - 0.12) / 0.15, 0.0, 1.0)
    shape = np.where(t < 0.12, closing, opening) * (t >= 0.0)
    closure = np.maximum(closure, shape * shape * (3.0 - 2.0 * shape))
  return closure
