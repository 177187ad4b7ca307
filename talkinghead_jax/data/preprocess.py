"""Per-clip preprocessing: checks, landmarks, the face crop, head pose, key frame and audio.

A data set is prepared in two passes over its clips, because the canonical face that poses are
measured against is fitted over the whole set:

    options = PrepareOptions(size=256)
    found = [detect_clip(path, detector, options) for path in paths]     # pass 1, per clip
    canonical = fit_canonical([f.landmarks for f in found], options.size)
    prepared = [finish_clip(path, f, canonical, options) for ...]        # pass 2, per clip
    pca = fit_landmark_pca([p.front for p in prepared])

Any step may raise `ClipRejected` with one of `REJECT_REASONS`; a batch job records it (see
`rejects.RejectsManifest`) and goes on with the next clip.

How the reasons are told apart:
  unreadable: the file cannot be opened or has no readable header (missing, empty, not a
      media file, no video stream; also an mp4 cut before its header, which cannot be told
      from any other junk).
  truncated: the header reads (`media.probe_video` succeeds) but decoding fails or yields
      fewer frames than the header states (beyond `read_video`'s slack of 3 frames or 2 %).
  no_audio / silent: no audio stream / audio RMS below `silence_rms` (full scale = 1).
  too_short: fewer than `min_frames` frames at `fps`.
  no_face: the detector finds no face in any frame.
  multiple_faces: the detector saw more than one face (`Landmarks.num_faces`) in over 10 % of
      the frames.
  too_many_failures: more than `max_missing_fraction` of the frames without a detection, or
      a gap that `detectors.fill_gaps` leaves open (it fills runs of at most `max_gap_frames`:
      interpolated inside the clip, held at its ends).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Any, Sequence

import numpy as np

from talkinghead_jax import audio as audio_lib
from talkinghead_jax import media
from talkinghead_jax.data import crop
from talkinghead_jax.data import detectors
from talkinghead_jax.errors import ConfigError, InputError, TalkingHeadError
from talkinghead_jax.fileio import write_npz
from talkinghead_jax.geometry import pca as pca_lib
from talkinghead_jax.geometry import rigid
from talkinghead_jax.geometry.landmarks import NUM_POINTS, STABLE_27

REJECT_REASONS = ("unreadable", "truncated", "no_audio", "silent", "too_short", "no_face",
                  "multiple_faces", "too_many_failures")
# A clip is one person talking: a second face in more than this share of frames rejects it.
MULTIPLE_FACES_FRACTION = 0.1
# Mirror-image pairs (image-left point, image-right point) among the 27 stable points; their
# differences are all perpendicular to the face's plane of symmetry.
SYMMETRIC_STABLE_PAIRS = ((1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (17, 26), (21, 22),
                          (36, 45), (39, 42), (31, 35), (32, 34))
_FORMAT = "talkinghead_jax.ClipLandmarks/1"


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
  """How clips are prepared (the same options must be used for both passes)."""

  size: int = 256  # crop side in pixels
  audio_rates: tuple[int, ...] = (16000, 50000)  # Φ's and Ψ's rates (UPSTREAM_NOTES §3.7)
  fps: int = 25
  min_frames: int = 25
  max_gap_frames: int = 5  # longest run of missed detections that is interpolated
  max_missing_fraction: float = 0.2
  silence_rms: float = 1e-3

  def __post_init__(self):
    if self.size < 8 or self.size % 2:
      raise ConfigError(f"crop size must be even and at least 8, got {self.size}")
    if not self.audio_rates or any(int(r) != r or r <= 0 for r in self.audio_rates):
      raise ConfigError(f"audio rates must be positive integers, got {self.audio_rates}")
    if self.fps <= 0 or self.min_frames < 1 or self.max_gap_frames < 0:
      raise ConfigError("fps and min_frames must be positive, max_gap_frames non-negative")
    if not 0 <= self.max_missing_fraction <= 1 or self.silence_rms < 0:
      raise ConfigError("max_missing_fraction must be in [0, 1] and silence_rms >= 0")


class ClipRejected(TalkingHeadError):
  """A clip that cannot be used: `reason` (one of REJECT_REASONS) and a one-line `detail`."""

  def __init__(self, reason: str, detail: str):
    if reason not in REJECT_REASONS:
      raise ValueError(f"unknown reject reason {reason!r}; one of {REJECT_REASONS}")
    self.reason = reason
    self.detail = detail
    super().__init__(f"{reason}: {detail}")


@dataclasses.dataclass(frozen=True, eq=False)
class ClipLandmarks:
  """Pass 1's result for one clip.

  box: the clip's crop box in frame pixels; landmarks (T, 68, 3) float32 in pixels of the
  size×size crop, gaps filled; detected (T,) bool: the detector found the face in that frame
  (False: interpolated); confidence (T,) float32, the detector's score (0 where not detected).
  """

  box: crop.CropBox
  landmarks: np.ndarray
  detected: np.ndarray
  confidence: np.ndarray
  num_frames: int
  size: int

  def __post_init__(self):
    count = self.num_frames
    if self.landmarks.shape != (count, NUM_POINTS, 3):
      raise ValueError(f"landmarks must be ({count}, {NUM_POINTS}, 3), got "
                       f"{self.landmarks.shape}")
    if self.detected.shape != (count,) or self.confidence.shape != (count,):
      raise ValueError(f"detected and confidence must be ({count},)")

  def save(self, path: str | os.PathLike) -> None:
    """Writes an .npz (atomically)."""
    arrays = {
        "format": np.asarray(_FORMAT),
        "box": np.array([self.box.x0, self.box.y0, self.box.side], np.float64),
        "landmarks": self.landmarks.astype(np.float32),
        "detected": self.detected.astype(bool),
        "confidence": self.confidence.astype(np.float32),
        "num_frames": np.asarray(self.num_frames, np.int64),
        "size": np.asarray(self.size, np.int64),
    }
    write_npz(path, arrays)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "ClipLandmarks":
    """Reads a file written by `save`; InputError if it is missing or not such a file."""
    if not os.path.isfile(path):
      raise InputError(path, "clip landmarks file not found")
    try:
      with np.load(path, allow_pickle=False) as archive:
        if "format" not in archive.files or str(archive["format"]) != _FORMAT:
          raise InputError(path, f"not a clip landmarks file (no '{_FORMAT}' format tag)")
        box = archive["box"]
        return cls(box=crop.CropBox(*(float(v) for v in box)),
                   landmarks=archive["landmarks"].astype(np.float32),
                   detected=archive["detected"].astype(bool),
                   confidence=archive["confidence"].astype(np.float32),
                   num_frames=int(archive["num_frames"]), size=int(archive["size"]))
    except InputError:
      raise
    except (OSError, ValueError, TypeError, EOFError, KeyError, zipfile.BadZipFile) as error:
      raise InputError(path, f"corrupt clip landmarks file ({type(error).__name__}: {error})"
                       ) from error


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedClip:
  """Pass 2's result for one clip (DESIGN §2 conventions; S = options.size).

  frames (T, S, S, 3) uint8 crops; landmarks (T, 68, 3) f32 crop pixels; detected (T,) bool;
  pose (T, 6) f32 [rotvec, t] with front = R·l + t against the canonical face; front
  (T, 68, 3) f32; key_frame: argmin Σ|rotvec|; audio: rate -> int16 (T·rate/fps,).
  """

  frames: np.ndarray
  landmarks: np.ndarray
  detected: np.ndarray
  pose: np.ndarray
  front: np.ndarray
  key_frame: int
  audio: dict[int, np.ndarray]


def _read(video_path, options: PrepareOptions) -> media.Video:
  """The decoded clip, or ClipRejected "unreadable" / "truncated" (see the module doc)."""
  try:
    return media.read_video(video_path, fps=options.fps)
  except InputError as error:
    try:
      media.probe_video(video_path)
    except InputError:
      raise ClipRejected("unreadable", error.problem) from error
    raise ClipRejected("truncated", error.problem) from error


def _rms(samples: np.ndarray) -> float:
  return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0


def detect_clip(video_path: str | os.PathLike, detector,
                options: PrepareOptions = PrepareOptions(), *, video: media.Video | None = None,
                require_audio: bool = True) -> ClipLandmarks:
  """Pass 1: decode and check a clip, find its landmarks, its crop box, and map them into it.

  The detector sees the full frames. Frames whose landmark box has no width or no height count
  as missed (upstream drops them, UPSTREAM_NOTES §3.8). Raises ClipRejected. `video`: the clip
  already decoded (at options.fps); `require_audio=False` accepts a clip without sound (an
  inference reference video).
  """
  video = _read(video_path, options) if video is None else video
  if video.audio is None and require_audio:
    raise ClipRejected("no_audio", "the file has no audio stream")
  loudness = _rms(video.audio) if video.audio is not None else 0.0
  if require_audio and loudness < options.silence_rms:
    raise ClipRejected("silent", f"audio RMS {loudness:.2e} < {options.silence_rms:.0e}")
  count = video.num_frames
  if count < options.min_frames:
    raise ClipRejected("too_short", f"{count} frames at {options.fps} fps, need "
                       f"{options.min_frames}")
  found = detector.detect(video.frames, source=os.fspath(video_path))
  if len(found) != count:
    raise ValueError(f"detector returned {len(found)} frames for {count}")
  extent = found.points[..., :2].max(axis=1) - found.points[..., :2].min(axis=1)
  detected = np.asarray(found.valid, bool) & (extent > 0).all(axis=-1)
  if not detected.any():
    raise ClipRejected("no_face", f"no face found in {count} frames")
  crowded = float(np.mean(found.num_faces > 1))
  if crowded > MULTIPLE_FACES_FRACTION:
    raise ClipRejected("multiple_faces", f"several faces in {crowded:.0%} of the frames")
  missing = 1 - float(detected.mean())
  if missing > options.max_missing_fraction:
    raise ClipRejected("too_many_failures", f"no face in {missing:.0%} of the frames "
                       f"(limit {options.max_missing_fraction:.0%})")
  found = dataclasses.replace(found, valid=detected)
  filled, gaps = detectors.fill_gaps(found, options.max_gap_frames)
  if gaps.longest_unfilled_run:
    raise ClipRejected("too_many_failures", f"{gaps.longest_unfilled_run} consecutive frames "
                       f"without a face (gaps of up to {options.max_gap_frames} are filled)")
  box = crop.crop_box(found.points, detected)
  confidence = np.where(detected, found.confidence, 0).astype(np.float32)
  return ClipLandmarks(box=box,
                       landmarks=crop.crop_points(filled.points, box, options.size).astype(
                           np.float32),
                       detected=detected, confidence=confidence, num_frames=count,
                       size=options.size)


def even_indices(count: int, samples: int) -> np.ndarray:
  """Up to `samples` distinct indices into range(count), evenly spaced, first and last included."""
  if count < 1:
    return np.zeros(0, int)
  return np.unique(np.rint(np.linspace(0, count - 1, min(samples, count))).astype(int))


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
  """The rotation closest to `matrix` in the Frobenius norm (its SVD with det +1)."""
  u, _, vt = np.linalg.svd(matrix)
  sign = np.sign(np.linalg.det(u @ vt)) or 1.0
  return u @ np.diag([1.0, 1.0, sign]) @ vt


def _level_rotation(face: np.ndarray) -> np.ndarray:
  """The smallest rotation Q (3, 3) that turns the face's left→right axis onto +x.

  The axis is the normalised sum of the symmetric stable pairs' differences (right minus left
  point): the normal of the face's plane of symmetry. Applying Q (rows: face @ Qᵀ) removes yaw
  and roll and keeps the pitch.
  """
  left = face[[a for a, _ in SYMMETRIC_STABLE_PAIRS]]
  right = face[[b for _, b in SYMMETRIC_STABLE_PAIRS]]
  axis = (right - left).sum(axis=0)
  axis = axis / np.linalg.norm(axis)
  target = np.array([1.0, 0.0, 0.0])
  turn = np.cross(axis, target)
  angle = np.arctan2(np.linalg.norm(turn), axis @ target)
  if np.linalg.norm(turn) < 1e-12:
    rotvec = np.zeros(3) if angle < 1 else np.array([0.0, 0.0, np.pi])  # mirrored: turn round z
  else:
    rotvec = turn / np.linalg.norm(turn) * angle
  return rigid.rotvec_to_matrix(rotvec)


def place_in_crop(face: Any, size: int) -> np.ndarray:
  """A face (68, 3) scaled and moved to where upstream's crop puts a face, as float32.

  Its landmark box (the larger of width and height) spans 90/205 of the size×size crop, its
  eye centre (points 36–40, 42–46) sits at (100/205, 80/205)·size, and its mean depth is 0.
  So `crop.crop_box` of this face alone is exactly (0, 0, size).
  """
  face = np.asarray(face, np.float64)
  extent = float((face[:, :2].max(axis=0) - face[:, :2].min(axis=0)).max())
  unit = size / crop.CROP_SIDE
  scaled = face * (crop.FACE_EXTENT * unit / extent)
  eye = scaled[crop.EYE_POINTS, :2].mean(axis=0)
  shift = np.array([crop.EYE_OFFSET_X * unit - eye[0], crop.EYE_OFFSET_Y * unit - eye[1],
                    -scaled[:, 2].mean()])
  return (scaled + shift).astype(np.float32)


def fit_canonical(landmark_sets: Sequence[Any], size: int,
                  frames_per_clip: int = 16) -> np.ndarray:
  """The canonical face (68, 3) float32 of a data set, in the size×size crop's convention.

  landmark_sets: per clip (T, 68, 3) crop-pixel landmarks; up to `frames_per_clip` evenly
  spaced frames of each are averaged by generalized Procrustes (`rigid.canonical_face`, on the
  27 stable points). Orientation: the mean face is turned to the data's average head
  orientation (the rotation nearest to the mean of the per-frame alignment rotations), then
  levelled by the smallest rotation that makes its plane of symmetry the y–z plane (upright,
  containing the viewing direction; left→right axis along +x): no yaw or roll, and the pitch
  the faces have on average (a face has no anatomical zero pitch that 68 landmarks show).
  Placement: `place_in_crop`. Deterministic; the Procrustes reference frame does not matter
  (the average orientation is taken relative to the mean face, whatever its orientation).
  """
  samples = []
  for landmarks in landmark_sets:
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_POINTS, 3):
      raise ValueError(f"landmark sets must be (T, {NUM_POINTS}, 3), got {landmarks.shape}")
    samples.append(landmarks[even_indices(len(landmarks), frames_per_clip)])
  if not samples or not sum(len(s) for s in samples):
    raise ValueError("fit_canonical needs at least one frame")
  stack = np.concatenate(samples)
  mean = np.asarray(rigid.canonical_face(stack), np.float64)
  mean = mean - mean.mean(axis=0)
  # rotations[i] takes frame i onto the mean, so frame i ≈ mean @ rotations[i] (rows), and
  # the mean face as the frames show it on average is mean @ (average of the rotations).
  rotations, _ = rigid.fit(stack[:, STABLE_27], mean[STABLE_27])
  face = mean @ _nearest_rotation(rotations.sum(axis=0))
  face = face @ _level_rotation(face).T
  return place_in_crop(face, size)


def _audio_track(samples: np.ndarray, from_rate: int, rate: int, length: int) -> np.ndarray:
  """Mono float audio -> int16 of exactly `length` samples at `rate` (zero-padded or cut)."""
  resampled = audio_lib.resample(samples, from_rate, rate)[:length]
  if resampled.size < length:
    resampled = np.concatenate([resampled, np.zeros(length - resampled.size, np.float32)])
  return np.rint(np.clip(resampled, -1.0, 1.0) * 32767).astype(np.int16)


def finish_clip(video_path: str | os.PathLike, clip_landmarks: ClipLandmarks, canonical: Any,
                options: PrepareOptions = PrepareOptions(), *, video: media.Video | None = None,
                require_audio: bool = True) -> PreparedClip:
  """Pass 2: crop frames, pose against the canonical face, frontalize, key frame, audio.

  Pose: Kabsch over the 27 stable points (`rigid.pose_from_landmarks`); key frame: the frame
  with the smallest Σ|rotvec| (upstream). Audio: resampled to each of options.audio_rates,
  exactly T·rate/fps samples, clipped to ±1 and scaled by 32767 (rounded); none without sound
  when `require_audio` is off. `video`: as `detect_clip`'s. Raises ClipRejected.
  """
  if clip_landmarks.size != options.size:
    raise ConfigError(f"landmarks were mapped into a {clip_landmarks.size}-pixel crop, options "
                      f"ask for {options.size}")
  canonical = np.asarray(canonical, np.float64)
  if canonical.shape != (NUM_POINTS, 3):
    raise ValueError(f"canonical face must be ({NUM_POINTS}, 3), got {canonical.shape}")
  video = _read(video_path, options) if video is None else video
  count = clip_landmarks.num_frames
  if video.num_frames != count:
    raise ClipRejected("truncated" if video.num_frames < count else "unreadable",
                       f"decodes to {video.num_frames} frames, {count} when its landmarks were "
                       "found (file changed?)")
  if video.audio is None and require_audio:
    raise ClipRejected("no_audio", "the file has no audio stream")
  landmarks = clip_landmarks.landmarks.astype(np.float64)
  pose = rigid.pose_from_landmarks(landmarks, canonical)
  front = rigid.frontalize(landmarks, pose)
  audio = {}
  for rate in options.audio_rates if video.audio is not None else ():
    length = int(round(count * rate / options.fps))
    audio[int(rate)] = _audio_track(video.audio, video.sample_rate, int(rate), length)
  return PreparedClip(
      frames=crop.crop_frames(video.frames, clip_landmarks.box, options.size),
      landmarks=clip_landmarks.landmarks.astype(np.float32),
      detected=clip_landmarks.detected.astype(bool),
      pose=pose.astype(np.float32),
      front=front.astype(np.float32),
      key_frame=int(np.argmin(np.abs(pose[:, :3]).sum(axis=-1))),
      audio=audio,
  )


def fit_landmark_pca(front_sets: Sequence[Any], num_components: int = 20,
                     frames_per_clip: int = 32) -> pca_lib.LandmarkPCA:
  """PCA of frontalized landmarks' x, y (136-d; UPSTREAM_NOTES §3.6) over evenly sampled frames.

  front_sets: per clip (T, 68, 3) (or (T, 68, 2)); up to `frames_per_clip` frames of each.
  """
  samples = []
  for front in front_sets:
    front = np.asarray(front, np.float32)
    if front.ndim != 3 or front.shape[1] != NUM_POINTS or front.shape[2] not in (2, 3):
      raise ValueError(f"frontal landmarks must be (T, {NUM_POINTS}, 2|3), got {front.shape}")
    samples.append(front[even_indices(len(front), frames_per_clip), :, :2])
  total = sum(len(s) for s in samples)
  if total < max(2, num_components):
    raise TalkingHeadError(f"a {num_components}-component landmark PCA needs at least "
                           f"{max(2, num_components)} frames, got {total}")
  return pca_lib.LandmarkPCA(num_components).fit(np.concatenate(samples))
