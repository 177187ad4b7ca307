"""The face crop: one square box per clip from its landmarks (upstream's rule), frames and points.

Upstream (`face_tracker._crop_video`, mode 1; UPSTREAM_NOTES §3.1): with `dis` the larger of
the landmark box's width and height, averaged over the clip, the crop is a square of side
205·dis/90 whose top-left corner is the two-eye centre minus (100·dis/90, 80·dis/90), averaged
over the clip. So the face box spans 90/205 of the crop and the eyes sit at (100/205, 80/205)
of it. Parts of the box outside the frame are black.

Coordinates are the project's (DESIGN §2): x right, y down, pixel column i centred at i + 0.5,
so a frame point p lands at (p − corner)·size/side in the crop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import cv2
import numpy as np

# Upstream's constants: face extent 90 maps to a crop side of 205; the eye centre sits 100
# right of and 80 below the corner.
FACE_EXTENT = 90.0
CROP_SIDE = 205.0
EYE_OFFSET_X = 100.0
EYE_OFFSET_Y = 80.0
# Upstream's eye points: 36–40 and 42–46 (`lmark[36:41]`, `lmark[42:47]`).
EYE_POINTS = np.array([*range(36, 41), *range(42, 47)])


@dataclasses.dataclass(frozen=True)
class CropBox:
  """A square in frame pixels: top-left corner (x0, y0) and side length."""

  x0: float
  y0: float
  side: float

  def __post_init__(self):
    if not (math.isfinite(self.x0) and math.isfinite(self.y0) and math.isfinite(self.side)
            and self.side > 0):
      raise ValueError(f"crop box needs a finite corner and a positive side, got {self}")


def crop_box(points: Any, valid: Any) -> CropBox:
  """Upstream's clip box from landmarks (T, 68, 2|3) in frame pixels; only `valid` frames count."""
  points = np.asarray(points, np.float64)
  valid = np.asarray(valid, bool)
  if points.ndim != 3 or points.shape[1] != 68 or points.shape[2] not in (2, 3):
    raise ValueError(f"points must be (T, 68, 2|3), got {points.shape}")
  if valid.shape != points.shape[:1]:
    raise ValueError(f"valid must be ({points.shape[0]},), got {valid.shape}")
  if not valid.any():
    raise ValueError("crop_box needs at least one valid frame")
  xy = points[valid, :, :2]
  extent = (xy.max(axis=1) - xy.min(axis=1)).max(axis=-1)  # (V,) max(width, height)
  dis = float(extent.mean())
  if dis <= 0:
    raise ValueError("landmarks have zero extent: no face box")
  eye = xy[:, EYE_POINTS].mean(axis=1).mean(axis=0)  # (2,) mean eye centre
  unit = dis / FACE_EXTENT
  return CropBox(x0=float(eye[0] - EYE_OFFSET_X * unit), y0=float(eye[1] - EYE_OFFSET_Y * unit),
                 side=CROP_SIDE * unit)


def crop_points(points: Any, box: CropBox, size: int) -> np.ndarray:
  """Frame-pixel points (..., 2|3) -> crop pixels.

  (x, y) ↦ (p − corner)·size/side and z ↦ z·size/side: a similarity, so rotations measured
  in the crop equal those in the frame.
  """
  points = np.asarray(points)
  if points.shape[-1] not in (2, 3):
    raise ValueError(f"points must be (..., 2|3), got {points.shape}")
  dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float32
  scale = size / box.side
  offset = np.zeros(points.shape[-1])
  offset[:2] = box.x0, box.y0
  return ((points.astype(np.float64) - offset) * scale).astype(dtype)


def _window(frames: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
  """frames[:, top:top+height, left:left+width] with zeros where that lies outside the frame."""
  count, frame_h, frame_w, channels = frames.shape
  out = np.zeros((count, height, width, channels), frames.dtype)
  x_lo, x_hi = max(left, 0), min(left + width, frame_w)
  y_lo, y_hi = max(top, 0), min(top + height, frame_h)
  if x_lo < x_hi and y_lo < y_hi:
    out[:, y_lo - top:y_hi - top, x_lo - left:x_hi - left] = frames[:, y_lo:y_hi, x_lo:x_hi]
  return out


def crop_frames(frames: Any, box: CropBox, size: int) -> np.ndarray:
  """uint8 frames (T, H, W, 3) -> the box resized to uint8 (T, size, size, 3); black outside.

  Resampling: each output pixel centre is mapped into the frame and sampled bilinearly, the
  frame counting as zero outside. When the box is k ≥ 2 times larger than the output, the
  frame is first averaged over k×k pixel blocks (k = ⌊side/size⌋), so a downscale never skips
  source pixels (no aliasing); the bilinear step then scales by less than 2.
  """
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
  size = int(size)
  if size < 1:
    raise ValueError(f"size must be positive, got {size}")
  factor = max(1, int(math.floor(box.side / size)))
  # An integer window covering the box and the bilinear taps, in whole blocks. Blocks start at
  # the box's corner pixel: with k ≥ 2 the output pixel spacing is at least one block, so the
  # first centre lies half a block inside and no tap falls left of or above the window; an
  # upscale (k = 1) can tap the pixel before the corner, so it gets a one-pixel margin.
  margin = 1 if factor == 1 else 0
  left, top = math.floor(box.x0) - margin, math.floor(box.y0) - margin
  width = math.ceil((box.x0 + box.side + 1 - left) / factor) * factor
  height = math.ceil((box.y0 + box.side + 1 - top) / factor) * factor
  # Output pixel j (centre j + 0.5) sits at frame x = x0 + (j + 0.5)·side/size, i.e. at window
  # index ((x − left)/factor − 0.5) in OpenCV's convention (pixel centres at integers).
  step = box.side / size / factor
  matrix = np.array([[step, 0.0, (box.x0 - left) / factor + 0.5 * step - 0.5],
                     [0.0, step, (box.y0 - top) / factor + 0.5 * step - 0.5]])
  out = np.empty((len(frames), size, size, 3), np.uint8)
  for index in range(len(frames)):
    image = _window(frames[index:index + 1], left, top, width, height)[0].astype(np.float32)
    if factor > 1:
      # INTER_AREA at an exact integer ratio is the k×k block mean.
      image = cv2.resize(image, (width // factor, height // factor),
                         interpolation=cv2.INTER_AREA)
    warped = cv2.warpAffine(image, matrix, (size, size),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out[index] = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
  return out
