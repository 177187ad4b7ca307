"""The generator's losses against plain numpy transcriptions of upstream's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.models import vgg
from talkinghead_jax.train import losses

RNG = np.random.default_rng(0)


def _d_outputs(num_d: int, seed: int):
  """D-shaped outputs: per scale, three feature maps and the patch logits last."""
  rng = np.random.default_rng(seed)
  scales = []
  for scale in range(num_d):
    side = 8 >> scale
    scales.append([rng.normal(size=(2, side, side, c)).astype(np.float32) for c in (4, 6, 5)] +
                  [rng.normal(size=(2, side - 1, side - 1, 1)).astype(np.float32) * 2])
  return scales


def _as_jax(outputs):
  return [[jnp.asarray(a) for a in scale] for scale in outputs]


@pytest.mark.parametrize("num_d", [1, 2])
def test_hinge_terms_match_numpy(num_d):
  real, fake = _d_outputs(num_d, 1), _d_outputs(num_d, 2)
  d_real, d_fake = losses.hinge_d_loss(_as_jax(real), _as_jax(fake))
  g = losses.hinge_g_loss(_as_jax(fake))
  # few-shot-vid2vid GANLoss on a list: per scale −mean(min(x − 1, 0)) (real) /
  # −mean(min(−x − 1, 0)) (fake) / −mean(x) (generator), averaged over scales.
  expected_real = np.mean([-np.mean(np.minimum(s[-1] - 1, 0)) for s in real])
  expected_fake = np.mean([-np.mean(np.minimum(-s[-1] - 1, 0)) for s in fake])
  expected_g = np.mean([-np.mean(s[-1]) for s in fake])
  np.testing.assert_allclose([float(d_real), float(d_fake), float(g)], [expected_real, expected_fake, expected_g],
                             rtol=1e-5)


@pytest.mark.parametrize("num_d", [1, 2])
def test_feature_matching_matches_numpy_and_treats_real_as_constant(num_d):
  real, fake = _d_outputs(num_d, 3), _d_outputs(num_d, 4)
  got = losses.feature_matching_loss(_as_jax(real), _as_jax(fake))
  # LossCollector.GAN_matching_loss: Σ_i Σ_{j < last} (1/num_D) · L1(fake_ij, real_ij) · 10.
  expected = sum(np.mean(np.abs(f - r)) for rs, fs in zip(real, fake) for r, f in zip(rs[:-1], fs[:-1]))
  np.testing.assert_allclose(float(got), 10.0 * expected / num_d, rtol=1e-5)
  grad_real = jax.grad(lambda r: losses.feature_matching_loss(r, _as_jax(fake)))(_as_jax(real))
  assert all(float(jnp.abs(g).max()) == 0 for scale in grad_real for g in scale)


def test_perceptual_loss_matches_numpy_on_a_small_vgg():
  fake = RNG.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  real = RNG.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  network = vgg.VGGFeatures("vgg19", width_scale=16)
  # Params filled from numpy (no random-init kernels to compile).
  abstract = jax.eval_shape(network.init, jax.random.key(0), jnp.asarray(fake))["params"]
  params = jax.tree_util.tree_map(lambda leaf: RNG.normal(0, 0.3, leaf.shape).astype(np.float32), abstract)
  features_fn = lambda x: network.apply({"params": params}, x)
  got = jax.jit(lambda a, b: losses.perceptual_loss(features_fn, a, b))(fake, real)
  # The reference: each image alone through the network, unnormalised [-1, 1] input (upstream).
  features = jax.jit(features_fn)
  fake_features = [np.asarray(f) for f in features(jnp.asarray(fake))]
  real_features = [np.asarray(f) for f in features(jnp.asarray(real))]
  weights = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1]
  expected = 10 * sum(w * np.mean(np.abs(f - r)) for w, f, r in zip(weights, fake_features, real_features))
  np.testing.assert_allclose(float(got), expected, rtol=1e-4)
  # Only the fake side gets a gradient (upstream detaches the target's features).
  grad_real = jax.jit(jax.grad(lambda b: losses.perceptual_loss(features_fn, jnp.asarray(fake), b)))(real)
  assert float(jnp.abs(grad_real).max()) == 0


def test_flow_warp_and_weight_losses_match_numpy():
  flow = RNG.normal(size=(2, 6, 5, 2)).astype(np.float32) * 3
  flow_gt = RNG.normal(size=(2, 6, 5, 2)).astype(np.float32) * 3
  confidence = (RNG.uniform(size=(2, 6, 5)) > 0.4).astype(np.float32)
  got = losses.flow_loss(jnp.asarray(flow), jnp.asarray(flow_gt), jnp.asarray(confidence))
  # MaskedL1Loss: mask expanded to the flow's channels, L1 mean over every element.
  mask = np.repeat(confidence[..., None], 2, axis=-1)
  np.testing.assert_allclose(float(got), 10 * np.mean(np.abs(flow * mask - flow_gt * mask)), rtol=1e-5)

  warped = RNG.uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32)
  target = RNG.uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32)
  np.testing.assert_allclose(float(losses.warp_loss(jnp.asarray(warped), jnp.asarray(target))),
                             10 * np.mean(np.abs(warped - target)), rtol=1e-5)
  np.testing.assert_allclose(float(losses.l1_loss(jnp.asarray(warped), jnp.asarray(target), weight=3.0)),
                             3 * np.mean(np.abs(warped - target)), rtol=1e-5)

  weight_map = RNG.uniform(size=(2, 6, 5, 1)).astype(np.float32)
  conf = np.clip(1 - np.sum(np.abs(warped - target), -1, keepdims=True), 0, 1)
  expected = 10 * (np.mean(np.abs(weight_map * conf - 0 * conf)) +
                   np.mean(np.abs(weight_map * (1 - conf) - 1 * (1 - conf))))
  got = losses.weight_map_loss(jnp.asarray(weight_map), jnp.asarray(warped), jnp.asarray(target))
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_position_map_loss_matches_numpy():
  prediction = RNG.uniform(size=(2, 4, 4, 3)).astype(np.float32)
  target = RNG.uniform(size=(2, 4, 4, 3)).astype(np.float32)
  np.testing.assert_allclose(float(losses.position_map_loss(jnp.asarray(prediction), jnp.asarray(target))),
                             np.mean((prediction - target)**2), rtol=1e-5)
  weights = RNG.uniform(size=(4, 4)).astype(np.float32)
  expected = np.sum(weights[None, ..., None] * (prediction - target)**2) / (3 * 2 * weights.sum())
  got = losses.position_map_loss(jnp.asarray(prediction), jnp.asarray(target), jnp.asarray(weights))
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
