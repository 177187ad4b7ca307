"""Noise mixing on overlapping audio windows against mixing the raw signal in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.train import augment

CHUNKS, SAMPLES, FRAMES = 7, 5, 6


def _frame(signal):
  chunks = signal.reshape(-1, SAMPLES)
  return chunks[np.arange(FRAMES)[:, None] + np.arange(CHUNKS)[None, :]]


def test_windows_and_signal_round_trip():
  signal = np.random.default_rng(0).normal(size=(2, (FRAMES + CHUNKS - 1) * SAMPLES)).astype(np.float32)
  windows = np.stack([_frame(s) for s in signal])
  np.testing.assert_array_equal(np.asarray(augment.windows_to_signal(jnp.asarray(windows))), signal)
  np.testing.assert_array_equal(np.asarray(augment.signal_to_windows(jnp.asarray(signal), FRAMES, CHUNKS, SAMPLES)),
                                windows)


def test_mixing_windows_equals_mixing_the_signal_then_framing():
  rng = np.random.default_rng(1)
  length = (FRAMES + CHUNKS - 1) * SAMPLES
  signal = rng.normal(size=(3, length))
  noise = rng.normal(size=(3, length)) * 3.0
  snr = np.array([6.0, 18.0, 30.0])
  got = np.asarray(augment.mix_noise_windows(jnp.asarray(np.stack([_frame(s) for s in signal]), jnp.float32),
                                             jnp.asarray(noise, jnp.float32), jnp.asarray(snr, jnp.float32)))
  for b in range(3):
    gain = np.sqrt(np.mean(signal[b] ** 2) / (np.mean(noise[b] ** 2) * 10 ** (snr[b] / 10)))
    mixed = signal[b] + gain * noise[b]
    np.testing.assert_allclose(got[b], _frame(mixed), rtol=1e-5, atol=1e-5)
    # Known answer: the added noise has exactly the requested SNR.
    added = mixed - signal[b]
    assert 10 * np.log10(np.mean(signal[b] ** 2) / np.mean(added ** 2)) == pytest.approx(snr[b], abs=1e-6)


def test_silent_noise_adds_nothing():
  signal = jnp.ones((1, 20))
  np.testing.assert_array_equal(np.asarray(augment.mix_at_snr(signal, jnp.zeros((1, 20)), jnp.array([6.0]))),
                                np.ones((1, 20)))


def test_random_snr_mix_draws_from_the_levels_and_respects_probability():
  rng = np.random.default_rng(2)
  windows = jnp.asarray(np.stack([_frame(rng.normal(size=(FRAMES + CHUNKS - 1) * SAMPLES)) for _ in range(64)]),
                        jnp.float32)
  noise = jnp.asarray(rng.normal(size=(64, (FRAMES + CHUNKS - 1) * SAMPLES)), jnp.float32)
  levels = tuple(range(6, 31, 3))
  mixed, snr = augment.random_snr_mix(jax.random.key(0), windows, noise, levels)
  assert set(np.asarray(snr).tolist()) <= set(levels) and len(set(np.asarray(snr).tolist())) > 3
  assert not np.allclose(np.asarray(mixed), np.asarray(windows))
  clean, snr = augment.random_snr_mix(jax.random.key(0), windows, noise, levels, probability=0.0)
  np.testing.assert_array_equal(np.asarray(clean), np.asarray(windows))
  assert np.all(np.isinf(np.asarray(snr)))


def test_in_step_mixing_equals_the_audio_packages_mix_noise():
  """The jitted mixing on windows is `audio.mix_noise` on the signal under them, then framed."""
  from talkinghead_jax import audio  # noqa: PLC0415

  rng = np.random.default_rng(3)
  length = (FRAMES + CHUNKS - 1) * SAMPLES
  signal = rng.normal(size=length).astype(np.float32)
  noise = rng.normal(size=length).astype(np.float32)
  for snr in audio.SNR_LEVELS_DB:
    # Noise exactly as long as the signal: mix_noise's random crop has a single choice.
    expected = audio.mix_noise(signal, noise, snr, np.random.default_rng(0))
    got = augment.mix_noise_windows(jnp.asarray(_frame(signal)), jnp.asarray(noise), jnp.float32(snr))
    np.testing.assert_allclose(np.asarray(got), _frame(expected), rtol=1e-5, atol=1e-6)
    assert audio.measure_snr_db(signal, expected - signal) == pytest.approx(snr, abs=1e-3)


def test_expression_config_uses_the_papers_snr_levels():
  from talkinghead_jax import audio, config  # noqa: PLC0415

  for variant in ("synthtalk_tiny", "vox"):
    assert tuple(config.load(f"configs/expression.py:{variant}").augment.snr_db) == audio.SNR_LEVELS_DB
