"""`generate`: a reference video and a speech file → a talking-head video, end to end.

The chain (docs/generate.md): read the speech; prepare the reference (decode, landmarks, crop,
pose, key frame: `infer.reference`); the motion — Ψ's expressions and Φ's head poses from the
audio, or another video's landmarks with `driving_video` (`infer.motion`); Θ frame by frame
(`infer.frames`); optionally each frame resized (`size`) or pasted back into the reference's
full frames (`paste_back`); H.264 + the input audio at 25 fps, written batch by batch
(`media.VideoWriter`), so memory stays bounded however long the speech.

The output has one frame per 1/25 s of the speech (the motion's length: audio duration × 25,
±1) and carries the speech itself as its sound track.

Paste-back undoes the crop (`data.crop`): crop pixel j's centre sits at frame x = x0 + (j + ½)·
side/S, so each frame pixel samples the generated crop bilinearly at that inverse position. The
crop is blended in with a feathered edge (its weight ramps linearly from 0 at the crop's border
to 1 at `FEATHER` of its side inside), over the reference's own frames played forwards and
backwards (ping-pong) to the output's length. Frame sides are trimmed to even numbers (H.264
yuv420p).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sys
import time
from typing import Any

import cv2
import numpy as np

from talkinghead_jax.errors import ConfigError, InputError

STAGES = ("preprocess", "expression", "head_motion", "render", "generator", "encode")
FEATHER = 0.08  # the paste-back's soft edge, a fraction of the crop side
MIN_SIZE = 16


@dataclasses.dataclass
class GenerateOptions:
  """The choices of `talkinghead generate` (docs/generate.md describes each)."""

  pose: str = "learner"  # learner | reference | still | a .npy file of (T, 6) poses
  pose_scale: float = 1.0
  expression_scale: float = 1.0
  driving_video: str | None = None
  size: int | None = None  # output side in px; None = Θ's size
  paste_back: bool = False
  batch_size: int = 8
  seed: int = 0
  detector: str = "auto"
  k: int | None = None  # None = Θ's K
  progress: bool = True


@dataclasses.dataclass
class GenerateReport:
  """What `generate` did: the file, its frame count, the wall time and the seconds per stage."""

  output: pathlib.Path
  frames: int
  wall_seconds: float
  stage_seconds: dict[str, float]

  @property
  def frames_per_second(self) -> float:
    return self.frames / self.wall_seconds if self.wall_seconds > 0 else float("inf")

  def summary(self) -> str:
    """The one line `talkinghead generate` prints at the end."""
    stages = ", ".join(f"{name} {self.stage_seconds.get(name, 0.0):.2f}" for name in STAGES)
    return (f"{self.output}: {self.frames} frames in {self.wall_seconds:.1f} s ({self.frames_per_second:.2f} "
            f"frames/s); seconds per stage: {stages}")


def check_options(options: GenerateOptions) -> None:
  """ConfigError / InputError (one line, named after the command-line flag or the file) for an
  impossible choice, before anything is loaded."""
  from talkinghead_jax.infer import motion  # noqa: PLC0415

  if options.pose not in motion.POSE_SOURCES:
    if not str(options.pose).endswith(".npy"):
      raise ConfigError(f"--pose must be one of {', '.join(motion.POSE_SOURCES)} or a .npy file of (N, 6) poses, "
                        f"got {options.pose!r}")
    motion.read_pose_file(options.pose)
  for flag, value in (("--pose-scale", options.pose_scale), ("--expression-scale", options.expression_scale)):
    if not (math.isfinite(value) and value >= 0):
      raise ConfigError(f"{flag} must be a finite number >= 0, got {value}")
  if options.size is not None and (int(options.size) < MIN_SIZE or int(options.size) % 2):
    raise ConfigError(f"--size must be an even number of pixels >= {MIN_SIZE} (H.264), got {options.size}")
  if options.size is not None and options.paste_back:
    raise ConfigError("--size and --paste-back exclude each other: a pasted-back video has the reference's frame size")
  if int(options.batch_size) < 1:
    raise ConfigError(f"--batch-size must be >= 1, got {options.batch_size}")
  if options.k is not None and int(options.k) < 1:
    raise ConfigError(f"--k must be >= 1, got {options.k}")
  if options.driving_video is not None:
    fixed = [flag for flag, value, default in (("--pose", options.pose, "learner"),
                                                ("--pose-scale", options.pose_scale, 1.0),
                                                ("--expression-scale", options.expression_scale, 1.0))
             if value != default]
    if fixed:
      raise ConfigError(f"{', '.join(fixed)}: not with --driving-video (its landmarks give the expressions and poses)")


# --- Paste-back ------------------------------------------------------------------------------------


def feather_mask(size: int, feather: float = FEATHER) -> np.ndarray:
  """(size, size) float32: 0 at the square's border, rising linearly to 1 at `feather`·size inside."""
  width = max(1.0, feather * size)
  centres = np.arange(size) + 0.5
  ramp = np.clip(np.minimum(centres, size - centres) / width, 0.0, 1.0)
  return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def crop_to_frame_matrix(box, size: int) -> np.ndarray:
  """2×3 affine map from frame pixel indices to crop pixel indices (OpenCV's convention, pixel
  centres at integers): the inverse of `data.crop.crop_frames`' sampling."""
  scale = size / box.side
  return np.array([[scale, 0.0, (0.5 - box.x0) * scale - 0.5],
                   [0.0, scale, (0.5 - box.y0) * scale - 0.5]])


class PasteBack:
  """Composites generated crops into the reference's full frames (module docstring)."""

  def __init__(self, full_frames: np.ndarray, box, crop_size: int, feather: float = FEATHER):
    height, width = full_frames.shape[1:3]
    self.height, self.width = height - height % 2, width - width % 2
    if self.height < 2 or self.width < 2:
      raise ConfigError(f"--paste-back: the reference's frames ({width}x{height}) are too small")
    self.frames = full_frames
    self.matrix = crop_to_frame_matrix(box, crop_size)
    self.alpha = self._to_frame(feather_mask(crop_size, feather))[..., None]

  def _to_frame(self, crop: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(crop, self.matrix, (self.width, self.height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

  def __call__(self, crops: np.ndarray, first: int) -> np.ndarray:
    """uint8 crops (b, S, S, 3) of output frames first … first + b − 1 → uint8 (b, H, W, 3)."""
    from talkinghead_jax.infer import motion  # noqa: PLC0415

    sources = motion.pingpong(len(self.frames), first + len(crops))[first:]
    out = np.empty((len(crops), self.height, self.width, 3), np.uint8)
    for row, (crop, source) in enumerate(zip(crops, sources)):
      background = self.frames[source, :self.height, :self.width].astype(np.float32)
      face = self._to_frame(crop.astype(np.float32))
      blended = self.alpha * face + (1.0 - self.alpha) * background
      out[row] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
  """uint8 (b, S, S, 3) → (b, size, size, 3): area averaging down, bicubic up."""
  if frames.shape[1] == size:
    return frames
  interpolation = cv2.INTER_AREA if size < frames.shape[1] else cv2.INTER_CUBIC
  return np.stack([cv2.resize(frame, (size, size), interpolation=interpolation) for frame in frames])


# --- Progress --------------------------------------------------------------------------------------


class _Progress:
  """A tqdm bar on stderr when tqdm is installed, else a line at the start and one at the end."""

  def __init__(self, total: int, enabled: bool):
    self.total, self.done, self.bar = total, 0, None
    if not enabled:
      self.enabled = False
      return
    self.enabled = True
    try:
      import tqdm  # noqa: PLC0415

      self.bar = tqdm.tqdm(total=total, unit="frame", desc="generate", file=sys.stderr, leave=False)
    except ImportError:
      print(f"generate: {total} frames …", file=sys.stderr, flush=True)

  def update(self, count: int) -> None:
    self.done += count
    if self.bar is not None:
      self.bar.update(count)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
    elif self.enabled:
      print(f"generate: {self.done}/{self.total} frames done", file=sys.stderr, flush=True)


# --- The chain -------------------------------------------------------------------------------------


def _read_speech(path) -> tuple[np.ndarray, int]:
  from talkinghead_jax import audio as audio_lib  # noqa: PLC0415

  decoded = audio_lib.decode_audio(path)
  if decoded.samples.size < decoded.sample_rate / 25:
    raise InputError(path, f"the audio lasts {decoded.samples.size / decoded.sample_rate:.3f} s, less than one video "
                           "frame (0.04 s)")
  return decoded.samples, int(decoded.sample_rate)


def _driver_audio(path) -> tuple[np.ndarray | None, int | None]:
  """The driving video's own sound track, or (None, None) when it has none."""
  from talkinghead_jax import audio as audio_lib  # noqa: PLC0415

  try:
    decoded = audio_lib.decode_audio(path)
  except InputError:
    return None, None
  return decoded.samples, int(decoded.sample_rate)


def generate(reference_path: str | os.PathLike, audio_path: str | os.PathLike | None, out_path: str | os.PathLike,
             checkpoints: Any = None, options: GenerateOptions | None = None) -> GenerateReport:
  """Writes the talking-head video of `reference_path` speaking `audio_path` to `out_path`.

  `checkpoints`: a `CheckpointSet`, a set directory, or None for the bundled set. With
  `options.driving_video`, `audio_path` may be None (the driver's own sound track is used).
  Returns the `GenerateReport`; errors are one-line `TalkingHeadError`s naming the file.
  """
  from talkinghead_jax import media  # noqa: PLC0415
  from talkinghead_jax.infer import checkpoint_set, frames  # noqa: PLC0415
  from talkinghead_jax.infer import motion as motion_lib  # noqa: PLC0415
  from talkinghead_jax.infer import reference as reference_lib  # noqa: PLC0415

  options = options or GenerateOptions()
  check_options(options)
  wall = time.perf_counter()
  timings = {name: 0.0 for name in STAGES}
  out_path = pathlib.Path(out_path)
  if audio_path is None and options.driving_video is None:
    raise ConfigError("--audio is needed (only --driving-video can do without it)")
  for given in (reference_path, audio_path, options.driving_video):
    if given is not None and pathlib.Path(given).resolve() == out_path.resolve():
      raise InputError(out_path, "is one of the inputs; choose another --out")

  # The cheap checks first: the speech, then the weights, then the reference's landmarks.
  start = time.perf_counter()
  if audio_path is not None:
    speech, rate = _read_speech(audio_path)
  else:
    speech, rate = _driver_audio(options.driving_video)
  if not isinstance(checkpoints, checkpoint_set.CheckpointSet):
    checkpoints = checkpoint_set.load_checkpoint_set(checkpoints)
  synthesizer = frames.FrameSynthesizer(checkpoints, k=options.k, batch_size=options.batch_size)
  reference = reference_lib.prepare_reference(reference_path, checkpoints, detector=options.detector,
                                              min_frames=synthesizer.k)
  timings["preprocess"] += time.perf_counter() - start

  if options.driving_video is not None:
    motion = motion_lib.motion_from_video(options.driving_video, reference, checkpoints, detector=options.detector,
                                          timings=timings)
  else:
    motion = motion_lib.motion_from_audio(speech, rate, reference, checkpoints, pose=options.pose,
                                          pose_scale=options.pose_scale, expression_scale=options.expression_scale,
                                          seed=options.seed, timings=timings)
  total = int(motion.pose.shape[0])
  if speech is not None and options.driving_video is not None:
    speech = speech[:int(round(total * rate / checkpoints.fps))]  # the driver sets the length

  paste = PasteBack(reference.full_frames, reference.box, synthesizer.size) if options.paste_back else None
  if paste is not None:
    width, height = paste.width, paste.height
  else:
    width = height = int(options.size or synthesizer.size)
  progress = _Progress(total, options.progress)
  written = 0
  try:
    with media.VideoWriter(out_path, width=width, height=height, fps=checkpoints.fps, audio=speech,
                           sample_rate=rate) as writer:
      for batch in synthesizer.synthesize(reference, motion, timings=timings, progress=progress.update):
        start = time.perf_counter()
        if paste is not None:
          batch = paste(batch, written)
        elif options.size:
          batch = resize_frames(batch, int(options.size))
        writer.write(batch)
        written += len(batch)
        timings["encode"] += time.perf_counter() - start
      start = time.perf_counter()
    timings["encode"] += time.perf_counter() - start  # the encoder's flush and the file's rename
  finally:
    progress.close()
  return GenerateReport(output=out_path, frames=written, wall_seconds=time.perf_counter() - wall,
                        stage_seconds=timings)
