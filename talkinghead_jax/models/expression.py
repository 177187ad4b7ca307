"""Ψ, the facial-expression learner (paper §3.2 and Fig. 13).

Upstream never released Ψ (UPSTREAM_NOTES.md §2.1), so the layers are ours, following the
paper's Fig. 13 and the sibling repository's facts (raw 50 kHz audio, 7 chunks of 0.04 s per
frame, 20 PCA coefficients, MSE). Per frame t:

- audio encoder: the window x_{t-3 … t+3}, shape (7, S), read as S time steps of 7 channels
  (upstream's A2L convention) → [Conv1d(→64, k21, stride 2) → BatchNorm → LeakyReLU(0.3) →
  Dropout] → [Conv1d(64→256, k21, stride 2) → BatchNorm → LeakyReLU(0.3)] → mean over time →
  Dense(256) → LeakyReLU(0.3). Fig. 13's "Conv(64, 21, 2), Conv(256, 21, 2)" with
  Conv = [1D-conv, BatchNorm, LeakyReLU]. At 50 kHz (S = 2000) the convs give 990 and 485 steps.
- reference encoder: the reference landmarks' PCA coefficients p_tM → Dense(256) → LeakyReLU(0.3).
- decoder: the two features concatenated → Dense(20): the expression's PCA coefficients.
  The paper calls Ψ "a linear regression network"; the decoder is one linear layer.

Targets and the identity. The data pipeline gives, per frame, the PCA coefficients of the
frontal landmarks with the speaker's identity offset removed (upstream: the closed-mouth frame's
frontal landmarks minus a template face); at inference `expression_to_landmarks` adds the
offset back (paper: "we add the identity feature back … to keep the identity information").
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_COEFFS = 20


def _leaky(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, negative_slope=0.3)


def audio_conv_lengths(samples: int, kernel: int = 21, stride: int = 2, layers: int = 2) -> list[int]:
  """Time steps after each of the audio encoder's valid strided convolutions."""
  lengths = []
  for _ in range(layers):
    samples = (samples - kernel) // stride + 1
    lengths.append(samples)
  return lengths


class ExpressionLearner(nn.Module):
  """Ψ: audio windows (B, L, 7, S) + reference PCA (B, C) → expression PCA (B, L, num_coeffs)."""

  num_coeffs: int = NUM_COEFFS
  audio_channels: Sequence[int] = (64, 256)
  kernel: int = 21
  stride: int = 2
  audio_features: int = 256
  reference_features: int = 256
  dropout: float = 0.0
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, audio: jax.Array, reference_pca: jax.Array, train: bool) -> jax.Array:
    batch, frames, chunks, samples = audio.shape
    if audio_conv_lengths(samples, self.kernel, self.stride, len(self.audio_channels))[-1] < 1:
      raise ValueError(f"{samples} samples per chunk are too few for {len(self.audio_channels)} "
                       f"convolutions of kernel {self.kernel}, stride {self.stride}")
    # (B·L, S, 7): samples are time, the 7 chunks are channels.
    x = jnp.swapaxes(audio.reshape(batch * frames, chunks, samples), 1, 2)
    for i, channels in enumerate(self.audio_channels):
      x = nn.Conv(channels, (self.kernel,), strides=(self.stride,), padding="VALID", name=f"audio_conv_{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                       name=f"audio_bn_{i}")(x)
      x = _leaky(x)
      if i + 1 < len(self.audio_channels):
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = jnp.mean(x, axis=1)
    audio_code = _leaky(nn.Dense(self.audio_features, name="audio_fc")(x)).reshape(batch, frames, -1)
    reference_code = _leaky(nn.Dense(self.reference_features, name="reference_fc")(reference_pca))
    reference_code = jnp.broadcast_to(reference_code[:, None, :], (batch, frames, reference_code.shape[-1]))
    fused = jnp.concatenate([audio_code, reference_code], axis=-1)
    return nn.Dense(self.num_coeffs, name="decode_fc")(fused)


def expression_to_landmarks(coeffs: jax.Array, pca_mean: jax.Array, pca_components: jax.Array,
                            identity_offset: jax.Array | None = None) -> jax.Array:
  """PCA coefficients (..., C) → frontal landmarks (..., 68, D), plus the identity offset.

  `pca_components` is (C, 68·D) and `pca_mean` (68·D,) (landmarks = coeffs·U + mean, the
  inverse of coeffs = (landmarks − mean)·Uᵀ); `identity_offset` is (68, D) or (68·D,).
  """
  flat = jnp.einsum("...c,cd->...d", coeffs, pca_components) + pca_mean
  if identity_offset is not None:
    flat = flat + jnp.reshape(identity_offset, (-1,))
  return flat.reshape(*flat.shape[:-1], 68, flat.shape[-1] // 68)
