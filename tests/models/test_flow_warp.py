"""Warping against a numpy grid_sample (and PyTorch's), finite differences, and the flow net."""

import generator_numpy_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.models import flow as flow_lib


def _case(seed=0, height=5, width=7):
  rng = np.random.default_rng(seed)
  image = rng.normal(size=(2, height, width, 3)).astype(np.float32)
  # Flows from sub-pixel to far outside the image (border padding).
  flow = rng.normal(scale=3.0, size=(2, height, width, 2)).astype(np.float32)
  flow[0, 0, 0] = (-40.0, 2.5)
  flow[1, -1, -1] = (15.0, 30.0)
  return image, flow


def test_warp_matches_numpy_grid_sample_with_upstreams_grid():
  image, flow = _case()
  got = np.asarray(flow_lib.warp(jnp.asarray(image), jnp.asarray(flow)))
  np.testing.assert_allclose(got, ref.upstream_resample(image, flow), rtol=1e-5, atol=1e-5)


def test_warp_matches_pytorch_grid_sample():
  torch = pytest.importorskip("torch")
  image, flow = _case(seed=1, height=6, width=4)
  _, height, width, _ = image.shape
  grid = np.stack([np.linspace(-1, 1, width)[None, None, :] + flow[..., 0] / ((width - 1) / 2),
                   np.linspace(-1, 1, height)[None, :, None] + flow[..., 1] / ((height - 1) / 2)], -1)
  expected = torch.nn.functional.grid_sample(
      torch.from_numpy(image.transpose(0, 3, 1, 2)), torch.from_numpy(grid.astype(np.float32)),
      mode="bilinear", padding_mode="border", align_corners=False).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(flow_lib.warp(jnp.asarray(image), jnp.asarray(flow)), expected,
                             rtol=1e-5, atol=1e-5)


def test_zero_flow_is_upstreams_slight_zoom_not_the_identity():
  image = np.arange(5, dtype=np.float32)[None, None, :, None] * np.ones((1, 5, 1, 1), np.float32)
  got = np.asarray(flow_lib.warp(jnp.asarray(image), jnp.zeros((1, 5, 5, 2))))[0, 0, :, 0]
  # Column j samples x = j·W/(W−1) − ½, clamped to [0, W−1].
  np.testing.assert_allclose(got, np.clip(np.arange(5) * 5 / 4 - 0.5, 0, 4), rtol=1e-6)


def test_warp_gradients_match_finite_differences():
  image, flow = _case(seed=2)
  flow = np.clip(flow, -1.5, 1.5) + 0.013  # inside the image, off the pixel grid
  weights = np.random.default_rng(3).normal(size=image.shape)

  def objective(img, fl):
    return jnp.sum(flow_lib.warp(img, fl) * weights)

  grad_image, grad_flow = jax.grad(objective, argnums=(0, 1))(jnp.asarray(image), jnp.asarray(flow))
  eps = 1e-3
  for index in [(0, 1, 2, 0), (1, 3, 4, 1), (0, 4, 6, 1)]:
    step = np.zeros_like(flow)
    step[index] = eps
    numeric = (ref.upstream_resample(image, flow + step) - ref.upstream_resample(image, flow - step))
    numeric = float((numeric * weights).sum()) / (2 * eps)
    np.testing.assert_allclose(grad_flow[index], numeric, rtol=2e-2, atol=2e-3)
  # Warping is linear in the image: the gradient is the transposed sampling.
  index = (1, 2, 3, 2)
  basis = np.zeros_like(image)
  basis[index] = 1.0
  np.testing.assert_allclose(grad_image[index], (ref.upstream_resample(basis, flow) * weights).sum(),
                             rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_flow_net():
  net = flow_lib.FlowGenerator(nff=4, n_downsample_F=2, n_blocks_F=1)
  rng = np.random.default_rng(4)
  inputs = (rng.uniform(size=(2, 8, 8, 1)).astype(np.float32),
            rng.uniform(size=(2, 8, 8, 1)).astype(np.float32),
            rng.uniform(-1, 1, size=(2, 8, 8, 3)).astype(np.float32))
  return net, inputs, ref.init_variables(net, *inputs, False)


def test_flow_net_names_and_heads(tiny_flow_net):
  net, inputs, variables = tiny_flow_net
  params = variables["params"]
  assert sorted(params) == ["conv_flow_0", "conv_w_0", "down_flow_0_0", "down_flow_0_1", "down_flow_2_0",
                            "down_flow_2_1", "down_flow_4_0", "down_flow_4_1", "res_flow_0", "up_flow_1_0",
                            "up_flow_1_1", "up_flow_4_0", "up_flow_4_1"]
  assert params["down_flow_0_0"]["kernel"].shape == (3, 3, 5, 4)  # 5 input channels
  assert "bias" not in params["down_flow_0_0"]  # upstream drops it before the norm
  # Known answer: constant heads give flow = 20·bias and weight = sigmoid(bias).
  params = {**params, "conv_flow_0": {"kernel": np.zeros((3, 3, 4, 2), np.float32),
                                      "bias": np.array([0.5, -0.25], np.float32)},
            "conv_w_0": {"kernel": np.zeros((3, 3, 4, 1), np.float32), "bias": np.array([0.3], np.float32)}}
  flow, weight = net.apply({**variables, "params": params}, *inputs, False)
  assert flow.shape == (2, 8, 8, 2) and weight.shape == (2, 8, 8, 1)
  np.testing.assert_allclose(flow, np.broadcast_to([10.0, -5.0], (2, 8, 8, 2)), rtol=1e-6)
  np.testing.assert_allclose(weight, 1 / (1 + np.exp(-0.3)), rtol=1e-6)
