"""Dense optical flow between two frames (OpenCV's DIS) and a mask of where it can be trusted.

Stands in for upstream's FlowNet2 ground-truth flow (UPSTREAM_NOTES §2.13), which needs CUDA
extensions and downloaded weights; DIS (Kroeger et al., 2016) runs on the CPU with no weights.

Convention: a backward flow, `target(p) ≈ source(p + flow(p))`, in pixels, x then y: for every
target pixel, where to fetch it from in the source — what a warp samples with. Confidence
follows upstream: 1 where the target and the source warped by the flow agree (mean over the
colour channels of the squared difference, images in [0, 1], below 0.02), else 0.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _image(image: Any, name: str) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"{name} must be a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
  return image


def _gray(image: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def dis_flow(source: Any, target: Any, preset: str = "medium") -> np.ndarray:
  """Flow (H, W, 2) float32 with target(p) ≈ source(p + flow(p)), from uint8 RGB images.

  DIS works on the grayscale images; preset: "ultrafast", "fast" or "medium".
  """
  source, target = _image(source, "source"), _image(target, "target")
  if source.shape != target.shape:
    raise ValueError(f"source and target differ in shape: {source.shape} vs {target.shape}")
  if preset not in PRESETS:
    raise ValueError(f"unknown DIS preset {preset!r}; one of {sorted(PRESETS)}")
  dis = cv2.DISOpticalFlow_create(PRESETS[preset])
  # OpenCV's calc(I0, I1) returns f with I0(p) ≈ I1(p + f(p)): the target goes first.
  flow = dis.calc(_gray(target), _gray(source), None)
  return np.asarray(flow, np.float32)


def warp_bilinear(image: Any, flow: Any) -> np.ndarray:
  """out(p) = image(p + flow(p)), bilinear, positions clamped to the image (edge pixels repeat).

  image (H, W, C) or (H, W), any numeric dtype; flow (H, W, 2) in pixels. Returns float32.
  """
  image = np.asarray(image, np.float32)
  flow = np.asarray(flow, np.float32)
  height, width = image.shape[:2]
  if flow.shape != (height, width, 2):
    raise ValueError(f"flow must be ({height}, {width}, 2), got {flow.shape}")
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
  x = np.clip(cols + flow[..., 0], 0, width - 1)
  y = np.clip(rows + flow[..., 1], 0, height - 1)
  x0 = np.minimum(np.floor(x).astype(int), width - 2) if width > 1 else np.zeros_like(x, int)
  y0 = np.minimum(np.floor(y).astype(int), height - 2) if height > 1 else np.zeros_like(y, int)
  wx, wy = x - x0, y - y0
  x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
  if image.ndim == 3:
    wx, wy = wx[..., None], wy[..., None]
  top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
  bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
  return (top * (1 - wy) + bottom * wy).astype(np.float32)


def flow_confidence(source: Any, target: Any, flow: Any, threshold: float = 0.02) -> np.ndarray:
  """(H, W) float32: 1 where mean_c (target − source warped by flow)² < threshold, else 0.

  Images are uint8 RGB, compared in [0, 1]; the warp is `warp_bilinear`.
  """
  source, target = _image(source, "source"), _image(target, "target")
  warped = warp_bilinear(source.astype(np.float32) / 255, flow)
  error = np.mean(np.square(target.astype(np.float32) / 255 - warped), axis=-1)
  return (error < threshold).astype(np.float32)
