"""Building blocks of the generator Θ and its discriminator (UPSTREAM_NOTES.md §2.7–2.12).

Conventions shared by every module here:

- Images and feature maps are NHWC. Kernels are stored HWIO (`(kh, kw, in, out)`); a PyTorch
  `Conv2d.weight` (out, in, kh, kw) maps by `permute(2, 3, 1, 0)`, a `ConvTranspose2d.weight`
  (in, out, kh, kw) by `permute(2, 3, 0, 1)`, a `Linear.weight` (out, in) by `.T`.
- Padding is PyTorch's: `padding=p` pads p pixels on every side; transposed convolutions take
  PyTorch's `padding` and `output_padding`, so shapes and values follow `nn.ConvTranspose2d`.
- Spectral norm (PyTorch's `torch.nn.utils.spectral_norm`, one power iteration per training
  call): the raw kernel is the parameter `kernel` (upstream's `weight_orig`), the left singular
  vector estimate `u` (upstream's `weight_u`, one entry per output channel) lives in the
  `spectral` collection, which must be mutable when `train=True`. In evaluation `u` is read,
  never written, and σ = ‖Wᵀu‖ (PyTorch also keeps `v` and uses σ = uᵀWv; at a converged `u`
  the two agree).
- Batch norm statistics live in `batch_stats` (flax's BatchNorm; momentum 0.9 = PyTorch's 0.1).
- Initialisation is upstream's: xavier-normal kernels with gain 0.02, zero biases, batch-norm
  scales ~ N(1, 0.02).

Per-sample generated weights (upstream's `batch_conv`, a Python loop over the batch) are applied
here as one batched contraction over the whole batch: `dynamic_conv1x1` and
`dynamic_conv_transpose1x1`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Upstream's `init_weights('xavier', 0.02)`: std = 0.02·sqrt(2 / (fan_in + fan_out)).
INIT_GAIN = 0.02
kernel_init = nn.initializers.variance_scaling(INIT_GAIN ** 2, "fan_avg", "normal")


def bn_scale_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """Upstream's batch-norm weight initialisation, N(1, 0.02)."""
  return 1.0 + INIT_GAIN * jax.random.normal(key, shape, dtype)


SPECTRAL = "spectral"
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
_NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's eps

# A 1×1 SPADE γ/β pair generated per sample: (B, C_condition, C_normalised) each.
GeneratedSpadeWeights = tuple[jax.Array, jax.Array]


def leaky_relu(x: jax.Array) -> jax.Array:
  """Upstream's `actvn`: LeakyReLU with slope 0.2."""
  return nn.leaky_relu(x, negative_slope=0.2)


def _normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x), _NORMALIZE_EPS)


def spectral_sigma(matrix: jax.Array, u: jax.Array, power_iteration: bool
                   ) -> tuple[jax.Array, jax.Array]:
  """σ of `matrix` (N, out) = Wᵀ of PyTorch's (out, N) weight matrix, from the estimate `u` (out,).

  With `power_iteration`, one step of PyTorch's iteration first: v = norm(Wᵀu), u = norm(Wv).
  Returns (σ, u); gradients flow through W only (u and v are constants, as in PyTorch).
  """
  u = jax.lax.stop_gradient(u)
  v = _normalize(jax.lax.stop_gradient(matrix) @ u)
  wv = v @ matrix  # W v, differentiable in W
  if power_iteration:
    u = _normalize(jax.lax.stop_gradient(wv))
  return jnp.dot(u, wv), u


def spectral_normalized(module: nn.Module, kernel: jax.Array, train: bool) -> jax.Array:
  """`kernel / σ(kernel)` with σ estimated from the module's `spectral/u` variable.

  The kernel's last axis is the output axis; the rest flatten into the matrix's other side,
  which leaves the singular values equal to PyTorch's (out, in·kh·kw) reshape.
  """
  out = kernel.shape[-1]
  matrix = kernel.reshape(-1, out)
  u_var = module.variable(
      SPECTRAL, "u",
      lambda: _normalize(jax.random.normal(module.make_rng("params"), (out,), jnp.float32)))
  sigma, u = spectral_sigma(matrix, u_var.value, power_iteration=train)
  if train:
    u_var.value = u
  return kernel / sigma.astype(kernel.dtype)


def conv2d(x: jax.Array, kernel: jax.Array, strides: int = 1, padding: int = 0) -> jax.Array:
  """PyTorch `F.conv2d` in NHWC/HWIO."""
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), (strides, strides), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_transpose2d(x: jax.Array, kernel: jax.Array, strides: int = 1, padding: int = 0,
                     output_padding: int = 0) -> jax.Array:
  """PyTorch `F.conv_transpose2d` in NHWC with the kernel (kh, kw, in, out).

  Output size (H−1)·s − 2p + kh + output_padding: the input dilated by s, padded by kh−1−p
  (plus output_padding at the end), convolved with the spatially flipped kernel.
  """
  kh, kw = kernel.shape[:2]
  pads = [(kh - 1 - padding, kh - 1 - padding + output_padding),
          (kw - 1 - padding, kw - 1 - padding + output_padding)]
  return jax.lax.conv_general_dilated(
      x, kernel[::-1, ::-1].astype(x.dtype), (1, 1), pads, lhs_dilation=(strides, strides),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv(nn.Module):
  """2-D convolution with PyTorch padding; `spectral=True` adds spectral norm (see module doc)."""

  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: int = 1
  use_bias: bool = True
  spectral: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", kernel_init, (k, k, x.shape[-1], self.features))
    if self.spectral:
      kernel = spectral_normalized(self, kernel, train)
    y = conv2d(x, kernel, self.strides, self.padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


class SNConv(Conv):
  """Spectral-norm convolution (upstream's `sn(nn.Conv2d(...))`)."""

  spectral: bool = True


class ConvTranspose(nn.Module):
  """PyTorch `nn.ConvTranspose2d` (kernel stored (kh, kw, in, out)); optional spectral norm."""

  features: int
  kernel_size: int = 3
  strides: int = 2
  padding: int = 1
  output_padding: int = 1
  use_bias: bool = True
  spectral: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", kernel_init, (k, k, x.shape[-1], self.features))
    if self.spectral:
      kernel = spectral_normalized(self, kernel, train)
    y = conv_transpose2d(x, kernel, self.strides, self.padding, self.output_padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


class SNConvTranspose(ConvTranspose):
  """Spectral-norm transposed convolution (PyTorch normalises over its output channels)."""

  spectral: bool = True


class SNDense(nn.Module):
  """Spectral-norm linear layer (upstream's `sn(nn.Linear(...))`); kernel (in, out)."""

  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kernel = self.param("kernel", kernel_init, (x.shape[-1], self.features))
    kernel = spectral_normalized(self, kernel, train)
    y = x @ kernel.astype(x.dtype)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


def batch_norm(train: bool, affine: bool = True, name: Optional[str] = None) -> nn.BatchNorm:
  """Upstream's (Sync)BatchNorm2d: statistics over every axis but channels (the global batch
  under `jax.jit`, so it is synchronised across devices for free)."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      use_scale=affine, use_bias=affine, scale_init=bn_scale_init, name=name)


def instance_norm(x: jax.Array, epsilon: float = BN_EPSILON) -> jax.Array:
  """PyTorch `InstanceNorm2d(affine=False)`: per sample and channel over H, W (biased var)."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + epsilon)


def upsample_nearest2x(x: jax.Array) -> jax.Array:
  """PyTorch `F.interpolate(scale_factor=2)` (nearest)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
  """(out, in) interpolation weights of PyTorch's bilinear resize with `align_corners=False`.

  Source coordinate (o + ½)·in/out − ½, clamped at 0 below; the two neighbours' weights
  (no antialiasing when shrinking, as PyTorch).
  """
  src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
  low = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = src - low
  matrix = np.zeros((out_size, in_size), np.float32)
  np.add.at(matrix, (np.arange(out_size), low), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), high), frac)
  return matrix


def resize_bilinear(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """PyTorch `F.interpolate(x, size, mode='bilinear', align_corners=False)` for NHWC x."""
  height, width = int(size[0]), int(size[1])
  if x.shape[1:3] == (height, width):
    return x
  rows = jnp.asarray(bilinear_matrix(height, x.shape[1]), x.dtype)
  cols = jnp.asarray(bilinear_matrix(width, x.shape[2]), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols)


def dynamic_conv1x1(x: jax.Array, weight: jax.Array, bias: Optional[jax.Array] = None) -> jax.Array:
  """Per-sample 1×1 convolution, vectorised: x (B, H, W, I), weight (B, I, O), bias (B, O)."""
  y = jnp.einsum("bhwi,bio->bhwo", x, weight.astype(x.dtype))
  if bias is not None:
    y = y + bias[:, None, None, :].astype(y.dtype)
  return y


def dynamic_conv_transpose1x1(x: jax.Array, weight: jax.Array, bias: Optional[jax.Array] = None
                              ) -> jax.Array:
  """Per-sample 1×1 transposed convolution with stride 2 and output_padding 1 (upstream's
  `batch_conv(x, w, stride=0.5)`), vectorised: (B, H, W, I) → (B, 2H, 2W, O).

  Such a layer writes each input pixel's projection to the even output positions only; the
  other three quarters of the output hold the bias alone.
  """
  y = jnp.einsum("bhwi,bio->bhwo", x, weight.astype(x.dtype))
  # One zero between neighbours and one after the last: (H, W) → (2H, 2W), values at even indices.
  out = jax.lax.pad(y, jnp.zeros((), y.dtype), ((0, 0, 0), (0, 1, 1), (0, 1, 1), (0, 0, 0)))
  if bias is not None:
    out = out + bias[:, None, None, :].astype(out.dtype)
  return out


class SPADEConv2d(nn.Module):
  """Upstream's `SPADEConv2d` with a non-SPADE norm: SN conv → BatchNorm (affine) → LeakyReLU."""

  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = SNConv(self.features, 3, self.strides, 1, name="conv")(x, train)
    return leaky_relu(batch_norm(train, name="bn")(x))


class BatchNormResnetBlock(nn.Module):
  """Upstream's `SPADEResnetBlock` built with a plain (Sync)BatchNorm norm (flow nets, fusion).

  Pre-activation: out = shortcut(x) + conv_1(lrelu(bn_1(conv_0(lrelu(bn_0(x)))))); the shortcut
  is conv_s(bn_s(x)) (1×1, no bias) when the width changes.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    fin = x.shape[-1]
    hidden = min(fin, self.features)
    if fin != self.features:
      shortcut = SNConv(self.features, 1, padding=0, use_bias=False, name="conv_s")(
          batch_norm(train, name="bn_s")(x), train)
    else:
      shortcut = x
    dx = SNConv(hidden, name="conv_0")(leaky_relu(batch_norm(train, name="bn_0")(x)), train)
    dx = SNConv(self.features, name="conv_1")(leaky_relu(batch_norm(train, name="bn_1")(dx)), train)
    return shortcut + dx


def _mlp_suffix(index: int) -> str:
  return str(index + 1) if index > 0 else ""


class SPADE(nn.Module):
  """Upstream's multi-input SPADE: parameter-free BatchNorm, then for each condition map in turn
  (bilinearly resized to x) out = out·(1 + γ(m)) + β(m), with γ, β 1×1 convolutions.

  `maps[i]` may be None (that input is skipped). The convolutions of map i are `mlp_gamma{s}` /
  `mlp_beta{s}` with s = "" for i = 0 and i + 1 otherwise (upstream's names). With
  `adaptive_first`, map 0's γ/β weights are not parameters but generated per sample and passed
  as `weights` = (γ (B, C_map, C_x), β (B, C_map, C_x)); as upstream, generated convolutions
  have no bias.
  """

  adaptive_first: bool = False
  kernel_size: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, maps: Sequence[Optional[jax.Array]],
               weights: Optional[GeneratedSpadeWeights] = None, train: bool = False) -> jax.Array:
    out = batch_norm(train, affine=False, name="batch_norm")(x)
    channels = x.shape[-1]
    pad = self.kernel_size // 2
    for i, condition in enumerate(maps):
      if condition is None:
        continue
      condition = resize_bilinear(condition, x.shape[1:3])
      if i == 0 and self.adaptive_first:
        if weights is None:
          raise ValueError("SPADE with adaptive_first needs generated weights")
        gamma = dynamic_conv1x1(condition, weights[0])
        beta = dynamic_conv1x1(condition, weights[1])
      else:
        s = _mlp_suffix(i)
        gamma = Conv(channels, self.kernel_size, padding=pad, name=f"mlp_gamma{s}")(condition)
        beta = Conv(channels, self.kernel_size, padding=pad, name=f"mlp_beta{s}")(condition)
      out = out * (1 + gamma) + beta
    return out


# Generated SPADE weights of one decoder block: for bn_0, bn_1 and bn_s.
BlockSpadeWeights = tuple[GeneratedSpadeWeights, GeneratedSpadeWeights, GeneratedSpadeWeights]


class SPADEResnetBlock(nn.Module):
  """Upstream's SPADE residual block: SPADE → LReLU → SN conv 3×3, twice, plus a shortcut
  (SPADE → SN 1×1 conv without bias) when the width changes.

  `maps` are the condition maps of every SPADE (chained in order). With `adaptive`, map 0's
  γ/β come from `norm_weights` = (bn_0's, bn_1's, bn_s's) generated pairs.
  """

  features: int
  adaptive: bool = False
  spade_kernel_size: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, maps: Sequence[Optional[jax.Array]],
               norm_weights: Optional[BlockSpadeWeights] = None, train: bool = False) -> jax.Array:
    fin = x.shape[-1]
    hidden = min(fin, self.features)
    w0, w1, ws = norm_weights if norm_weights is not None else (None, None, None)
    spade = dict(adaptive_first=self.adaptive, kernel_size=self.spade_kernel_size)
    if fin != self.features:
      shortcut = SPADE(**spade, name="bn_s")(x, maps, ws, train)
      shortcut = SNConv(self.features, 1, padding=0, use_bias=False, name="conv_s")(shortcut, train)
    else:
      shortcut = x
    dx = leaky_relu(SPADE(**spade, name="bn_0")(x, maps, w0, train))
    dx = SNConv(hidden, name="conv_0")(dx, train)
    dx = leaky_relu(SPADE(**spade, name="bn_1")(dx, maps, w1, train))
    dx = SNConv(self.features, name="conv_1")(dx, train)
    return shortcut + dx


class SPADEResnetBlockConcat(nn.Module):
  """Upstream's composition block (`SPADEResnetBlockConcat`, §2.10): parallel single-input SPADE
  branches, one per condition map, merged before each convolution.

  `maps` = [landmark embedding, warped-reference features, warped-render features] (None for an
  absent one; upstream's fourth, previous-frame slot is never used and not built). Branch j of
  the first/second norm is `bn_0_j` / `bn_1_j`; the shortcut SPADE `bn_s` chains all maps. The
  landmark branch (j = 0) takes the generated weights when `adaptive`.

  merge="mean": the element-wise mean of the present branches (upstream @7e4032e0; it also runs
  with the landmark map alone, as the raw pass needs). merge="concat": channel concatenation
  of all `num_branches` branches (upstream @4ab93082), so every map must be present.
  """

  features: int
  adaptive: bool = False
  merge: str = "mean"
  num_branches: int = 3
  spade_kernel_size: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, maps: Sequence[Optional[jax.Array]],
               norm_weights: Optional[BlockSpadeWeights] = None, train: bool = False) -> jax.Array:
    if self.merge not in ("mean", "concat"):
      raise ValueError(f"merge must be 'mean' or 'concat', got {self.merge!r}")
    present = [j for j, m in enumerate(maps) if m is not None]
    if self.merge == "concat" and len(present) != self.num_branches:
      raise ValueError(f"concat merge needs all {self.num_branches} condition maps, got {len(present)}")
    fin = x.shape[-1]
    hidden = min(3 * fin, self.features)  # upstream's fhidden, for both merges
    w0, w1, ws = norm_weights if norm_weights is not None else (None, None, None)

    def branches(h, position, weights):
      outs = []
      for j in present:
        spade = SPADE(adaptive_first=self.adaptive and j == 0, kernel_size=self.spade_kernel_size,
                      name=f"bn_{position}_{j}")
        outs.append(leaky_relu(spade(h, [maps[j]], weights if j == 0 else None, train)))
      if self.merge == "mean":
        return sum(outs) / len(outs)
      return jnp.concatenate(outs, axis=-1)

    if fin != self.features:
      shortcut = SPADE(adaptive_first=self.adaptive, kernel_size=self.spade_kernel_size,
                       name="bn_s")(x, maps, ws, train)
      shortcut = SNConv(self.features, 1, padding=0, use_bias=False, name="conv_s")(shortcut, train)
    else:
      shortcut = x
    dx = SNConv(hidden, name="conv_0")(branches(x, 0, w0), train)
    dx = SNConv(self.features, name="conv_1")(branches(dx, 1, w1), train)
    return shortcut + dx


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """PyTorch `AvgPool2d(3, stride=2, padding=1, count_include_pad=False)` for NHWC x."""
  window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
  pads = ((0, 0), (1, 1), (1, 1), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
  count = jax.lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0.0,
                                jax.lax.add, window, strides, pads)
  return total / count

