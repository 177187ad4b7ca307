"""Θ's building blocks against numpy (and, where the layout matters, PyTorch) references."""

import generator_numpy_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.models import layers


_init = ref.init_variables


def test_spectral_norm_training_step_is_one_power_iteration_and_updates_u():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
  conv = layers.SNConv(5, 3, 2, 1)
  variables = _init(conv, x, train=True)
  kernel = np.asarray(variables["params"]["kernel"])
  u = np.asarray(variables["spectral"]["u"])
  out, updated = conv.apply(variables, x, train=True, mutable=["spectral"])
  w = kernel.reshape(-1, 5).T  # PyTorch's (out, in·kh·kw) matrix, up to column order
  v = w.T @ u / np.linalg.norm(w.T @ u)
  u_new = w @ v / np.linalg.norm(w @ v)
  sigma = u_new @ w @ v
  expected = ref.conv2d(x, kernel / sigma, 2, 1) + np.asarray(variables["params"]["bias"])
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(updated["spectral"]["u"], u_new, rtol=1e-5, atol=1e-6)
  # Evaluation reads u without writing it: σ = ‖Wᵀu‖.
  out_eval = conv.apply(variables, x, train=False)
  expected_eval = ref.conv2d(x, ref.sn_kernel_eval(kernel, u), 2, 1) + np.asarray(variables["params"]["bias"])
  np.testing.assert_allclose(out_eval, expected_eval, rtol=1e-4, atol=1e-5)


def test_spectral_norm_power_iteration_converges_to_the_largest_singular_value():
  x = np.eye(7, dtype=np.float32)
  dense = layers.SNDense(4)
  variables = _init(dense, x, train=True)
  kernel = np.asarray(variables["params"]["kernel"])
  variables["params"]["bias"] = np.zeros(4, np.float32)
  step = jax.jit(lambda v: dense.apply(v, x, train=True, mutable=["spectral"]))
  for _ in range(60):
    out, updated = step(variables)
    variables = {**variables, **updated}
  # Row i of the output is kernel[i] / σ: the rescaled kernel has spectral norm 1.
  np.testing.assert_allclose(np.asarray(out) * np.linalg.svd(kernel, compute_uv=False)[0], kernel,
                             rtol=1e-4, atol=1e-5)


def test_conv_transpose_matches_scatter_reference_and_pytorch_layout():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
  layer = layers.ConvTranspose(5, kernel_size=3, strides=2, padding=1, output_padding=1)
  variables = _init(layer, x)
  kernel = np.asarray(variables["params"]["kernel"])
  bias = np.asarray(variables["params"]["bias"])
  out = np.asarray(layer.apply(variables, x))
  assert out.shape == (2, 6, 8, 5)
  np.testing.assert_allclose(out, ref.conv_transpose2d(x, kernel, 2, 1, 1) + bias, rtol=1e-4, atol=1e-5)
  torch = pytest.importorskip("torch")
  torch_out = torch.nn.functional.conv_transpose2d(
      torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()),
      torch.from_numpy(bias), stride=2, padding=1, output_padding=1)
  np.testing.assert_allclose(out, torch_out.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
  # With spectral norm: the same map with kernel / σ.
  sn = layers.SNConvTranspose(5, kernel_size=3, strides=2, padding=1, output_padding=1)
  sn_vars = _init(sn, x)
  sn_kernel = ref.sn_kernel_eval(sn_vars["params"]["kernel"], sn_vars["spectral"]["u"])
  np.testing.assert_allclose(sn.apply(sn_vars, x), ref.conv_transpose2d(x, sn_kernel, 2, 1, 1)
                             + np.asarray(sn_vars["params"]["bias"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("out_size", [(7, 5), (3, 8), (12, 12)])
def test_bilinear_resize_matches_pytorch_align_corners_false(out_size):
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
  got = np.asarray(layers.resize_bilinear(jnp.asarray(x), out_size))
  np.testing.assert_allclose(got, ref.bilinear_resize(x, *out_size), rtol=1e-5, atol=1e-5)


def test_bilinear_resize_equals_torch_interpolate():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(4).normal(size=(1, 5, 7, 2)).astype(np.float32)
  for size in [(9, 4), (2, 3)]:
    expected = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=size,
                                               mode="bilinear", align_corners=False)
    np.testing.assert_allclose(layers.resize_bilinear(jnp.asarray(x), size),
                               expected.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_dynamic_convs_equal_a_per_sample_loop():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
  weight = rng.normal(size=(3, 6, 2)).astype(np.float32)
  bias = rng.normal(size=(3, 2)).astype(np.float32)
  got = np.asarray(layers.dynamic_conv1x1(jnp.asarray(x), jnp.asarray(weight), jnp.asarray(bias)))
  got_t = np.asarray(layers.dynamic_conv_transpose1x1(jnp.asarray(x), jnp.asarray(weight), jnp.asarray(bias)))
  assert got_t.shape == (3, 8, 10, 2)
  for b in range(3):  # upstream's batch_conv loop: one conv per sample with its own weights
    kernel = weight[b][None, None]
    np.testing.assert_allclose(got[b], ref.conv2d(x[b:b + 1], kernel)[0] + bias[b], rtol=1e-5, atol=1e-5)
    expected_t = ref.conv_transpose2d(x[b:b + 1], kernel, stride=2, pad=0, output_pad=1)[0] + bias[b]
    np.testing.assert_allclose(got_t[b], expected_t, rtol=1e-5, atol=1e-5)


def test_spade_normalises_with_batch_statistics_then_modulates_map_by_map():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  maps = [rng.normal(size=(2, 4, 4, 2)).astype(np.float32), None,
          rng.normal(size=(2, 8, 8, 5)).astype(np.float32)]
  spade = layers.SPADE()
  variables = _init(spade, x, maps, train=True)
  params = variables["params"]
  assert set(params) == {"mlp_gamma", "mlp_beta", "mlp_gamma3", "mlp_beta3"}
  out, updated = spade.apply(variables, x, maps, train=True, mutable=["batch_stats"])
  expected = ref.batch_norm_train(x)
  for m, s in ((maps[0], ""), (maps[2], "3")):
    m = ref.bilinear_resize(m, 4, 4)
    gamma = ref.conv2d(m, np.asarray(params[f"mlp_gamma{s}"]["kernel"])) + params[f"mlp_gamma{s}"]["bias"]
    beta = ref.conv2d(m, np.asarray(params[f"mlp_beta{s}"]["kernel"])) + params[f"mlp_beta{s}"]["bias"]
    expected = expected * (1 + gamma) + beta
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
  assert "batch_norm" in updated["batch_stats"]


def test_adaptive_spade_uses_generated_weights_without_bias():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  m = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
  gamma_w = rng.normal(size=(2, 2, 3)).astype(np.float32)
  beta_w = rng.normal(size=(2, 2, 3)).astype(np.float32)
  spade = layers.SPADE(adaptive_first=True)
  variables = _init(spade, x, [m], (gamma_w, beta_w))
  assert "params" not in variables  # no γ/β parameters for the generated map
  out = np.asarray(spade.apply(variables, x, [m], (gamma_w, beta_w)))
  normalised = ref.batch_norm_eval(x, variables["batch_stats"]["batch_norm"])
  for b in range(2):
    expected = normalised[b] * (1 + m[b] @ gamma_w[b]) + m[b] @ beta_w[b]
    np.testing.assert_allclose(out[b], expected, rtol=1e-4, atol=1e-4)


def _np_spade_eval(x, maps, params, stats, weights=None):
  out = ref.batch_norm_eval(x, stats["batch_norm"])
  for i, m in enumerate(maps):
    if m is None:
      continue
    if i == 0 and weights is not None:
      gamma = np.einsum("bhwi,bio->bhwo", m, weights[0])
      beta = np.einsum("bhwi,bio->bhwo", m, weights[1])
    else:
      s = str(i + 1) if i else ""
      gamma = ref.conv2d(m, np.asarray(params[f"mlp_gamma{s}"]["kernel"])) + params[f"mlp_gamma{s}"]["bias"]
      beta = ref.conv2d(m, np.asarray(params[f"mlp_beta{s}"]["kernel"])) + params[f"mlp_beta{s}"]["bias"]
    out = out * (1 + gamma) + beta
  return out


def _np_sn_conv(x, params, spectral, pad=1):
  out = ref.conv2d(x, ref.sn_kernel_eval(params["kernel"], spectral["u"]), 1, pad)
  return out + params["bias"] if "bias" in params else out


@pytest.mark.parametrize("merge", ["mean", "concat"])
def test_composition_block_merges_parallel_spade_branches(merge):
  rng = np.random.default_rng(8)
  x = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
  maps = [rng.normal(size=(2, 4, 4, c)).astype(np.float32) for c in (2, 3, 3)]
  generated = tuple((rng.normal(size=(2, 2, c)).astype(np.float32),
                     rng.normal(size=(2, 2, c)).astype(np.float32)) for c in (6, 4, 6))
  block = layers.SPADEResnetBlockConcat(4, adaptive=True, merge=merge)
  variables = _init(block, x, maps, generated)
  p, s, bs = variables["params"], variables["spectral"], variables["batch_stats"]
  got = np.asarray(block.apply(variables, x, maps, generated))

  def branches(h, position, weights):
    outs = [ref.leaky(_np_spade_eval(h, [maps[j]], p.get(f"bn_{position}_{j}", {}), bs[f"bn_{position}_{j}"],
                                     weights if j == 0 else None)) for j in range(3)]
    return sum(outs) / 3 if merge == "mean" else np.concatenate(outs, -1)

  shortcut = _np_spade_eval(x, maps, p["bn_s"], bs["bn_s"], generated[2])
  shortcut = _np_sn_conv(shortcut, p["conv_s"], s["conv_s"], pad=0)
  dx = _np_sn_conv(branches(x, 0, generated[0]), p["conv_0"], s["conv_0"])
  dx = _np_sn_conv(branches(dx, 1, generated[1]), p["conv_1"], s["conv_1"])
  np.testing.assert_allclose(got, shortcut + dx, rtol=1e-4, atol=1e-4)
  width = {"mean": 6, "concat": 18}[merge]
  assert p["conv_0"]["kernel"].shape == (3, 3, width, 4)
  assert "mlp_gamma" not in p["bn_s"] and "mlp_gamma3" in p["bn_s"]  # slot 0 is generated


def test_mean_block_with_the_landmark_map_alone_is_the_plain_spade_block():
  # The raw pass: a mean-merge composition block fed only the landmark map equals upstream's
  # SPADEResnetBlock with the same (renamed) parameters.
  rng = np.random.default_rng(9)
  x = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
  maps = [rng.normal(size=(2, 4, 4, 2)).astype(np.float32), None, None]
  concat_block = layers.SPADEResnetBlockConcat(4, merge="mean")
  variables = _init(concat_block, x, maps)
  rename = {"bn_0_0": "bn_0", "bn_1_0": "bn_1"}
  plain_vars = {c: {rename.get(k, k): v for k, v in tree.items()} for c, tree in variables.items()}
  got = concat_block.apply(variables, x, maps)
  expected = layers.SPADEResnetBlock(4).apply(plain_vars, x, maps[:1])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="concat merge needs all"):
    layers.SPADEResnetBlockConcat(4, merge="concat").init(jax.random.key(0), x, maps)


def test_batchnorm_resnet_block_and_avg_pool_and_instance_norm():
  rng = np.random.default_rng(10)
  x = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)
  block = layers.BatchNormResnetBlock(3)
  v = _init(block, x, train=False)
  p, s, bs = v["params"], v["spectral"], v["batch_stats"]
  shortcut = _np_sn_conv(ref.batch_norm_eval(x, bs["bn_s"], p["bn_s"]), p["conv_s"], s["conv_s"], pad=0)
  dx = _np_sn_conv(ref.leaky(ref.batch_norm_eval(x, bs["bn_0"], p["bn_0"])), p["conv_0"], s["conv_0"])
  dx = _np_sn_conv(ref.leaky(ref.batch_norm_eval(dx, bs["bn_1"], p["bn_1"])), p["conv_1"], s["conv_1"])
  np.testing.assert_allclose(block.apply(v, x, train=False), shortcut + dx, rtol=1e-4, atol=1e-4)

  pooled = np.asarray(layers.avg_pool_3x3_s2(jnp.asarray(x)))
  assert pooled.shape == (2, 3, 3, 4)
  for i in range(3):
    for j in range(3):  # count_include_pad=False: the mean over the in-image part of the window
      window = x[:, max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
      np.testing.assert_allclose(pooled[:, i, j], window.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)

  normed = np.asarray(layers.instance_norm(jnp.asarray(x)))
  expected = (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(normed, expected, rtol=1e-4, atol=1e-5)
