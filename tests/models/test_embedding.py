"""The hybrid embedding: layouts against PyTorch's view semantics, wiring against a manual
composition of its layers, weight generation against upstream's split rule."""

import generator_numpy_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.models import embedding as emb
from talkinghead_jax.models import layers


_init = ref.init_variables


def _sub(variables, name):
  return {c: tree[name] for c, tree in variables.items() if name in tree}


def test_channel_ladder_is_upstreams():
  assert emb.channel_ladder(32, 5) == [32, 64, 128, 256, 512, 1024, 1024]
  assert emb.channel_ladder(8, 4, max_channels=32) == [8, 16, 32, 32, 32, 32]


def test_stack_references_is_pytorchs_view_of_the_reference_batch():
  rng = np.random.default_rng(0)
  batch, k, h, w, c = 2, 3, 2, 4, 5
  x = rng.normal(size=(batch * k, h, w, c)).astype(np.float32)
  got = np.asarray(emb.stack_references(jnp.asarray(x), k))
  nchw = x.transpose(0, 3, 1, 2).reshape(batch, k * c, h, w)  # torch: x.view(b // n, n * c, h, w)
  np.testing.assert_array_equal(got, nchw.transpose(0, 2, 3, 1))


def test_attend_and_gram_equal_numpy_sums():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2 * 3, 4, 4, 5)).astype(np.float32)
  attention = rng.uniform(size=(2, 3, 4, 4)).astype(np.float32)
  got = np.asarray(emb.attend(jnp.asarray(x), jnp.asarray(attention)))
  for b in range(2):
    expected = sum(attention[b, k][..., None] * x[b * 3 + k] for k in range(3))
    np.testing.assert_allclose(got[b], expected, rtol=1e-5, atol=1e-5)
  image, label = x[:2], rng.normal(size=(2, 4, 4, 5)).astype(np.float32)
  soft = np.exp(label) / np.exp(label).sum(-1, keepdims=True)
  expected = np.einsum("bpa,bpc->bac", image.reshape(2, 16, 5), soft.reshape(2, 16, 5))
  np.testing.assert_allclose(emb.gram(jnp.asarray(image), jnp.asarray(label)), expected, rtol=1e-5, atol=1e-5)


def test_generated_weights_are_cut_as_upstreams_reshape_weight():
  rng = np.random.default_rng(2)
  out, hidden, batch = 4, 3, 2
  flat = rng.normal(size=(batch, 2 * out * (hidden + 1))).astype(np.float32)
  gamma, beta = emb.split_generated_pair(jnp.asarray(flat), out, hidden)
  half = out * (hidden + 1)
  for b in range(batch):  # torch: split in halves; weight = x[:, :-out].view(out, in), bias = x[:, -out:]
    np.testing.assert_array_equal(np.asarray(gamma[b]).T, flat[b, :half][:-out].reshape(out, hidden))
    np.testing.assert_array_equal(np.asarray(beta[b]).T, flat[b, half:][:-out].reshape(out, hidden))
  c_in, c_out = 6, 3
  flat_e = rng.normal(size=(batch, c_in * (c_out + 1))).astype(np.float32)
  weight, bias = emb.split_generated_embedding(jnp.asarray(flat_e), c_in, c_out)
  np.testing.assert_array_equal(weight, flat_e[:, :-c_in].reshape(batch, c_in, c_out))
  np.testing.assert_array_equal(bias, flat_e[:, -c_in:][:, :c_out])  # bias[i, :weight.size(2)]


def test_attention_is_a_softmax_over_references_and_follows_their_order():
  rng = np.random.default_rng(3)
  label = rng.uniform(size=(2, 16, 16, 1)).astype(np.float32)
  refs = rng.uniform(size=(2 * 3, 16, 16, 1)).astype(np.float32)
  gen = emb.AttenGen([4, 8, 8], n_downsample_A=2)
  variables = _init(gen, label, refs, 3, False)
  attention, ref_idx = gen.apply(variables, label, refs, 3, False)
  attention = np.asarray(attention)
  assert attention.shape == (2, 3, 4, 4)
  np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(ref_idx, attention.sum(axis=(2, 3)).argmax(axis=1))
  # Permuting each sample's references permutes the attention the same way.
  order = np.array([2, 0, 1])
  permuted = refs.reshape(2, 3, 16, 16, 1)[:, order].reshape(6, 16, 16, 1)
  attention_p, _ = gen.apply(variables, label, permuted, 3, False)
  np.testing.assert_allclose(attention_p, attention[:, order], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("use_attention", [True, False])
def test_reference_encoder_wiring_equals_a_manual_composition(use_attention):
  rng = np.random.default_rng(4)
  k = 3
  images = rng.uniform(-1, 1, size=(2 * k, 8, 8, 3)).astype(np.float32)
  labels = rng.uniform(size=(2 * k, 8, 8, 1)).astype(np.float32)
  attention = rng.dirichlet(np.ones(k), size=(2, 4, 4)).transpose(0, 3, 1, 2).astype(np.float32)
  ch = [4, 6]
  encoder = emb.EncoderSelfAtten(ch, n_downsample=1, n_downsample_A=1, use_attention=use_attention)
  v = _init(encoder, images, labels, attention, k, False)
  x, x_label = encoder.apply(v, images, labels, attention, k, False)

  def conv(name, width, inp, strides=1):
    return layers.SPADEConv2d(width, strides).apply(_sub(v, name), inp, False)

  xi = conv("ref_down_img_0", 6, conv("conv1", 4, images), 2)
  xl = conv("ref_down_lmark_0", 6, conv("conv2", 4, labels), 2)
  if use_attention:
    cross = layers.BatchNormResnetBlock(6).apply(_sub(v, "fusion"), jnp.concatenate([xi, xl], -1), False)
    stacked_i = np.asarray(xi).reshape(2, k, 4, 4, 6).transpose(0, 2, 3, 1, 4).reshape(2, 4, 4, k * 6)
    stacked_l = np.asarray(xl).reshape(2, k, 4, 4, 6).transpose(0, 2, 3, 1, 4).reshape(2, 4, 4, k * 6)
    fused_i = np.asarray(conv("fusion1", 6, jnp.concatenate([xi, cross], -1))).reshape(2, k, 4, 4, 6)
    fused_l = np.asarray(conv("fusion2", 6, jnp.concatenate([xl, cross], -1))).reshape(2, k, 4, 4, 6)
    expected_x = (attention[..., None] * fused_i).sum(1) + np.asarray(conv("atten1", 6, stacked_i))
    expected_l = (attention[..., None] * fused_l).sum(1) + np.asarray(conv("atten2", 6, stacked_l))
    assert v["params"]["atten1"]["conv"]["kernel"].shape == (3, 3, k * 6, 6)
  else:
    expected_x = np.asarray(xi).reshape(2, k, 4, 4, 6).mean(1)
    expected_l = np.asarray(xl).reshape(2, k, 4, 4, 6).mean(1)
    assert not {"fusion", "atten1", "fusion1"} & set(v["params"])
  np.testing.assert_allclose(x, expected_x, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(x_label, expected_l, rtol=1e-4, atol=1e-4)


def test_comb_encoder_builds_only_the_used_levels():
  rng = np.random.default_rng(5)
  ch = [4, 6, 8, 8]
  x = rng.normal(size=(2, 2, 2, 8)).astype(np.float32)
  x_label = rng.normal(size=(2, 2, 2, 8)).astype(np.float32)
  comb = emb.CombEncoder(ch, n_downsample=3, levels=(1, 2))
  v = _init(comb, x, x_label, False)
  grams = comb.apply(v, x, x_label, False)
  assert sorted(grams) == [1, 2]
  assert set(v["params"]) == {"ref_img_up_2", "ref_label_up_2", "ref_img_up_1", "ref_label_up_1"}
  img = layers.SPADEConv2d(8).apply(_sub(v, "ref_img_up_2"), x, False)
  lab = layers.SPADEConv2d(8).apply(_sub(v, "ref_label_up_2"), x_label, False)
  np.testing.assert_allclose(grams[2], emb.gram(img, lab), rtol=1e-5, atol=1e-5)
  img = layers.SPADEConv2d(6).apply(_sub(v, "ref_img_up_1"), img, False)
  lab = layers.SPADEConv2d(6).apply(_sub(v, "ref_label_up_1"), lab, False)
  np.testing.assert_allclose(grams[1], emb.gram(img, lab), rtol=1e-5, atol=1e-5)


def test_weight_gen_shapes_and_linearity():
  rng = np.random.default_rng(6)
  ch = [4, 8, 16]
  grams = {1: rng.normal(size=(2, 8, 8)).astype(np.float32),
           2: rng.normal(size=(2, 16, 16)).astype(np.float32)}
  gen = emb.WeightGen(ch, n_adaptive_layers=2)
  v = _init(gen, grams, False)
  expected_names = [f"fc_spade_{n}_{i}_{k}" for n in "01se" for i in range(2) for k in range(3)]
  assert sorted(v["params"]) == sorted(expected_names)
  assert v["params"]["fc_spade_0_0_2"]["kernel"].shape == (8, (4 + 1) * 2)
  assert v["params"]["fc_spade_1_0_2"]["kernel"].shape == (8, 4 + 1)  # widths differ: one γβ row per row
  embed_w, norm_w = gen.apply(v, grams, False)
  assert embed_w[0][0].shape == (2, 8, 4) and embed_w[0][1].shape == (2, 4)
  (g0, _), (g1, _), (gs, _) = norm_w[1]
  assert g0.shape == (2, 8, 16) and g1.shape == (2, 8, 8) and gs.shape == (2, 8, 16)
  # No activation between the linear layers: the generated weights are affine in the Gram rows.
  other = {k: rng.normal(size=g.shape).astype(np.float32) for k, g in grams.items()}
  mixed = {k: 0.3 * grams[k] + 0.7 * other[k] for k in grams}
  a, b, m = (jax.tree_util.tree_leaves(gen.apply(v, g, False)) for g in (grams, other, mixed))
  for la, lb, lm in zip(a, b, m):
    np.testing.assert_allclose(lm, 0.3 * np.asarray(la) + 0.7 * np.asarray(lb), rtol=1e-3, atol=1e-4)


def test_label_embedder_decoder_levels_and_generated_up_layers():
  rng = np.random.default_rng(7)
  ch = [4, 8, 16]
  label = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
  weights = [(rng.normal(size=(2, 8, 4)).astype(np.float32), rng.normal(size=(2, 4)).astype(np.float32)),
             None]
  embedder = emb.LabelEmbedder(ch, n_downsample=2, decoder=True, adaptive_layers=1)
  v = _init(embedder, label, weights)
  assert set(v["params"]) == {"conv_first_0", "down_0_0", "down_1_0", "up_1_0"}
  levels = embedder.apply(v, label, weights)
  assert [lv.shape for lv in levels] == [(2, 8, 8, 4), (2, 4, 4, 8), (2, 2, 2, 16)]
  p = v["params"]
  enc0 = ref.leaky(ref.conv2d(label, p["conv_first_0"]["kernel"], 1, 1) + p["conv_first_0"]["bias"])
  enc1 = ref.leaky(ref.conv2d(enc0, p["down_0_0"]["kernel"], 2, 1) + p["down_0_0"]["bias"])
  bottleneck = ref.leaky(ref.conv2d(enc1, p["down_1_0"]["kernel"], 2, 1) + p["down_1_0"]["bias"])
  np.testing.assert_allclose(levels[2], bottleneck, rtol=1e-4, atol=1e-5)
  up1 = ref.leaky(ref.conv_transpose2d(bottleneck, p["up_1_0"]["kernel"], 2, 1, 1) + p["up_1_0"]["bias"])
  np.testing.assert_allclose(levels[1], up1, rtol=1e-4, atol=1e-5)
  for b in range(2):  # the generated layer: 1×1, stride 2, output_padding 1, no activation
    kernel = weights[0][0][b][None, None]
    expected = ref.conv_transpose2d(up1[b:b + 1], kernel, 2, 0, 1)[0] + weights[0][1][b]
    np.testing.assert_allclose(levels[0][b], expected, rtol=1e-4, atol=1e-5)
  encoder = emb.LabelEmbedder(ch, n_downsample=2, decoder=False, levels=2)
  v_enc = _init(encoder, label)
  assert set(v_enc["params"]) == {"conv_first_0", "down_0_0"}
  assert [lv.shape for lv in encoder.apply(v_enc, label)] == [(2, 8, 8, 4), (2, 4, 4, 8)]
