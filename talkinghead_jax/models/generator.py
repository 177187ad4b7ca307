"""Θ, the 3D-aware generator (paper §4; UPSTREAM_NOTES.md §2.6–2.11).

Upstream's `SpadeCombineModule` in its final configuration (`--adaptive_spade --warp_ref
--warp_ani --spade_combine --add_raw_loss --use_new`), one Flax module:

1. weight generation: the hybrid embedding of the K references (`encoder`, `atten_gen`,
   `comb_encoder`, `weight_gen`; see embedding.py) and the target landmark image's
   `label_embedding` with the generated up-layers;
2. two flow nets (`flow_network_ref` for the matched reference, `flow_network_ani` for the
   rendered 3D face), each giving a flow, an occlusion weight and a warped image;
3. composition encoders `img_ref_embedding`, `img_ani_embedding` of [warped image, weight]
   (4 channels; only levels 0–1 are computed: upstream's deeper levels are never used);
4. the SPADE decoder `up_n … up_0` from the reference bottleneck (8×8×1024 at 256²), nearest ×2
   upsampling between blocks, `conv_img` → tanh. Block i is conditioned on label level i;
   blocks i < n_adaptive_layers use generated γ/β for the landmark map; the last
   `n_sc_layers` blocks are the non-linear composition (`SPADEResnetBlockConcat`: parallel
   SPADE branches for landmarks, warped-reference and warped-render features, merged by
   mean or concat). With `add_raw`, those blocks run a second time on the same input with
   the landmark map only (shared weights): the raw image.

Parameter paths are upstream's state-dict keys without the `netG.` / `warp.` prefixes, `.`
between a module and its `nn.Sequential` index written `_` (e.g. `netG.up_4.bn_0.mlp_gamma.weight`
→ params `up_4/bn_0/mlp_gamma/kernel`, `warp.flow_network_ref.down_flow.2.0.weight_orig` →
`flow_network_ref/down_flow_2_0/kernel`). The composition blocks' branch slots are upstream's
latest order: 0 landmark, 1 warped reference, 2 warped render (`bn_0_1` = reference).

Ablation switches (paper Table 3), all constructor fields:
- `use_3d=False`: no rendered-face branch (no `flow_network_ani`, `img_ani_embedding`, slot 2);
  the batch's `rendered*` entries are ignored;
- `use_attention=False`: no attention generator, information exchange or K-concatenation
  convs; the encoder averages its features over K (upstream's `--no_atten` encoder);
  `ref_idx` is then 0 and the returned attention uniform;
- `nonlinear_composition=False`: linear composition (§2.11): the decoder (all plain SPADE
  blocks, landmark-conditioned) gives the raw image, then raw·w_ani + warped_ani·(1−w_ani)
  (`ani_image`), then that ·w_ref + warped_ref·(1−w_ref);
- `use_warp=False`: the unwarped reference and rendered images replace the warped ones in the
  composition (the flow nets still give the weights), as upstream's `--no_warp`;
- `merge`: "mean" (default; the only upstream variant that runs with the raw branch) or "concat";
- `num_refs` (K): the number of references the batch carries.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkinghead_jax.errors import ConfigError
from talkinghead_jax.models.embedding import (AttenGen, CombEncoder, EncoderSelfAtten,
                                              LabelEmbedder, WeightGen, channel_ladder)
from talkinghead_jax.models.flow import FlowGenerator, warp
from talkinghead_jax.models.layers import (Conv, SPADEResnetBlock, SPADEResnetBlockConcat,
                                           leaky_relu, upsample_nearest2x)

BATCH_KEYS = ("tgt_label", "ref_image", "ref_label", "warping_ref", "warping_ref_label")
RENDERED_KEYS = ("rendered", "rendered_label")


class Generator(nn.Module):
  """Θ: a dict batch (model ranges, NHWC) → a dict of outputs.

  Batch: tgt_label (B,S,S,1) [0,1]; ref_image (B,K,S,S,3) [−1,1]; ref_label (B,K,S,S,1);
  warping_ref (B,S,S,3) and warping_ref_label (B,S,S,1), the matched reference;
  rendered (B,S,S,3) and rendered_label (B,S,S,1), the 3D-aware image (needed if use_3d).
  S must be divisible by 2^n_downsample.

  Outputs: image (B,S,S,3) in (−1,1); raw_image (with add_raw, or linear composition);
  ani_image (linear composition with use_3d); flows / weights / warped: dicts keyed "ref" and
  (with use_3d) "rendered" of (B,S,S,2) px, (B,S,S,1) in (0,1), (B,S,S,3) (the images the
  composition used); attention (B,K,S/2^a,S/2^a); ref_idx (B,) int32.
  """

  ngf: int = 32
  n_downsample: int = 5
  max_channels: int = 1024
  n_downsample_A: int = 2
  n_adaptive_layers: int = 4
  n_fc_layers: int = 2
  n_sc_layers: int = 2
  nff: int = 32
  n_downsample_F: int = 3
  n_blocks_F: int = 6
  flow_multiplier: float = 20.0
  num_refs: int = 8
  use_3d: bool = True
  use_attention: bool = True
  nonlinear_composition: bool = True
  use_warp: bool = True
  merge: str = "mean"
  add_raw: bool = True

  def check_config(self) -> None:
    """Raises ConfigError for an inconsistent set of fields."""
    if self.merge not in ("mean", "concat"):
      raise ConfigError(f"generator merge must be 'mean' or 'concat', got {self.merge!r}")
    if self.merge == "concat" and self.add_raw and self.nonlinear_composition:
      raise ConfigError("generator merge='concat' cannot run the raw (landmark-only) branch: "
                        "set add_raw=False or merge='mean'")
    if self.num_refs < 1:
      raise ConfigError(f"generator num_refs must be at least 1, got {self.num_refs}")
    if not 1 <= self.n_adaptive_layers <= self.n_downsample:
      raise ConfigError("generator needs 1 <= n_adaptive_layers <= n_downsample")
    if not 1 <= self.n_sc_layers <= self.n_downsample:
      raise ConfigError("generator needs 1 <= n_sc_layers <= n_downsample")
    if not 1 <= self.n_downsample_A < self.n_downsample:
      raise ConfigError("generator needs 1 <= n_downsample_A < n_downsample")

  def _check_batch(self, batch: Mapping[str, jax.Array]) -> None:
    keys = BATCH_KEYS + (RENDERED_KEYS if self.use_3d else ())
    missing = [k for k in keys if k not in batch]
    if missing:
      raise ValueError(f"generator batch lacks {missing}")
    refs = batch["ref_image"]
    if refs.ndim != 5 or refs.shape[1] != self.num_refs:
      raise ValueError(f"ref_image must be (B, K={self.num_refs}, S, S, 3), got {refs.shape}")
    size = batch["tgt_label"].shape[1]
    if size % 2 ** self.n_downsample:
      raise ValueError(f"image size {size} is not divisible by 2^{self.n_downsample}")

  @nn.compact
  def __call__(self, batch: Mapping[str, jax.Array], train: bool = False) -> dict[str, Any]:
    self.check_config()
    self._check_batch(batch)
    ch = channel_ladder(self.ngf, self.n_downsample, self.max_channels)
    k = self.num_refs
    label = batch["tgt_label"]
    ref_images = batch["ref_image"].reshape(-1, *batch["ref_image"].shape[2:])
    ref_labels = batch["ref_label"].reshape(-1, *batch["ref_label"].shape[2:])
    batch_size, size = label.shape[0], label.shape[1]

    # 1. Hybrid embedding and weight generation.
    attention_size = size // 2 ** self.n_downsample_A
    if self.use_attention and k > 1:
      attention, ref_idx = AttenGen(ch, self.n_downsample_A, name="atten_gen")(
          label, ref_labels, k, train)
    else:
      attention = jnp.full((batch_size, k, attention_size, attention_size), 1.0 / k, label.dtype)
      ref_idx = jnp.zeros((batch_size,), jnp.int32)
    x, x_label = EncoderSelfAtten(ch, self.n_downsample, self.n_downsample_A, self.use_attention,
                                  name="encoder")(ref_images, ref_labels, attention, k, train)
    levels = tuple(range(1, self.n_adaptive_layers + 1))
    grams = CombEncoder(ch, self.n_downsample, levels, name="comb_encoder")(x, x_label, train)
    embed_weights, norm_weights = WeightGen(ch, self.n_adaptive_layers, self.n_fc_layers,
                                            name="weight_gen")(grams, train)
    encoded_label = LabelEmbedder(ch[:self.n_downsample + 1], self.n_downsample, decoder=True,
                                  adaptive_layers=self.n_adaptive_layers,
                                  name="label_embedding")(label, embed_weights)

    # 2. Flows, occlusion weights, warped images.
    flow_net = dict(nff=self.nff, n_downsample_F=self.n_downsample_F, n_blocks_F=self.n_blocks_F,
                    flow_multiplier=self.flow_multiplier)
    sources = {"ref": ("flow_network_ref", batch["warping_ref"], batch["warping_ref_label"])}
    if self.use_3d:
      sources["rendered"] = ("flow_network_ani", batch["rendered"], batch["rendered_label"])
    flows, weights, warped = {}, {}, {}
    for key, (name, image, source_label) in sources.items():
      flows[key], weights[key] = FlowGenerator(**flow_net, name=name)(
          label, source_label, image, train)
      warped[key] = warp(image, flows[key]) if self.use_warp else image

    outputs = dict(flows=flows, weights=weights, warped=warped, attention=attention,
                   ref_idx=ref_idx.astype(jnp.int32))

    # 3–4. Composition and decoding.
    if self.nonlinear_composition:
      maps = self._composition_maps(encoded_label, warped, weights, ch)
      image, raw = self._decode(x, encoded_label, maps, norm_weights, ch, train)
      outputs["image"] = image
      if raw is not None:
        outputs["raw_image"] = raw
    else:
      raw, _ = self._decode(x, encoded_label, None, norm_weights, ch, train)
      outputs["raw_image"] = raw
      image = raw
      if self.use_3d:
        w = weights["rendered"]
        image = image * w + warped["rendered"] * (1 - w)
        outputs["ani_image"] = image
      w = weights["ref"]
      outputs["image"] = image * w + warped["ref"] * (1 - w)
    return outputs

  def _composition_maps(self, encoded_label, warped, weights, ch):
    """Condition maps [landmark, warped-ref features, warped-render features] of the
    composition blocks (levels 0 … n_sc_layers−1)."""
    embedder = dict(channels=ch[:self.n_downsample + 1], n_downsample=self.n_downsample,
                    decoder=False, levels=self.n_sc_layers)
    ref_feats = LabelEmbedder(**embedder, name="img_ref_embedding")(
        jnp.concatenate([warped["ref"], weights["ref"]], axis=-1))
    ani_feats = None
    if self.use_3d:
      ani_feats = LabelEmbedder(**embedder, name="img_ani_embedding")(
          jnp.concatenate([warped["rendered"], weights["rendered"]], axis=-1))
    return [[encoded_label[i], ref_feats[i], None if ani_feats is None else ani_feats[i]]
            for i in range(self.n_sc_layers)]

  def _decode(self, x, encoded_label, composition_maps, norm_weights, ch, train):
    """The SPADE decoder from the reference bottleneck x; returns (image, raw image or None)."""
    composing = composition_maps is not None
    raw = None
    for i in range(self.n_downsample, -1, -1):
      adaptive = i < self.n_adaptive_layers
      block_weights = norm_weights[i] if adaptive else None
      if composing and i < self.n_sc_layers:
        block = SPADEResnetBlockConcat(ch[i], adaptive=adaptive, merge=self.merge,
                                       num_branches=3 if self.use_3d else 2, name=f"up_{i}")
        if self.add_raw:
          if raw is None:
            raw = x
          raw = block(raw, [encoded_label[i]], block_weights, train)
          raw = upsample_nearest2x(raw) if i else raw
        x = block(x, composition_maps[i], block_weights, train)
      else:
        x = SPADEResnetBlock(ch[i], adaptive=adaptive, name=f"up_{i}")(
            x, [encoded_label[i]], block_weights, train)
      if i:
        x = upsample_nearest2x(x)
    conv_img = Conv(3, name="conv_img")
    image = jnp.tanh(conv_img(leaky_relu(x)))
    if raw is not None:
      raw = jnp.tanh(conv_img(leaky_relu(raw)))
    return image, raw
