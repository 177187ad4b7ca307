"""Noise mixing at a signal-to-noise ratio, on per-frame audio windows, inside the jitted step.

Ψ sees each frame's audio as a window of C = 7 chunks of S samples (frames t-3 … t+3), and
window t+1 is window t moved by one chunk. A sequence of L windows therefore *is* one
signal of (L + C - 1)·S samples. Mixing noise into that signal and cutting it into windows
again is the paper's augmentation ("mix x with a noise file at 6 to 30 dB SNR", §3.2)
applied to the same audio the windows came from, so overlapping windows see the same noise.

SNR is 10·log10(P_signal / P_noise) with P the mean square over the whole segment; the noise is
scaled to reach it. Silent noise adds nothing.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def windows_to_signal(windows: jax.Array) -> jax.Array:
  """`(..., L, C, S)` overlapping windows → the `(..., (L + C - 1)·S)` signal they cut."""
  *lead, length, chunks, samples = windows.shape
  first = windows[..., 0, :, :].reshape(*lead, chunks * samples)
  rest = windows[..., 1:, chunks - 1, :].reshape(*lead, (length - 1) * samples)
  return jnp.concatenate([first, rest], axis=-1)


def signal_to_windows(signal: jax.Array, length: int, chunks: int, samples: int) -> jax.Array:
  """Inverse of `windows_to_signal`: window t holds chunks t … t + C - 1."""
  *lead, total = signal.shape
  if total != (length + chunks - 1) * samples:
    raise ValueError(f"signal of {total} samples does not make {length} windows of {chunks}x{samples}")
  as_chunks = signal.reshape(*lead, length + chunks - 1, samples)
  index = jnp.arange(length)[:, None] + jnp.arange(chunks)[None, :]
  return as_chunks[..., index, :]


def mix_at_snr(signal: jax.Array, noise: jax.Array, snr_db: jax.Array) -> jax.Array:
  """`signal + g·noise` with g chosen so the mix has `snr_db`; batched over leading axes."""
  signal_power = jnp.mean(jnp.square(signal), axis=-1, keepdims=True)
  noise_power = jnp.mean(jnp.square(noise), axis=-1, keepdims=True)
  target = signal_power / jnp.power(10.0, jnp.asarray(snr_db, signal.dtype)[..., None] / 10.0)
  gain = jnp.where(noise_power > 0, jnp.sqrt(target / jnp.where(noise_power > 0, noise_power, 1.0)), 0.0)
  return signal + gain * noise


def mix_noise_windows(windows: jax.Array, noise: jax.Array, snr_db: jax.Array) -> jax.Array:
  """Mixes `noise (..., (L + C - 1)·S)` into the signal under `windows (..., L, C, S)`."""
  length, chunks, samples = windows.shape[-3:]
  mixed = mix_at_snr(windows_to_signal(windows), noise, snr_db)
  return signal_to_windows(mixed, length, chunks, samples)


def random_snr_mix(rng: jax.Array, windows: jax.Array, noise: jax.Array, levels_db: Sequence[float],
                   probability: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Per example: with `probability`, mix at an SNR drawn uniformly from `levels_db`.

  Returns (windows, snr_db) with snr_db = +inf where an example stayed clean.
  """
  batch = windows.shape[0]
  pick_key, keep_key = jax.random.split(rng)
  levels = jnp.asarray(levels_db, jnp.float32)
  snr = levels[jax.random.randint(pick_key, (batch,), 0, len(levels_db))]
  mixed = mix_noise_windows(windows, noise, snr)
  use = jax.random.bernoulli(keep_key, probability, (batch,))
  shape = (batch,) + (1,) * (windows.ndim - 1)
  return jnp.where(use.reshape(shape), mixed, windows), jnp.where(use, snr, jnp.inf)
