"""The hybrid embedding of Θ (paper §4.2, Eqs. 3–7; UPSTREAM_NOTES.md §2.7–2.8).

K reference frames (image + landmark image) are encoded together, attended from the target
landmark image, and summarised as Gram-like matrices from which per-sample weights are
generated for the adaptive SPADE layers and the label embedder's up-layers. Module and
parameter names are upstream's (`netG.encoder.*`, `netG.atten_gen.*`, `netG.comb_encoder.*`,
`netG.weight_gen.*`, `netG.label_embedding.*`); a submodule `x_i` is upstream's `x.i`.

Channel ladder: `channel_ladder(ngf, n_downsample)` = [32, 64, 128, 256, 512, 1024, 1024] at
upstream's size; level i of every encoder has ch[i] channels at resolution S/2^i.

What is not built because it is never used (UPSTREAM_NOTES.md §10): the combination encoder's
32-channel level (`ref_img_up_0`, `ref_label_up_0`) and its 1024-channel Gram (no parameters);
with K = 1 the attention generator (its softmax over one reference is constant 1).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkinghead_jax.models.layers import (BatchNormResnetBlock, BlockSpadeWeights, Conv,
                                           ConvTranspose, SNDense, SPADEConv2d,
                                           dynamic_conv_transpose1x1, leaky_relu)

# One adaptive label-embedder up-layer: weight (B, C_in, C_out) and bias (B, C_out).
EmbedWeights = tuple[jax.Array, jax.Array]


def channel_ladder(ngf: int, n_downsample: int, max_channels: int = 1024) -> list[int]:
  """Upstream's `ch`: n_downsample + 2 widths, doubling from ngf, capped at
  min(max_channels, ngf·2^n_downsample)."""
  top = min(max_channels, ngf * 2 ** n_downsample)
  return [min(top, ngf * 2 ** i) for i in range(n_downsample + 2)]


def stack_references(x: jax.Array, num_refs: int) -> jax.Array:
  """(B·K, h, w, c) → (B, h, w, K·c) with channel k·c + j: PyTorch's `view(B, K·c, h, w)` of
  the (B·K, c, h, w) tensor, so upstream's `atten1/atten2` kernels map unchanged."""
  bk, h, w, c = x.shape
  x = x.reshape(bk // num_refs, num_refs, h, w, c)
  return jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(bk // num_refs, h, w, num_refs * c)


def attend(x: jax.Array, attention: jax.Array) -> jax.Array:
  """Σ_k attention[b, k, p] · x[b·K + k, p]: (B·K, h, w, c), (B, K, h, w) → (B, h, w, c)."""
  batch, num_refs = attention.shape[:2]
  x = x.reshape(batch, num_refs, *x.shape[1:])
  return jnp.einsum("bkhwc,bkhw->bhwc", x, attention.astype(x.dtype))


def gram(image_features: jax.Array, label_features: jax.Array) -> jax.Array:
  """CombEncoder's matrix: G[b, a, c] = Σ_p image[b, p, a] · softmax_channels(label)[b, p, c]."""
  soft = jax.nn.softmax(label_features, axis=-1)
  return jnp.einsum("bhwa,bhwc->bac", image_features, soft)


class EncoderSelfAtten(nn.Module):
  """Image and landmark encoders over the B·K references with the information exchange.

  Two parallel branches (`conv1`/`ref_down_img_i` for images, `conv2`/`ref_down_lmark_i` for
  landmark images) of SN conv → BN → LReLU, stride 2 from level 1 on. After level
  `n_downsample_A` (64×64×128 at upstream's size), when K > 1:
  - `use_attention`: cross-modal `fusion` (a BN residual block on [image, landmark], per
    reference), the K-concatenation convs `atten1`/`atten2` (K·c → c), `fusion1`/`fusion2` on
    [own, fused], then Σ_k attention·(fused) + K-concatenation output (batch B from here on);
  - otherwise: the mean over K (upstream's `--no_atten` encoder).
  Returns the image and landmark bottlenecks (B, S/2^n, S/2^n, ch[n]).
  """

  channels: Sequence[int]
  n_downsample: int = 5
  n_downsample_A: int = 2
  use_attention: bool = True

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, attention: Optional[jax.Array],
               num_refs: int, train: bool) -> tuple[jax.Array, jax.Array]:
    ch = self.channels
    x = SPADEConv2d(ch[0], name="conv1")(images, train)
    x_label = SPADEConv2d(ch[0], name="conv2")(labels, train)
    for i in range(self.n_downsample):
      x = SPADEConv2d(ch[i + 1], 2, name=f"ref_down_img_{i}")(x, train)
      x_label = SPADEConv2d(ch[i + 1], 2, name=f"ref_down_lmark_{i}")(x_label, train)
      if num_refs > 1 and i == self.n_downsample_A - 1:
        if self.use_attention:
          x, x_label = self._exchange(x, x_label, attention, num_refs, train)
        else:
          x = jnp.mean(x.reshape(-1, num_refs, *x.shape[1:]), axis=1)
          x_label = jnp.mean(x_label.reshape(-1, num_refs, *x_label.shape[1:]), axis=1)
    return x, x_label

  def _exchange(self, x, x_label, attention, num_refs, train):
    c = x.shape[-1]
    cross = BatchNormResnetBlock(c, name="fusion")(jnp.concatenate([x, x_label], -1), train)
    x_self = SPADEConv2d(c, name="atten1")(stack_references(x, num_refs), train)
    label_self = SPADEConv2d(c, name="atten2")(stack_references(x_label, num_refs), train)
    x = SPADEConv2d(c, name="fusion1")(jnp.concatenate([x, cross], -1), train)
    x_label = SPADEConv2d(c, name="fusion2")(jnp.concatenate([x_label, cross], -1), train)
    return attend(x, attention) + x_self, attend(x_label, attention) + label_self


class AttenGen(nn.Module):
  """Attention of the target landmark image over the K reference landmark images.

  Query (target) and key (references) branches: SN conv 1→ch[0], then `n_downsample_A`
  stride-2 SN convs (64×64×128 at upstream's size). Energy = per-pixel dot product over
  channels, softmax over K. Returns attention (B, K, h, w) and `ref_idx` (B,), the reference
  with the largest summed attention.
  """

  channels: Sequence[int]
  n_downsample_A: int = 2

  @nn.compact
  def __call__(self, label: jax.Array, ref_labels: jax.Array, num_refs: int, train: bool
               ) -> tuple[jax.Array, jax.Array]:
    ch = self.channels
    key = SPADEConv2d(ch[0], name="atn_key_first")(ref_labels, train)
    query = SPADEConv2d(ch[0], name="atn_query_first")(label, train)
    for i in range(self.n_downsample_A):
      key = SPADEConv2d(ch[i + 1], 2, name=f"atn_key_{i}")(key, train)
      query = SPADEConv2d(ch[i + 1], 2, name=f"atn_query_{i}")(query, train)
    key = key.reshape(-1, num_refs, *key.shape[1:])
    energy = jnp.einsum("bkhwc,bhwc->bkhw", key, query)
    attention = jax.nn.softmax(energy, axis=1)
    ref_idx = jnp.argmax(jnp.sum(attention, axis=(2, 3)), axis=1)
    return attention, ref_idx


class CombEncoder(nn.Module):
  """Gram-like matrices of the image and landmark bottlenecks at several widths.

  From level n (the bottleneck) down to the lowest level in `levels`: at each level the matrix
  `gram(image, landmark)` (B, ch[level], ch[level]) is kept if the level is wanted; then SN
  3×3 convs (`ref_img_up_{level−1}`, `ref_label_up_{level−1}`; stride 1, the resolution does not
  change) reduce both branches to ch[level−1]. Returns {level: matrix}.
  """

  channels: Sequence[int]
  n_downsample: int = 5
  levels: Sequence[int] = (1, 2, 3, 4)

  @nn.compact
  def __call__(self, x: jax.Array, x_label: jax.Array, train: bool) -> dict[int, jax.Array]:
    lowest = min(self.levels)
    grams = {}
    for level in range(self.n_downsample, lowest - 1, -1):
      if level in self.levels:
        grams[level] = gram(x, x_label)
      if level > lowest:
        width = self.channels[level - 1]
        x = SPADEConv2d(width, name=f"ref_img_up_{level - 1}")(x, train)
        x_label = SPADEConv2d(width, name=f"ref_label_up_{level - 1}")(x_label, train)
    return grams


def split_generated_pair(flat: jax.Array, out_channels: int, in_channels: int
                         ) -> tuple[jax.Array, jax.Array]:
  """Upstream's `reshape_weight(fc, [[out, in, 1, 1]] * 2)` for one SPADE: the flat per-sample
  vector (B, ≥ 2·out·(in+1)) is cut into γ then β parts of out·(in+1) entries; in each, the
  first out·in entries are the (out, in) weight (row-major), the last `out` a bias that
  upstream's SPADE never uses. Returns γ, β weights as (B, in, out) for `dynamic_conv1x1`.
  """
  size = out_channels * (in_channels + 1)
  weights = []
  for part in (flat[:, :size], flat[:, size:2 * size]):
    weight = part[:, :out_channels * in_channels].reshape(-1, out_channels, in_channels)
    weights.append(jnp.swapaxes(weight, 1, 2))
  return weights[0], weights[1]


def split_generated_embedding(flat: jax.Array, in_channels: int, out_channels: int) -> EmbedWeights:
  """Upstream's `reshape_weight(fc_e, [C_in, C_out, 1, 1])` for a 1×1 transposed conv C_in → C_out:
  the first C_in·C_out entries are the (C_in, C_out) weight, the last C_in a bias of which
  the transposed conv uses the first C_out (upstream's `bias[i, :weight.size(2)]`)."""
  weight = flat[:, :in_channels * out_channels].reshape(-1, in_channels, out_channels)
  bias = flat[:, in_channels * out_channels:][:, :out_channels]
  return weight, bias


class WeightGen(nn.Module):
  """Per-sample weights for the adaptive layers i < n_adaptive_layers.

  Layer i reads the Gram matrix of level i + 1 (C = ch[i+1]) as B·C rows of length C; four
  MLPs of `n_fc_layers` + 1 SN linear layers without activations between them
  (`fc_spade_{0,1,s,e}_i_k`) produce, per row, the entries of: decoder block i's bn_0, bn_1 and
  bn_s γ/β 1×1 convs (hidden width ch[i]) and the label embedder's up-layer i
  (ch[i+1] → ch[i]). Returns (embedding weights per layer, SPADE weights per layer).
  """

  channels: Sequence[int]
  n_adaptive_layers: int = 4
  n_fc_layers: int = 2
  adaptive_embed: bool = True

  @nn.compact
  def __call__(self, grams: Mapping[int, jax.Array], train: bool
               ) -> tuple[list[Optional[EmbedWeights]], list[BlockSpadeWeights]]:
    ch = self.channels
    embed_weights, norm_weights = [], []
    for i in range(self.n_adaptive_layers):
      width_in, width_out, hidden = ch[i], ch[i + 1], ch[i]
      matrix = grams[i + 1]
      batch = matrix.shape[0]
      rows = matrix.reshape(batch * width_out, width_out)

      def mlp(name, outputs):
        h = rows
        for k in range(self.n_fc_layers):
          h = SNDense(width_out, name=f"{name}_{i}_{k}")(h, train)
        h = SNDense(outputs, name=f"{name}_{i}_{self.n_fc_layers}")(h, train)
        return h.reshape(batch, -1)

      second = 1 if width_in != width_out else 2
      fc_0 = mlp("fc_spade_0", (hidden + 1) * 2)
      fc_1 = mlp("fc_spade_1", (hidden + 1) * second)
      fc_s = mlp("fc_spade_s", (hidden + 1) * 2)
      norm_weights.append((split_generated_pair(fc_0, width_out, hidden),
                           split_generated_pair(fc_1, width_in, hidden),
                           split_generated_pair(fc_s, width_out, hidden)))
      if self.adaptive_embed:
        fc_e = mlp("fc_spade_e", width_in + 1)
        embed_weights.append(split_generated_embedding(fc_e, width_out, width_in))
      else:
        embed_weights.append(None)
    return embed_weights, norm_weights


class LabelEmbedder(nn.Module):
  """Upstream's `LabelEmbedder`: a conv encoder of a 1- or 4-channel map, LReLU 0.2, no norm.

  `conv_first_0` (3×3) then `down_i_0` (3×3, stride 2) give levels 0…n. With `decoder`
  (upstream's netS='encoderdecoder', the target landmark image), the returned levels come
  from the bottleneck back up: `up_i_0` (3×3 transposed conv, stride 2, + LReLU) for
  i ≥ `adaptive_layers`, the generated 1×1 stride-2 transposed convs (no activation) below;
  no skip connections. Without `decoder` (sc_arch='encoder', the warped images), only the
  first `levels` encoder levels are computed. Returns a list, level 0 (full size) first.
  """

  channels: Sequence[int]
  n_downsample: int = 5
  decoder: bool = True
  adaptive_layers: int = 4
  levels: Optional[int] = None

  @nn.compact
  def __call__(self, label: jax.Array, embed_weights: Optional[Sequence[EmbedWeights]] = None
               ) -> list[jax.Array]:
    ch = self.channels
    num_down = self.n_downsample
    if not self.decoder and self.levels is not None:
      num_down = min(num_down, self.levels - 1)
    features = [leaky_relu(Conv(ch[0], name="conv_first_0")(label))]
    for i in range(num_down):
      features.append(leaky_relu(Conv(ch[i + 1], strides=2, name=f"down_{i}_0")(features[-1])))
    if not self.decoder:
      return features
    out = [features[-1]]
    for i in reversed(range(self.n_downsample)):
      if i >= self.adaptive_layers:
        out.append(leaky_relu(ConvTranspose(ch[i], name=f"up_{i}_0")(out[-1])))
      else:
        if embed_weights is None or embed_weights[i] is None:
          raise ValueError(f"label embedder layer {i} is adaptive and needs generated weights")
        weight, bias = embed_weights[i]
        out.append(dynamic_conv_transpose1x1(out[-1], weight, bias))
    return out[::-1]
