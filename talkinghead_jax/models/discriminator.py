"""Θ's discriminator: upstream's multiscale PatchGAN (UPSTREAM_NOTES.md §2.12).

`MultiscaleDiscriminator(num_D)`: `discriminator_d` sees the input average-pooled d times
(3×3, stride 2, padding 1, padding not counted). Each is an `NLayerDiscriminator`
(n_layers_D = 4, ndf = 32, kernel 4, padding 2, LeakyReLU 0.2):

    model0  conv 8→32 stride 2 (bias)                     LReLU
    model1  SN conv 32→64 stride 2 (no bias) + InstanceNorm  LReLU
    model2  SN conv 64→128 stride 2 + InstanceNorm          LReLU
    model3  SN conv 128→256 stride 2 + InstanceNorm         LReLU
    model4  SN conv 256→512 stride 1 + InstanceNorm         LReLU
    model5  conv 512→1 stride 1 (bias)

The input is 8 channels, concatenated by the caller: warping-reference landmark (1),
warping-reference image (3), target landmark (1), real or generated image (3). Every layer's
output is returned (feature matching uses all but the last; the last is the patch logits,
19×19 at 256²). Parameter names: upstream's `discriminator_d.model{n}.0[.0]` as
`discriminator_d/model{n}_0[_0]`.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from talkinghead_jax.models.layers import Conv, SNConv, avg_pool_3x3_s2, instance_norm, leaky_relu

KERNEL = 4
PADDING = 2  # upstream's ceil((kw − 1) / 2)


class NLayerDiscriminator(nn.Module):
  """One PatchGAN; returns the outputs of its n_layers + 2 layers."""

  ndf: int = 32
  n_layers: int = 4
  max_channels: int = 512

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
    features = []
    x = leaky_relu(Conv(self.ndf, KERNEL, 2, PADDING, name="model0_0")(x))
    features.append(x)
    width = self.ndf
    for n in range(1, self.n_layers + 1):
      width = min(width * 2, self.max_channels)
      strides = 2 if n < self.n_layers else 1
      x = SNConv(width, KERNEL, strides, PADDING, use_bias=False, name=f"model{n}_0_0")(x, train)
      x = leaky_relu(instance_norm(x))
      features.append(x)
    features.append(Conv(1, KERNEL, 1, PADDING, name=f"model{self.n_layers + 1}_0")(x))
    return features


class MultiscaleDiscriminator(nn.Module):
  """`num_D` PatchGANs at successively halved scales; returns a list (per scale) of lists
  (per layer) of feature maps, the last of each the logits."""

  num_D: int = 1
  ndf: int = 32
  n_layers: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> list[list[jax.Array]]:
    results = []
    for d in range(self.num_D):
      results.append(NLayerDiscriminator(self.ndf, self.n_layers, name=f"discriminator_{d}")(x, train))
      if d + 1 < self.num_D:
        x = avg_pool_3x3_s2(x)
    return results
