"""The driving signal for Θ: frontal expressive landmarks and head poses, one per output frame.

From audio (`motion_from_audio`), T = round(duration · fps) frames:

Expressions (Ψ). Inputs as in training (data/input_expression.py): per-frame windows of 7 audio
chunks at Ψ's sample rate; the identity is the reference's closed-mouth frame f_r (least mouth
opening among its frames with a detected face), Ψ's identity input PCA(f_r), its identity offset
o = f_r − m (m the PCA's mean). Ψ predicts coefficients c_t of the identity-free face, whose
neutral (the closed mouth of the average face) is c = 0; the frontal landmarks are
x, y = s·c_t·U + m + o with s = `expression_scale` (0: the reference's closed mouth every frame;
1: Ψ's expression; > 1 exaggerated), z the closed-mouth frame's (a 2-D PCA has none). Ψ sees
each frame on its own, so it runs over blocks of frames with exactly the values of one pass.

Head motion (Φ, pose source "learner"). As in training (data/input_head_motion.py) and
evaluation (eval/stage_head_motion.py): Φ observes τ frames — poses normalised with the set's
pose statistics and smoothed, and their audio windows smoothed over time — and predicts the
poses of the following frames from their audio. τ is Φ's largest trained observation (32 frames
for `synthtalk_tiny`). What it observes is the reference: its first τ poses (a shorter reference
is played forth and back to τ frames) and its own sound (silence when the video has none: the
reference's motion is then encoded as motion during silence).

Long audio. Φ predicts windows of L = 4 × its largest trained prediction (256 frames for
`synthtalk_tiny`, 384 for `vox`; memory: τ + L frames of audio per window, one compilation), and
every window observes the reference, so the head never drifts from the reference's motion. The
first window gives frames 0 … L−1 as a continuation of the reference's motion. A later window
starts L/2 frames before the frames it is used for: Φ's output for a frame settles once the
frame lies a few of its time constants past the observation (`residual_base="extrapolation"`
continues the observed motion only over the first frames; `observed_mean` and upstream's
decoder do not depend on the distance at all), so consecutive windows agree where they meet.
They overlap by L/8 frames, over which the later one is cross-faded in with a raised-cosine
weight. (Observing the motion already made instead — one window continuing the last — was
tried: every window's small bias in the mean pose accumulated, and a trained `synthtalk_tiny`
Φ turned the head by 28° over a minute of speech.) All poses are in crop pixels of the prepared
size inside Φ and at Θ's size outside.

Other pose sources: "reference" (the reference's own poses, played forth and back to T frames),
"still" (the key frame's pose every frame), or a `.npy` file of (N, 6) poses in the reference's
convention (rotation vector, translation in pixels of Θ's S×S crop; played forth and back or cut
to T frames). `pose_scale` s scales any of them around their mean over the T frames:
p' = mean + s·(p − mean) (0: the mean pose, still).

Driving video (`motion_from_video`): the driver is prepared like the reference; its expressions
are taken relative to its own neutral and put on the reference's identity in Ψ's space — the
driver's coefficients PCA(f_d,t − o_d), its identity offset o_d from its closed-mouth frame,
replace Ψ's prediction — and its head poses are used as they are, frame for frame.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
import types
from typing import Any, Callable

import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.geometry import rigid

POSE_SOURCES = ("learner", "reference", "still")
EXPRESSION_BLOCK = 1024  # frames of audio windows held at once for Ψ
EXPRESSION_CHUNK = 64  # frames per jitted Ψ call (one compilation)
WINDOW_FACTOR = 4  # Φ's inference window: this many times its largest trained prediction
MAX_WINDOW_BATCH = 8  # windows predicted in one call


@dataclasses.dataclass
class Motion:
  """The driving signal for Θ, one entry per output frame, at Θ's size S."""

  front: np.ndarray  # (T, 68, 3) frontal expressive landmarks
  pose: np.ndarray  # (T, 6)
  landmarks: np.ndarray  # (T, 68, 3) posed landmarks in the crop

  @property
  def num_frames(self) -> int:
    return int(len(self.pose))


def output_frames(num_samples: int, sample_rate: int, fps: int = 25) -> int:
  """The output's frame count: the audio's duration × fps, rounded (at least 1)."""
  return max(1, int(round(num_samples * fps / sample_rate)))


def pingpong(count: int, length: int) -> np.ndarray:
  """Indices 0, 1, …, count − 1, count − 2, …, 1, 0, 1, … of `length` frames: a sequence of
  `count` frames played forth and back (no frame repeated at the turns)."""
  if count < 1:
    raise ValueError("pingpong needs at least one frame")
  if count == 1:
    return np.zeros(length, np.int64)
  period = 2 * (count - 1)
  phase = np.arange(length) % period
  return np.where(phase < count, phase, period - phase).astype(np.int64)


def scale_around_mean(values: np.ndarray, scale: float) -> np.ndarray:
  """mean + scale·(values − mean), the mean over axis 0."""
  values = np.asarray(values, np.float64)
  mean = values.mean(axis=0, keepdims=True)
  return (mean + float(scale) * (values - mean)).astype(np.float32)


def cached(stage, key: tuple, build: Callable[[], Any]) -> Any:
  """`build()` once per stage of a checkpoint set and `key` (jitted predictors: one compilation
  however many videos are made with the set)."""
  cache = stage.__dict__.setdefault("_inference_cache", {})
  if key not in cache:
    cache[key] = build()
  return cache[key]


def _add_time(timings: dict | None, name: str, seconds: float) -> None:
  if timings is not None:
    timings[name] = timings.get(name, 0.0) + seconds


# --- Audio windows in bounded memory ---------------------------------------------------------------


def window_rows(audio: np.ndarray, sample_rate: int, fps: int, context: int, num_frames: int, start: int, stop: int,
                taps: int = 1, align: str = "centered") -> np.ndarray:
  """Rows [start, stop) of `frame_windows(audio, …, num_frames)` (smoothed over time with a
  `taps`-tap Hanning window when taps ≥ 3), reading only the audio they need.

  Away from the clip's ends a row depends on the chunks within `context` (plus the smoothing's
  reach) of it, so the rows are cut from a slice of the audio with that margin; rows near the
  ends, where padding and the smoothing's mirror apply, come from the whole clip.
  """
  from talkinghead_jax.audio import samples_per_frame  # noqa: PLC0415
  from talkinghead_jax.data import input_common  # noqa: PLC0415 (numpy only)

  spf = samples_per_frame(sample_rate, fps)
  num_chunks = -(-audio.size // spf)
  margin = context + (taps // 2 + 2 if taps >= 3 else 0)
  low, high = start - margin, stop + margin
  if low >= 0 and high <= min(num_frames, num_chunks):
    part = audio[low * spf:high * spf]
    frames, first = high - low, start - low
  else:
    part, frames, first = audio, num_frames, start
  if taps >= 3:
    return input_common.smoothed_windows(part, sample_rate, fps, context, frames, first, stop - start, taps, align)
  return input_common.windows_for_frames(part, sample_rate, fps, context, frames, first, first + stop - start)


def _resample(audio: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
  from talkinghead_jax.audio import resample  # noqa: PLC0415

  return np.asarray(resample(np.asarray(audio, np.float32), int(rate), int(to_rate)), np.float32)


def check_audio(audio: Any, sample_rate: Any, source: str | os.PathLike | None = None) -> np.ndarray:
  """Mono float32 audio, or a one-line InputError."""
  audio = np.asarray(audio)
  if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
    raise InputError(source, f"audio must be mono float samples, got {audio.dtype} {audio.shape}")
  if audio.size == 0:
    raise InputError(source, "the audio is empty")
  if not np.isfinite(audio).all():
    raise InputError(source, "the audio has non-finite samples")
  if int(sample_rate) != sample_rate or sample_rate <= 0:
    raise InputError(source, f"bad sample rate {sample_rate!r}")
  return audio.astype(np.float32)


# --- Ψ: expressions ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
  """The reference's identity as Ψ sees it (crop px at the prepared size)."""

  frame: int  # the closed-mouth frame
  front: np.ndarray  # (68, 3) its frontal landmarks
  reference_pca: np.ndarray  # (C,) Ψ's identity input
  offset: np.ndarray  # (68, D) the identity offset f_r − m


def identity_of(front: np.ndarray, valid: np.ndarray, pca) -> Identity:
  """The closed-mouth frame among the `valid` frames of (T, 68, 3) frontal landmarks (crop
  px at the prepared size) and Ψ's identity input and offset, as in training."""
  from talkinghead_jax.data import input_expression  # noqa: PLC0415 (numpy only)

  candidates = np.flatnonzero(valid)
  if not len(candidates):
    raise TalkingHeadError("no frame with a detected face to take the identity from")
  dims = int(pca.feature_shape_[-1])
  front = np.asarray(front, np.float32)
  _, reference_pca, offset = input_expression.expression_targets(front[candidates], pca)
  frame = int(candidates[input_expression.closed_mouth_frame(front[candidates, :, :dims])])
  return Identity(frame=frame, front=front[frame], reference_pca=np.asarray(reference_pca, np.float32),
                  offset=np.asarray(offset, np.float32))


def expression_coefficients(audio: np.ndarray, sample_rate: int, num_frames: int, identity: Identity,
                            checkpoints) -> np.ndarray:
  """Ψ's (T, C) coefficients for `num_frames` frames of the audio, block by block."""
  from talkinghead_jax.eval import stage_expression  # noqa: PLC0415

  data = checkpoints.expression.config.data
  rate, fps = int(data.sample_rate), int(data.get("fps", 25))
  context = (int(data.get("context_frames", 7)) - 1) // 2
  audio = _resample(audio, sample_rate, rate)
  predict = cached(checkpoints.expression, ("expression", EXPRESSION_CHUNK),
                   lambda: stage_expression.expression_predictor(checkpoints.expression, EXPRESSION_CHUNK))
  out = []
  for start in range(0, num_frames, EXPRESSION_BLOCK):
    stop = min(start + EXPRESSION_BLOCK, num_frames)
    windows = window_rows(audio, rate, fps, context, num_frames, start, stop)
    out.append(predict(types.SimpleNamespace(windows=windows, reference_pca=identity.reference_pca)))
  return np.concatenate(out).astype(np.float32)


def coefficients_to_front(coefficients: np.ndarray, identity: Identity, pca, expression_scale: float = 1.0
                          ) -> np.ndarray:
  """(T, C) → (T, 68, 3) frontal landmarks: s·c·U + m + o, z the identity frame's."""
  from talkinghead_jax.models.expression import expression_to_landmarks  # noqa: PLC0415

  scaled = float(expression_scale) * np.asarray(coefficients, np.float32)
  front = np.asarray(expression_to_landmarks(scaled, pca.mean_, pca.components_, identity.offset), np.float32)
  if front.shape[-1] == 2:
    z = np.broadcast_to(identity.front[:, 2:3], front.shape[:-1] + (1,))
    front = np.concatenate([front, z], axis=-1)
  return front.astype(np.float32)


# --- Φ: head motion ------------------------------------------------------------------------------


def _crop_pose(pose: np.ndarray, scale: float) -> np.ndarray:
  """Θ-size poses → the prepared crop's (translations ÷ scale); `scale` = image/crop size."""
  pose = np.array(pose, np.float32)
  pose[..., 3:] /= scale
  return pose


def _image_pose(pose: np.ndarray, scale: float) -> np.ndarray:
  pose = np.array(pose, np.float32)
  pose[..., 3:] *= scale
  return pose


def crossfade_weights(count: int) -> np.ndarray:
  """(count,) raised-cosine ramp from 0 to 1 (exclusive): the later window's weight."""
  return (0.5 - 0.5 * np.cos(np.pi * (np.arange(count) + 0.5) / count)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Window:
  """One of Φ's windows: it predicts output frames [start, start + length), of which those from
  `trusted` on are used (the first window's all; a later one's after its warm-up)."""

  start: int
  trusted: int


@dataclasses.dataclass
class HeadMotionWindows:
  """Φ over a long output in windows that all observe the reference (module docstring)."""

  observed: int  # τ
  length: int  # L, the frames each window predicts
  warm: int  # frames at the start of a later window that are not used
  overlap: int  # frames cross-faded between consecutive windows
  predictor: Callable[[np.ndarray, np.ndarray], np.ndarray]
  batch_size: int = 1

  @classmethod
  def build(cls, checkpoints, num_frames: int) -> "HeadMotionWindows":
    from talkinghead_jax.eval import stage_head_motion  # noqa: PLC0415

    phi = checkpoints.head_motion
    observed = int(phi.task.max_observed)
    length = max(1, min(WINDOW_FACTOR * int(phi.task.max_predicted), num_frames))
    warm = length // 2 if num_frames > length else 0
    overlap = max(1, length // 8)
    count = len(cls.plan(num_frames, length, warm, overlap))
    batch_size = min(MAX_WINDOW_BATCH, count)
    data = phi.config.data
    normalisation = stage_head_motion.PoseNormalisation(
        mean=np.asarray(checkpoints.pose_mean, np.float32), std=np.asarray(checkpoints.pose_std, np.float32),
        smooth_taps=int(data.get("pose_smoothing_taps", 11)), align=str(data.get("smoothing_align", "centered")))
    key = ("head_motion", observed, length, batch_size, normalisation.mean.tobytes(), normalisation.std.tobytes())
    predictor = cached(phi, key, lambda: stage_head_motion.head_motion_predictor(
        phi, observed, length, normalisation, batch_size=batch_size))
    return cls(observed=observed, length=length, warm=warm, overlap=overlap, predictor=predictor,
               batch_size=batch_size)

  @staticmethod
  def plan(num_frames: int, length: int, warm: int, overlap: int) -> list[Window]:
    """The windows of a `num_frames` output: each later one's trusted frames begin `overlap`
    frames before the last one's end; the last window ends at the output's end."""
    windows = [Window(0, 0)]
    end = length
    while end < num_frames:
      start = min(end - overlap - warm, num_frames - length)
      windows.append(Window(start, start + warm))
      end = start + length
    return windows

  def windows(self, num_frames: int) -> list[Window]:
    return self.plan(num_frames, self.length, self.warm, self.overlap)

  def run(self, observed_pose: np.ndarray, observed_audio: np.ndarray, audio_rows: Callable[[int, int], np.ndarray],
          num_frames: int) -> np.ndarray:
    """(T, 6) poses: every window observes `observed_pose` (τ, 6) with `observed_audio`
    (τ, 7, S); `audio_rows(a, b)` gives the output's audio windows of frames [a, b)."""
    windows = self.windows(num_frames)
    predictions = []
    for first in range(0, len(windows), self.batch_size):
      group = windows[first:first + self.batch_size]
      audio = np.stack([np.concatenate([observed_audio, audio_rows(w.start, w.start + self.length)]) for w in group])
      predictions.extend(self.predictor(audio, np.repeat(observed_pose[None], len(group), axis=0)))
    poses = np.zeros((num_frames, 6), np.float32)
    end = 0
    for window, predicted in zip(windows, predictions):
      shared = end - window.trusted
      offset = window.trusted - window.start
      if shared > 0:
        weight = crossfade_weights(shared)[:, None]
        later = predicted[offset:offset + shared]
        poses[window.trusted:end] = (1 - weight) * poses[window.trusted:end] + weight * later
      poses[end:window.start + self.length] = predicted[end - window.start:]
      end = window.start + self.length
    return poses


def learned_poses(audio: np.ndarray, sample_rate: int, num_frames: int, reference, checkpoints) -> np.ndarray:
  """Φ's (T, 6) poses at Θ's size for the audio, observing the reference (module docstring)."""
  from talkinghead_jax.eval import stage_head_motion  # noqa: PLC0415

  windows = HeadMotionWindows.build(checkpoints, num_frames)
  settings = stage_head_motion.AudioSettings.from_config(checkpoints.head_motion.config)
  rate, fps = settings.sample_rate, settings.fps
  context = (settings.context_frames - 1) // 2
  taps = settings.smooth_taps
  speech = _resample(audio, sample_rate, rate)
  rows = lambda a, b: window_rows(speech, rate, fps, context, num_frames, a, b, taps, settings.align)  # noqa: E731

  tau = windows.observed
  frames = pingpong(reference.num_frames, tau)
  observed_pose = _crop_pose(np.asarray(reference.pose, np.float32)[frames], checkpoints.scale)
  count = reference.num_frames
  spf = rate // fps
  if reference.audio is not None:
    own = _resample(reference.audio, reference.sample_rate, rate)
    own_rows = window_rows(own, rate, fps, context, count, 0, count, taps, settings.align)
    observed_audio = own_rows[frames]
  else:
    observed_audio = np.zeros((tau, settings.context_frames, spf), np.float32)
  poses = windows.run(observed_pose, observed_audio, rows, num_frames)
  return _image_pose(poses, checkpoints.scale)


def read_pose_file(path: str | os.PathLike) -> np.ndarray:
  """(N, 6) float32 poses from a .npy file, or a one-line InputError."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(path, "pose file not found (--pose takes learner, reference, still or a .npy file)")
  try:
    poses = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    raise InputError(path, f"not a readable .npy array ({type(error).__name__}: {error})") from error
  if poses.ndim != 2 or poses.shape[1] != 6 or len(poses) == 0 or not np.issubdtype(poses.dtype, np.number):
    raise InputError(path, f"poses must be a numeric (N, 6) array [rotation vector, translation], got "
                           f"{poses.dtype} {poses.shape}")
  if not np.isfinite(poses).all():
    raise InputError(path, "poses are not all finite")
  return poses.astype(np.float32)


def source_poses(pose: str, num_frames: int, reference, *, learner: Callable[[], np.ndarray]) -> np.ndarray:
  """(T, 6) poses at Θ's size from the pose source (module docstring)."""
  if pose == "learner":
    return learner()
  if pose == "reference":
    return np.asarray(reference.pose, np.float32)[pingpong(reference.num_frames, num_frames)]
  if pose == "still":
    return np.repeat(np.asarray(reference.pose, np.float32)[reference.key_frame][None], num_frames, axis=0)
  if pose.endswith(".npy") or os.path.sep in pose:
    poses = read_pose_file(pose)
    return poses[pingpong(len(poses), num_frames)]
  raise TalkingHeadError(f"unknown pose source {pose!r}: learner, reference, still or a .npy file of (N, 6) poses")


# --- The motion -----------------------------------------------------------------------------------


def _compose(front: np.ndarray, pose: np.ndarray) -> Motion:
  front = np.asarray(front, np.float32)
  pose = np.asarray(pose, np.float32)
  return Motion(front=front, pose=pose, landmarks=rigid.unfrontalize(front, pose).astype(np.float32))


def motion_from_audio(audio: np.ndarray, sample_rate: int, reference, checkpoints, *, pose: str = "learner",
                      pose_scale: float = 1.0, expression_scale: float = 1.0, seed: int = 0,
                      timings: dict | None = None) -> Motion:
  """Ψ's expressions and the pose source's head motion for the audio (module docstring).

  Ψ and Φ run in inference mode (no dropout, running batch statistics): the result is the same
  for every `seed`, which is accepted so that one seed can be handed to every step. Adds
  seconds to `timings["expression"]` and `timings["head_motion"]`.
  """
  del seed  # deterministic (see the docstring)
  audio = check_audio(audio, sample_rate)
  num_frames = output_frames(audio.size, int(sample_rate), checkpoints.fps)
  scale = checkpoints.scale

  start = time.perf_counter()
  identity = identity_of(np.asarray(reference.front, np.float32) / scale, reference.valid, checkpoints.pca)
  coefficients = expression_coefficients(audio, int(sample_rate), num_frames, identity, checkpoints)
  front = coefficients_to_front(coefficients, identity, checkpoints.pca, expression_scale) * scale
  _add_time(timings, "expression", time.perf_counter() - start)

  start = time.perf_counter()
  poses = source_poses(pose, num_frames, reference,
                       learner=lambda: learned_poses(audio, int(sample_rate), num_frames, reference, checkpoints))
  poses = scale_around_mean(poses, pose_scale)
  motion = _compose(front, poses)
  _add_time(timings, "head_motion", time.perf_counter() - start)
  return motion


def motion_from_video(driver_path: str | os.PathLike, reference, checkpoints, *, detector: str = "auto",
                      timings: dict | None = None) -> Motion:
  """The driver's expressions on the reference's identity and the driver's poses, one frame per
  driver frame (module docstring). Adds the driver's preparation to `timings["preprocess"]` and
  the transfer to `timings["expression"]`."""
  from talkinghead_jax.infer import reference as reference_lib  # noqa: PLC0415

  start = time.perf_counter()
  driver = reference_lib.prepare_reference(driver_path, checkpoints, detector=detector, min_frames=1)
  _add_time(timings, "preprocess", time.perf_counter() - start)

  start = time.perf_counter()
  scale = checkpoints.scale
  pca = checkpoints.pca
  dims = int(pca.feature_shape_[-1])
  identity = identity_of(np.asarray(reference.front, np.float32) / scale, reference.valid, pca)
  driver_front = np.asarray(driver.front, np.float32) / scale
  driver_identity = identity_of(driver_front, driver.valid, pca)
  # The driver's expression with its own identity removed: Ψ's training targets for its frames.
  coefficients = pca.transform(driver_front[..., :dims] - driver_identity.offset)
  front = coefficients_to_front(coefficients, identity, pca) * scale
  motion = _compose(front, driver.pose)
  _add_time(timings, "expression", time.perf_counter() - start)
  return motion


__all__ = ["Motion", "POSE_SOURCES", "motion_from_audio", "motion_from_video", "output_frames", "pingpong"]
