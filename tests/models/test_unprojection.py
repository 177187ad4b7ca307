"""The PRNet-style unprojection net: its residual block against numpy, shapes, gradients, and
that it can fit one (image, position map) pair."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talkinghead_jax.models import unprojection as up


def _conv_same(x, kernel, stride, bias=None):
  """numpy NHWC convolution with TensorFlow's 'SAME' padding (extra padding after)."""
  _, height, width, _ = x.shape
  k = kernel.shape[0]
  out_h, out_w = -(-height // stride), -(-width // stride)
  pad_h = max((out_h - 1) * stride + k - height, 0)
  pad_w = max((out_w - 1) * stride + k - width, 0)
  x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
  out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, kernel)
  return out if bias is None else out + bias


def _batch_norm(x, stats, params, epsilon=1e-3):
  return (x - stats["mean"]) / np.sqrt(stats["var"] + epsilon) * params["scale"] + params["bias"]


def test_residual_block_matches_numpy_prnet_block(numpy_variables):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
  block = up.ResBlock(features=6, stride=2)
  variables = numpy_variables(block, jnp.asarray(x), False)
  got = np.asarray(jax.jit(lambda v, x: block.apply(v, x, False))(variables, x))
  p = jax.tree_util.tree_map(np.asarray, variables["params"])
  s = jax.tree_util.tree_map(np.asarray, variables["batch_stats"])
  relu = lambda v: np.maximum(v, 0)
  y = relu(_batch_norm(_conv_same(x, p["conv_0"]["kernel"], 1), s["norm_0"], p["norm_0"]))
  y = relu(_batch_norm(_conv_same(y, p["conv_1"]["kernel"], 2), s["norm_1"], p["norm_1"]))
  y = _conv_same(y, p["conv_2"]["kernel"], 1, p["conv_2"]["bias"])
  shortcut = _conv_same(x, p["shortcut"]["kernel"], 2, p["shortcut"]["bias"])
  expected = relu(_batch_norm(y + shortcut, s["norm_out"], p["norm_out"]))
  assert got.shape == (2, 4, 4, 6)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_position_map_scaling_round_trips_and_covers_the_crop():
  size = 64
  corners = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
  pixels = np.asarray(up.denormalize_position_map(jnp.asarray(corners), size))
  # PRNet's range 1.1·S, shifted: x, y from −0.05·S to 1.05·S, z ±0.55·S.
  np.testing.assert_allclose(pixels, [[-3.2, -3.2, -35.2], [67.2, 67.2, 35.2]], rtol=1e-5)
  maps = np.random.default_rng(1).uniform(-5, 60, (2, 4, 4, 3)).astype(np.float32)
  back = up.denormalize_position_map(up.normalize_position_map(jnp.asarray(maps), size), size)
  np.testing.assert_allclose(np.asarray(back), maps, rtol=1e-5, atol=1e-4)


def test_unprojection_net_fits_one_pair(numpy_variables):
  size = 32
  net = up.UnprojectionNet(features=4, num_downsamples=2)
  rng = np.random.default_rng(2)
  image = jnp.asarray(rng.uniform(-1, 1, (1, size, size, 3)), jnp.float32)
  rows, cols = np.mgrid[0:size, 0:size] + 0.5
  target = np.stack([cols, rows, 4 * np.sin(cols / 5)], -1)[None].astype(np.float32)
  variables = numpy_variables(net, image, False)

  out = jax.jit(lambda v, x: net.apply(v, x, False))(variables, image)
  assert out.shape == (1, size, size, 3) and bool(jnp.all(jnp.isfinite(out)))
  # Outputs are (0, 1) → crop pixels: inside PRNet's shifted range.
  low = np.asarray(up.POSITION_LOW) * size
  assert np.all(np.asarray(out) > low) and np.all(np.asarray(out) < low + up.POSITION_RANGE * size)

  normalized_target = up.normalize_position_map(jnp.asarray(target), size)
  optimizer = optax.adam(1e-2)

  @jax.jit
  def step(params, batch_stats, opt_state):
    def loss_fn(params):
      prediction, updates = net.apply({"params": params, "batch_stats": batch_stats}, image, True,
                                      return_normalized=True, mutable=["batch_stats"])
      return jnp.mean(jnp.square(prediction - normalized_target)), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss, finite

  params, batch_stats = variables["params"], variables["batch_stats"]
  opt_state = optimizer.init(params)
  losses = []
  for _ in range(60):
    params, batch_stats, opt_state, loss, finite = step(params, batch_stats, opt_state)
    assert bool(finite)
    losses.append(float(loss))
  assert losses[-1] < losses[0] / 10, losses[::10]
