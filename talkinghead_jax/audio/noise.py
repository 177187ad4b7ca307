"""Additive noise at a chosen signal-to-noise ratio (the paper's noisy-audio robustness test).

SNR is the power ratio, in dB, of the clean signal to the noise actually added, both taken
as the mean square over the whole clip: 10·log10(mean(audio²) / mean(added²)).
"""

from __future__ import annotations

import numpy as np

# The paper evaluates 6 dB to 30 dB in steps of 3 dB.
SNR_LEVELS_DB: tuple[int, ...] = tuple(range(6, 31, 3))


def random_snr(rng: np.random.Generator) -> float:
  """One SNR drawn uniformly from SNR_LEVELS_DB."""
  return float(SNR_LEVELS_DB[rng.integers(len(SNR_LEVELS_DB))])


def signal_power(audio: np.ndarray) -> float:
  """Mean square of a signal, in float64."""
  audio = np.asarray(audio, dtype=np.float64)
  return float(np.mean(np.square(audio))) if audio.size else 0.0


def measure_snr_db(clean: np.ndarray, added: np.ndarray) -> float:
  """10·log10(power(clean) / power(added))."""
  return 10.0 * float(np.log10(signal_power(clean) / signal_power(added)))


def fit_noise_length(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
  """A `length`-sample stretch of `noise`, starting at a random offset.

  Longer noise is cropped; shorter noise is tiled (read circularly), so every stretch is
  contiguous noise apart from the wrap-around seams.
  """
  noise = np.asarray(noise, dtype=np.float32)
  if noise.ndim != 1 or noise.size == 0:
    raise ValueError(f"expected non-empty mono noise of shape (n,), got {noise.shape}")
  if noise.size >= length:
    start = int(rng.integers(noise.size - length + 1))
    return noise[start:start + length].copy()
  start = int(rng.integers(noise.size))
  return noise[(start + np.arange(length)) % noise.size]


def mix_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float,
              rng: np.random.Generator) -> np.ndarray:
  """audio + g·noise with g chosen so that the clip's SNR is exactly `snr_db`.

  The result is float32 and not clipped (clipping would change the SNR). Raises ValueError
  for silent audio or for a silent stretch of noise, where no gain gives the requested SNR.
  """
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim != 1 or audio.size == 0:
    raise ValueError(f"expected non-empty mono audio of shape (n,), got {audio.shape}")
  if not np.isfinite(snr_db):
    raise ValueError(f"snr_db must be finite, got {snr_db!r}")
  stretch = fit_noise_length(noise, audio.size, rng)
  clean_power = signal_power(audio)
  noise_power = signal_power(stretch)
  if clean_power == 0.0:
    raise ValueError("audio is silent (zero power): an SNR is undefined")
  if noise_power == 0.0:
    raise ValueError("noise is silent (zero power) over the chosen stretch: cannot reach an SNR")
  gain = np.sqrt(clean_power / (noise_power * 10.0 ** (snr_db / 10.0)))
  mixed = audio.astype(np.float64) + gain * stretch.astype(np.float64)
  return mixed.astype(np.float32)
