"""The unprojection network: a PRNet-style encoder-decoder, image → UV position map.

Paper Fig. 14 / UPSTREAM_NOTES.md §2.3: upstream ran PRNet (Feng et al. 2018, "ResFCN256")
frozen on the key frame; the paper pretrains the same network on 300W-LP with an MSE loss on
the position map. Layer by layer (S = 256, `features` = 16, `num_downsamples` = 5; every conv
is kernel 4, 'SAME' padding, batch norm + ReLU unless said otherwise):

- encoder: conv 16 (stride 1), then per level k = 1..5 a stride-2 and a stride-1 residual
  block with 16·2^k channels: 32, 64, 128, 256, 512 at 128 … 8 px;
- residual block (PRNet's `resBlock`): 1×1 conv C/2 → k×k conv C/2 (the block's stride) →
  1×1 conv C (no norm, no activation), plus the shortcut (a 1×1 conv with the block's stride,
  no norm, when the stride or the width changes), then batch norm → ReLU on the sum;
- decoder: transposed conv 512 (stride 1) at 8 px, then per level k = 4..0 a stride-2
  transposed conv to 16·2^k channels followed by two (k ≥ 2) or one (k < 2) stride-1 ones,
  reaching 16 channels at S; then three transposed convs to 3 channels, the last with a
  sigmoid instead of batch norm + ReLU.

The sigmoid output is a normalised map n ∈ (0, 1)³. PRNet multiplies it by 1.1·S (its
`MaxPos`) because its z is shifted to be positive; our position maps follow the project's
convention (x, y, z in crop pixels, z grows away from the viewer, the canonical face has mean
z 0), so we keep PRNet's 1.1·S range and shift it to cover the crop with a 5% margin in x and
y and ±0.55·S in z:

    position = (n · POSITION_RANGE + POSITION_LOW) · S,   POSITION_RANGE = 1.1,
    POSITION_LOW = (−0.05, −0.05, −0.55),

`normalize_position_map` is the inverse, for losses computed in the normalised space.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

POSITION_RANGE = 1.1
POSITION_LOW = (-0.05, -0.05, -0.55)


def denormalize_position_map(normalized: jax.Array, size: int) -> jax.Array:
  """Normalised map (…, 3) in (0, 1) → crop pixels for an S = `size` crop."""
  low = jnp.asarray(POSITION_LOW, normalized.dtype)
  return (normalized * POSITION_RANGE + low) * size


def normalize_position_map(position_map: jax.Array, size: int) -> jax.Array:
  """Crop pixels (…, 3) → the network's normalised space (the inverse of `denormalize_position_map`)."""
  low = jnp.asarray(POSITION_LOW, position_map.dtype)
  return (position_map / size - low) / POSITION_RANGE


class ResBlock(nn.Module):
  """PRNet's `resBlock`: bottleneck 1×1 → k×k (strided) → 1×1, shortcut, then BN → ReLU."""

  features: int
  stride: int = 1
  kernel_size: int = 4
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.features % 2:
      raise ValueError(f"a residual block needs an even width, got {self.features}")
    norm = dict(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = nn.Conv(self.features, (1, 1), strides=self.stride, name="shortcut")(x)
    half = self.features // 2
    y = nn.Conv(half, (1, 1), use_bias=False, name="conv_0")(x)
    y = nn.relu(nn.BatchNorm(**norm, name="norm_0")(y))
    k = self.kernel_size
    y = nn.Conv(half, (k, k), strides=self.stride, padding="SAME", use_bias=False, name="conv_1")(y)
    y = nn.relu(nn.BatchNorm(**norm, name="norm_1")(y))
    y = nn.Conv(self.features, (1, 1), name="conv_2")(y)
    return nn.relu(nn.BatchNorm(**norm, name="norm_out")(y + shortcut))


class UnprojectionNet(nn.Module):
  """Image (B, S, S, 3) in [-1, 1] → position map (B, S, S, 3) in crop pixels.

  S must be divisible by 2^num_downsamples. With `return_normalized`, returns the sigmoid
  output (B, S, S, 3) in (0, 1) instead (see the module docstring for the mapping).

  Attributes:
    features: width of the first conv; level k has features·2^k channels (PRNet: 16).
    num_downsamples: stride-2 levels (PRNet: 5, 256 → 8 px).
    kernel_size: PRNet's 4.
    bn_momentum: batch-norm running-average momentum.
  """

  features: int = 16
  num_downsamples: int = 5
  kernel_size: int = 4
  bn_momentum: float = 0.9

  def widths(self) -> Sequence[int]:
    """Channels per level 0..num_downsamples."""
    return [self.features * 2**k for k in range(self.num_downsamples + 1)]

  @nn.compact
  def __call__(self, image: jax.Array, train: bool = False, return_normalized: bool = False) -> jax.Array:
    batch, height, width, channels = image.shape
    factor = 2**self.num_downsamples
    if height != width or height % factor:
      raise ValueError(f"the image must be square with a side divisible by {factor}, got {height}×{width}")
    norm = dict(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-3)
    k = (self.kernel_size, self.kernel_size)
    widths = self.widths()
    block = dict(kernel_size=self.kernel_size, bn_momentum=self.bn_momentum)

    # PRNet feeds [0, 1] images; ours come in [-1, 1].
    x = (image + 1.0) * 0.5
    x = nn.Conv(widths[0], k, padding="SAME", use_bias=False, name="conv_in")(x)
    x = nn.relu(nn.BatchNorm(**norm, name="norm_in")(x))
    for level in range(1, self.num_downsamples + 1):
      x = ResBlock(widths[level], stride=2, **block, name=f"res_{level}_down")(x, train)
      x = ResBlock(widths[level], stride=1, **block, name=f"res_{level}")(x, train)

    def deconv(x, features, stride, name):
      x = nn.ConvTranspose(features, k, strides=(stride, stride), padding="SAME", use_bias=False,
                           name=name)(x)
      return nn.relu(nn.BatchNorm(**norm, name=f"{name}_norm")(x))

    x = deconv(x, widths[-1], 1, "deconv_bottleneck")
    for level in range(self.num_downsamples - 1, -1, -1):
      x = deconv(x, widths[level], 2, f"deconv_{level}_up")
      for repeat in range(2 if level >= 2 else 1):
        x = deconv(x, widths[level], 1, f"deconv_{level}_{repeat}")
    x = deconv(x, 3, 1, "deconv_out_0")
    x = deconv(x, 3, 1, "deconv_out_1")
    x = nn.ConvTranspose(3, k, padding="SAME", name="deconv_out_2")(x)
    # The position map is regressed in float32 whatever the compute dtype: pixels need the bits.
    normalized = nn.sigmoid(x.astype(jnp.float32))
    if return_normalized:
      return normalized
    return denormalize_position_map(normalized, height)
