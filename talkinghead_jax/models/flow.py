"""Flow estimation and warping (paper §4.3; UPSTREAM_NOTES.md §2.9).

`FlowGenerator` (upstream's, one per source: the matched reference and the rendered 3D face)
predicts from [target landmark image, source landmark image, source image] a flow in pixels
and an occlusion weight in (0, 1); `warp` resamples the source with that flow.

Parameter names are upstream's `warp.flow_network_{ref,ani}.*` with `x.i` written `x_i`:
`down_flow_{0,2,4,6}_{0,1}` (SN conv without bias, BatchNorm), `res_flow_i` (BN residual
blocks), `up_flow_{1,4,7}_{0,1}`, `conv_flow_0`, `conv_w_0`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkinghead_jax.models.layers import (BatchNormResnetBlock, Conv, SNConv, batch_norm,
                                           leaky_relu, upsample_nearest2x)


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """Upstream's `resample`: bilinear sampling of `image` (B, H, W, C) at pixel + flow.

  `flow` (B, H, W, 2) is in pixels, x (right) then y (down). As upstream, the sampling grid is
  linspace(−1, 1) plus the flow divided by ((W−1)/2, (H−1)/2), read by PyTorch's
  `grid_sample(mode='bilinear', padding_mode='border', align_corners=False)`. So output pixel
  (i, j) samples the source at x = (j + fx)·W/(W−1) − ½, y = (i + fy)·H/(H−1) − ½ (pixel-centre
  coordinates, clamped to [0, W−1] × [0, H−1]): a zero flow is a zoom by W/(W−1) about the
  centre, not the identity — a learned flow absorbs it, and matching upstream keeps
  checkpoints interchangeable.
  """
  batch, height, width, _ = image.shape
  out_dtype, flow = image.dtype, flow.astype(jnp.float32)  # pixel coordinates need float32 (bfloat16: 8 bits)
  cols = jnp.arange(width, dtype=flow.dtype)[None, None, :]
  rows = jnp.arange(height, dtype=flow.dtype)[None, :, None]
  x = (cols + flow[..., 0]) * (width / (width - 1.0)) - 0.5
  y = (rows + flow[..., 1]) * (height / (height - 1.0)) - 0.5
  x = jnp.clip(x, 0.0, width - 1.0)
  y = jnp.clip(y, 0.0, height - 1.0)
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  wx = (x - x0)[..., None]
  wy = (y - y0)[..., None]
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)
  x1 = jnp.minimum(x0 + 1, width - 1)
  y1 = jnp.minimum(y0 + 1, height - 1)

  def gather(img, yy, xx):
    return img[yy, xx]

  sample = jax.vmap(gather)
  top = sample(image, y0, x0) * (1 - wx) + sample(image, y0, x1) * wx
  bottom = sample(image, y1, x0) * (1 - wx) + sample(image, y1, x1) * wx
  return (top * (1 - wy) + bottom * wy).astype(out_dtype)


class FlowGenerator(nn.Module):
  """Upstream's `FlowGenerator`: (B, S, S, 5) → flow (B, S, S, 2) px, weight (B, S, S, 1).

  Down: SN conv 3×3 5→nff, then `n_downsample_F` stride-2 SN convs (each + BN + LReLU 0.2);
  `n_blocks_F` BN residual blocks; up: `n_downsample_F` × (nearest ×2 → SN conv → BN → LReLU);
  heads: conv 3×3 → 2 channels × `flow_multiplier`, conv 3×3 → 1 channel → sigmoid.
  """

  nff: int = 32
  n_downsample_F: int = 3
  n_blocks_F: int = 6
  flow_multiplier: float = 20.0
  max_channels: int = 1024

  @nn.compact
  def __call__(self, label: jax.Array, source_label: jax.Array, source_image: jax.Array,
               train: bool) -> tuple[jax.Array, jax.Array]:
    ch = [min(self.max_channels, self.nff * 2 ** i) for i in range(self.n_downsample_F + 1)]
    x = jnp.concatenate([label, source_label, source_image], axis=-1)

    def conv_bn(h, width, strides, index, prefix):
      h = SNConv(width, 3, strides, 1, use_bias=False, name=f"{prefix}_{index}_0")(h, train)
      return leaky_relu(batch_norm(train, name=f"{prefix}_{index}_1")(h))

    x = conv_bn(x, ch[0], 1, 0, "down_flow")
    for i in range(self.n_downsample_F):
      x = conv_bn(x, ch[i + 1], 2, 2 * (i + 1), "down_flow")
    for i in range(self.n_blocks_F):
      x = BatchNormResnetBlock(ch[-1], name=f"res_flow_{i}")(x, train)
    for step, i in enumerate(reversed(range(self.n_downsample_F))):
      x = conv_bn(upsample_nearest2x(x), ch[i], 1, 3 * step + 1, "up_flow")
    flow = Conv(2, name="conv_flow_0")(x) * self.flow_multiplier
    weight = jax.nn.sigmoid(Conv(1, name="conv_w_0")(x))
    return flow, weight
