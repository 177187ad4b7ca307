"""Noise mixing at an exact SNR, tiling/cropping of the noise, and the SNR levels."""

import numpy as np
import pytest

from talkinghead_jax import audio


def _speechlike(rng, n=16000):
  t = np.arange(n) / 16000
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
  return (0.3 * envelope * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n)).astype(
      np.float32)


def _measured_snr(clean, mixed):
  clean = clean.astype(np.float64)
  added = mixed.astype(np.float64) - clean
  return 10 * np.log10(np.mean(clean**2) / np.mean(added**2))


@pytest.mark.parametrize("snr", [6.0, 15.0, 30.0, -3.0, 42.5])
@pytest.mark.parametrize("noise_length", [5000, 16000, 40000])
def test_mixed_snr_is_the_requested_one(snr, noise_length):
  rng = np.random.default_rng(0)
  clean = _speechlike(rng)
  noise = rng.uniform(-1, 1, noise_length).astype(np.float32) * 0.2
  mixed = audio.mix_noise(clean, noise, snr, np.random.default_rng(1))
  assert mixed.shape == clean.shape and mixed.dtype == np.float32
  assert abs(_measured_snr(clean, mixed) - snr) < 0.1
  assert abs(audio.measure_snr_db(clean, mixed - clean) - snr) < 0.1


def test_short_noise_is_tiled_from_a_random_offset():
  clean = _speechlike(np.random.default_rng(0), 1000)
  noise = np.random.default_rng(2).standard_normal(300).astype(np.float32)
  added = audio.mix_noise(clean, noise, 10.0, np.random.default_rng(3)) - clean
  # The added signal is g · noise read circularly from one offset (g fitted per offset).
  offsets = []
  for start in range(300):
    stretch = noise[(start + np.arange(1000)) % 300]
    gain = np.dot(added, stretch) / np.dot(stretch, stretch)
    if gain > 0 and np.allclose(added, gain * stretch, atol=1e-5):
      offsets.append(start)
  assert len(offsets) == 1
  starts = {audio.fit_noise_length(noise, 1000, np.random.default_rng(seed))[0]
            for seed in range(20)}
  assert len(starts) > 5  # The offset really is random.


def test_long_noise_is_cropped_at_a_random_offset():
  noise = np.arange(10000, dtype=np.float32)
  stretches = [audio.fit_noise_length(noise, 1000, np.random.default_rng(seed))
               for seed in range(20)]
  for stretch in stretches:
    assert stretch.size == 1000
    np.testing.assert_array_equal(np.diff(stretch), 1.0)  # Contiguous, no wrap-around.
    assert 0 <= stretch[0] <= 9000
  assert len({s[0] for s in stretches}) > 5
  # Same generator state → same mix.
  clean = _speechlike(np.random.default_rng(0), 1000)
  first = audio.mix_noise(clean, noise, 9.0, np.random.default_rng(7))
  second = audio.mix_noise(clean, noise, 9.0, np.random.default_rng(7))
  np.testing.assert_array_equal(first, second)


def test_silent_inputs_are_rejected():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="audio is silent"):
    audio.mix_noise(np.zeros(100, np.float32), rng.standard_normal(100), 10.0, rng)
  with pytest.raises(ValueError, match="noise is silent"):
    audio.mix_noise(rng.standard_normal(100), np.zeros(50, np.float32), 10.0, rng)
  with pytest.raises(ValueError):
    audio.mix_noise(rng.standard_normal(100), np.zeros(0, np.float32), 10.0, rng)


def test_snr_levels_and_random_snr():
  assert audio.SNR_LEVELS_DB == (6, 9, 12, 15, 18, 21, 24, 27, 30)
  rng = np.random.default_rng(0)
  draws = [audio.random_snr(rng) for _ in range(300)]
  assert set(draws) == set(float(level) for level in audio.SNR_LEVELS_DB)
  assert all(isinstance(d, float) for d in draws)
