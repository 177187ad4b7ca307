"""The multiscale PatchGAN: upstream's parameters exactly, its layers against numpy."""

import generator_numpy_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import upstream_param_map as upstream

from talkinghead_jax.models.discriminator import MultiscaleDiscriminator
from talkinghead_jax.models.layers import avg_pool_3x3_s2

UPSTREAM_D = 2_797_601


def test_parameters_equal_upstreams_and_patch_map_is_19_at_256():
  disc = MultiscaleDiscriminator(num_D=1)
  image = jax.ShapeDtypeStruct((1, 256, 256, 8), jnp.float32)
  variables, features = jax.eval_shape(
      lambda x: disc.init_with_output(jax.random.key(0), x)[::-1], image)
  listing = upstream.read_listing()["D"]
  assert upstream.compare(listing, variables) == ([], [], [], [])
  assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"])) == UPSTREAM_D
  assert upstream.count(listing) == UPSTREAM_D
  assert [f.shape[1:] for f in features[0]] == [(129, 129, 32), (65, 65, 64), (33, 33, 128), (17, 17, 256),
                                                (18, 18, 512), (19, 19, 1)]


def test_layers_and_scales_against_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 16, 16, 8)).astype(np.float32)
  disc = MultiscaleDiscriminator(num_D=2, ndf=4, n_layers=2)
  variables = ref.init_variables(disc, x)
  assert set(variables["params"]) == {"discriminator_0", "discriminator_1"}
  out = jax.device_get(jax.jit(disc.apply)(variables, x))
  assert [len(scale) for scale in out] == [4, 4]

  def single(inp, name):
    p, s = variables["params"][name], variables["spectral"][name]
    h = ref.leaky(ref.conv2d(inp, p["model0_0"]["kernel"], 2, 2) + p["model0_0"]["bias"])
    feats = [h]
    for n, stride in ((1, 2), (2, 1)):
      h = ref.conv2d(h, ref.sn_kernel_eval(p[f"model{n}_0_0"]["kernel"], s[f"model{n}_0_0"]["u"]), stride, 2)
      h = (h - h.mean((1, 2), keepdims=True)) / np.sqrt(h.var((1, 2), keepdims=True) + 1e-5)
      feats.append(ref.leaky(h))
      h = feats[-1]
    feats.append(ref.conv2d(h, p["model3_0"]["kernel"], 1, 2) + p["model3_0"]["bias"])
    return feats

  pooled = np.asarray(avg_pool_3x3_s2(jnp.asarray(x)))
  for scale, inp in ((0, x), (1, pooled)):
    for got, expected in zip(out[scale], single(inp, f"discriminator_{scale}")):
      np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_training_step_updates_spectral_vectors_and_has_finite_gradients():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 32, 32, 8)).astype(np.float32)
  disc = MultiscaleDiscriminator(num_D=1, ndf=8)
  variables = ref.init_variables(disc, x)

  def loss(params, x):
    out, updated = disc.apply({**variables, "params": params}, x, train=True, mutable=["spectral"])
    return jnp.mean(jax.nn.relu(1 - out[0][-1])), updated  # hinge loss on "real"

  grads, updated = jax.device_get(jax.jit(jax.grad(loss, has_aux=True))(variables["params"], x))
  for leaf in jax.tree_util.tree_leaves(grads):
    assert np.all(np.isfinite(leaf))
  u_old = variables["spectral"]["discriminator_0"]["model1_0_0"]["u"]
  u_new = updated["spectral"]["discriminator_0"]["model1_0_0"]["u"]
  assert not np.allclose(u_old, u_new)
  np.testing.assert_allclose(np.linalg.norm(u_new), 1.0, rtol=1e-5)
