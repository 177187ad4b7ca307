"""Evaluating Ψ, the facial-expression learner: landmark distance against the ground truth.

Per test clip (a `data.pipelines.clip_records` dict: `audio` float32 at the run's sample rate,
`front`, `landmarks`, `pose`, `detected`, `num_frames`; the crop size comes from `frames` or
from the data set's info):

1. Inputs exactly as in training (`data.input_expression.expression_targets`): the audio's
   per-frame windows (`audio.frame_windows`, 7 chunks); the clip's reference frame r, its
   closed-mouth frame (least mouth opening); the identity offset o = f_r − m (f_r: the
   reference frame's frontal x, y; m: the landmark PCA's mean, as (68, D)); Ψ's identity input
   `reference_pca` = PCA(f_r); the training targets PCA(f_t − o).
2. Ψ predicts each frame's coefficients c_t; the identity offset is added back:
   frontal x, y = c_t·U + m + o (`models.expression.expression_to_landmarks`, paper §3.2).
3. z: the PCA covers x and y only, so z is the reference frame's frontal z (a 3-D PCA would
   give z too).
4. The frontal landmarks are un-frontalized with the clip's TRUE pose
   (`geometry.rigid.unfrontalize`) into crop pixels and compared with the clip's `landmarks`
   (x, y) by `eval.landmark_distance`, on the mouth (iBUG 48–67) and the whole face (0–67):
   the mean Euclidean 2-D distance over the points, × 256/S for an S-px crop, i.e.
   **pixels at 256 px**.

Frames scored: those with a detected face (`detected`), except the reference frame itself.
Aggregates are frame-weighted means over all scored frames of all clips.

Rows of the report, all through steps 2–4 with the same offset, z and pose:
  model            Ψ's prediction;
  pca_truth        the true coefficients PCA(f_t − o): what a perfect Ψ would score (the
                   floor set by the 20 components and the reference z);
  mean_expression  the training set's mean target coefficients, every frame;
  closed_mouth     the identity's reference (closed-mouth) frontal landmarks f_r, every frame.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from talkinghead_jax.errors import InputError
from talkinghead_jax.eval import baselines, trained_stage
from talkinghead_jax.geometry import rigid

REFERENCE_SIZE = 256  # LMD is in pixels of a 256 px crop
METHODS = ("model", "pca_truth", "mean_expression", "closed_mouth")
POINT_SETS = ("mouth", "face")


@dataclasses.dataclass(frozen=True)
class ExpressionInputs:
  """One clip's model inputs and what evaluation needs to turn outputs into landmarks."""

  clip_id: str
  windows: np.ndarray  # (T, 7, S) float32 audio windows
  reference_index: int  # the closed-mouth frame
  reference_front: np.ndarray  # (68, 3) its frontal landmarks
  reference_pca: np.ndarray  # (C,) PCA of its frontal x, y: Ψ's identity input
  offset: np.ndarray  # (68, D) the identity offset
  targets: np.ndarray  # (T, C) the training targets PCA(f_t − offset)
  pose: np.ndarray  # (T, 6) the true pose
  landmarks: np.ndarray  # (T, 68, 3) ground truth, crop px
  scored: np.ndarray  # (T,) bool: frames that count
  crop_size: int


def _pca_dims(pca) -> int:
  shape = tuple(pca.feature_shape_ or ())
  if shape not in ((68, 2), (68, 3)):
    raise ValueError(f"the landmark PCA must be of (68, 2) or (68, 3) points, got feature shape {shape}")
  return shape[-1]


def coefficients_to_landmarks(coefficients: np.ndarray, offset: np.ndarray, reference_front: np.ndarray,
                              pose: np.ndarray, pca) -> np.ndarray:
  """(T, C) coefficients → (T, 68, 3) landmarks in crop px, seen at `pose` (T, 6).

  Adds the identity `offset` back, takes z from `reference_front` when the PCA is 2-D, and
  un-frontalizes with the given pose.
  """
  from talkinghead_jax.models.expression import expression_to_landmarks  # noqa: PLC0415

  front = np.asarray(expression_to_landmarks(np.asarray(coefficients, np.float32), pca.mean_, pca.components_,
                                             np.asarray(offset, np.float32)))
  if _pca_dims(pca) == 2:
    z = np.broadcast_to(np.asarray(reference_front, np.float32)[:, 2:3], front.shape[:-1] + (1,))
    front = np.concatenate([front, z], axis=-1)
  return rigid.unfrontalize(front.astype(np.float32), np.asarray(pose, np.float32))


def _require(clip: Mapping[str, Any], *names: str) -> None:
  missing = [name for name in names if name not in clip]
  if missing:
    raise InputError(str(clip.get("clip_id", "<clip>")), f"clip record lacks {', '.join(missing)}")


RECORD_KEYS = ("clip_id", "front", "landmarks", "pose", "detected", "num_frames")  # what Ψ's evaluation reads


def crop_size(clip: Mapping[str, Any], default: int | None = None) -> int:
  """The side of the clip's square crop in pixels: from its frames, else `default`."""
  if "frames" in clip:
    return int(np.shape(clip["frames"])[1])
  if default is None:
    raise InputError(trained_stage.clip_name(clip), "clip record has no frames to take the crop size from")
  return int(default)


def _detected(clip: Mapping[str, Any], frames: int) -> np.ndarray:
  return np.asarray(clip["detected"], bool)[:frames] if "detected" in clip else np.ones(frames, bool)


def expression_inputs(clip: Mapping[str, Any], pca, *, sample_rate: int, fps: int = 25, context_frames: int = 7,
                      size: int | None = None) -> ExpressionInputs:
  """A clip record → `ExpressionInputs` (module docstring, step 1); `size` is the crop size
  when the record has no frames."""
  from talkinghead_jax.audio.windows import frame_windows  # noqa: PLC0415
  from talkinghead_jax.data import input_expression  # noqa: PLC0415

  _require(clip, "audio", "front", "landmarks", "pose")
  clip_id = trained_stage.clip_name(clip)
  frames = trained_stage.num_frames(clip, clip["front"])
  front = np.asarray(clip["front"], np.float32)[:frames]
  windows = frame_windows(np.asarray(clip["audio"], np.float32), sample_rate, fps,
                          context=(context_frames - 1) // 2, num_frames=frames)
  targets, reference_pca, offset = input_expression.expression_targets(front, pca)
  reference = input_expression.closed_mouth_frame(front[..., :_pca_dims(pca)])
  scored = _detected(clip, frames).copy()
  scored[reference] = False
  return ExpressionInputs(
      clip_id=clip_id, windows=windows, reference_index=reference, reference_front=front[reference],
      reference_pca=np.asarray(reference_pca, np.float32), offset=np.asarray(offset, np.float32),
      targets=np.asarray(targets, np.float32), pose=np.asarray(clip["pose"], np.float32)[:frames],
      landmarks=np.asarray(clip["landmarks"], np.float32)[:frames], scored=scored, crop_size=crop_size(clip, size))


def mean_expression_coefficients(clips: Iterable[Mapping[str, Any]], pca) -> np.ndarray:
  """(C,) the mean training target over every detected frame of `clips` (the training set)."""
  from talkinghead_jax.data import input_expression  # noqa: PLC0415

  total, count = None, 0
  for clip in clips:
    _require(clip, "front")
    front = np.asarray(clip["front"], np.float32)[:trained_stage.num_frames(clip, clip["front"])]
    targets, _, _ = input_expression.expression_targets(front, pca)
    detected = _detected(clip, len(front))
    part = np.asarray(targets, np.float64)[detected].sum(axis=0)
    total = part if total is None else total + part
    count += int(detected.sum())
  if not count:
    raise InputError(None, "no frames to average the mean expression over (empty training split?)")
  return (total / count).astype(np.float32)


def _padded_lmd(pred: np.ndarray, gt: np.ndarray, size: int, points: str) -> np.ndarray:
  """`landmark_distance` padded to a power of two of frames, so clips of many lengths compile
  it only a few times."""
  from talkinghead_jax.eval.landmark_distance import landmark_distance  # noqa: PLC0415

  frames = len(pred)
  bucket = 1 << max(frames - 1, 0).bit_length()
  pad = [(0, bucket - frames), (0, 0), (0, 0)]
  distances = landmark_distance(np.pad(pred, pad), np.pad(gt, pad), (size, size), points)
  return distances[:frames]


def expression_predictor(stage, chunk_frames: int = 64) -> Callable[[ExpressionInputs], np.ndarray]:
  """Ψ of a `TrainedStage` as `inputs → (T, C)` coefficients, run on chunks of frames.

  Ψ sees each frame on its own (per-frame audio convs, running batch-norm statistics), so
  cutting a clip into fixed-size chunks (the last one zero-padded) changes nothing and
  compiles once.
  """
  import jax  # noqa: PLC0415

  model = stage.task.model
  variables = jax.device_put(stage.variables)

  @jax.jit
  def apply(windows, reference):
    return model.apply(variables, windows[None], reference[None], train=False)[0]

  def predict(inputs: ExpressionInputs) -> np.ndarray:
    frames = len(inputs.windows)
    padded = np.zeros((math.ceil(frames / chunk_frames) * chunk_frames,) + inputs.windows.shape[1:], np.float32)
    padded[:frames] = inputs.windows
    outputs = [np.asarray(apply(padded[i:i + chunk_frames], inputs.reference_pca))
               for i in range(0, len(padded), chunk_frames)]
    return np.concatenate(outputs)[:frames]

  return predict


def evaluate_expression(clips: Iterable[Mapping[str, Any]], predict: Callable[[ExpressionInputs], np.ndarray],
                        pca, *, mean_coefficients: np.ndarray, sample_rate: int, fps: int = 25,
                        context_frames: int = 7, size: int | None = None) -> dict[str, Any]:
  """Scores Ψ (`predict`) and the baselines on `clips` (module docstring). Returns the report:
  `methods` {row: {lmd_mouth, lmd_face}}, `clips` (per clip), `frames`, `skipped`, `settings`."""
  mean_coefficients = np.asarray(mean_coefficients, np.float32)
  sums = {method: {points: 0.0 for points in POINT_SETS} for method in METHODS}
  per_clip, skipped, total_frames = [], [], 0
  for clip in clips:
    inputs = expression_inputs(clip, pca, sample_rate=sample_rate, fps=fps, context_frames=context_frames, size=size)
    if not inputs.scored.any():
      skipped.append({"clip_id": inputs.clip_id, "reason": "no scored frame"})
      continue
    predicted = np.asarray(predict(inputs), np.float32)
    if predicted.shape != inputs.targets.shape:
      raise ValueError(f"{inputs.clip_id}: the predictor gave {predicted.shape}, expected {inputs.targets.shape}")
    frames = len(inputs.targets)
    coefficients = {"model": predicted, "pca_truth": inputs.targets,
                    "mean_expression": baselines.mean_expression(mean_coefficients, frames)}
    landmarks = {method: coefficients_to_landmarks(value, inputs.offset, inputs.reference_front, inputs.pose, pca)
                 for method, value in coefficients.items()}
    landmarks["closed_mouth"] = rigid.unfrontalize(baselines.closed_mouth(inputs.reference_front, frames),
                                                   inputs.pose)
    row = {"clip_id": inputs.clip_id, "frames": int(inputs.scored.sum()), "crop_size": inputs.crop_size}
    for method in METHODS:
      row[method] = {}
      for points in POINT_SETS:
        distances = _padded_lmd(landmarks[method], inputs.landmarks, inputs.crop_size, points)[inputs.scored]
        row[method][f"lmd_{points}"] = float(distances.mean())
        sums[method][points] += float(distances.sum())
    total_frames += row["frames"]
    per_clip.append(row)
  if not per_clip:
    raise InputError(None, "no test clip could be scored")
  methods = {method: {f"lmd_{points}": sums[method][points] / total_frames for points in POINT_SETS}
             for method in METHODS}
  return {
      "stage": "expression",
      "methods": methods,
      "frames": total_frames,
      "clips": per_clip,
      "skipped": skipped,
      "settings": {
          "units": f"pixels at {REFERENCE_SIZE} px (distances x {REFERENCE_SIZE}/crop size)",
          "points": {"mouth": "iBUG 48-67", "face": "iBUG 0-67"},
          "reference_frame": "closed-mouth frame, as in training (excluded from scoring)",
          "identity_offset": "reference frontal x, y minus the landmark PCA's mean",
          "z": "reference frame's z" if _pca_dims(pca) == 2 else "from the 3-D PCA",
          "pose": "true pose (un-frontalize)",
          "ground_truth": "clip landmarks (x, y)",
          "aggregate": "frame-weighted mean over detected frames",
          "sample_rate": int(sample_rate), "fps": int(fps), "context_frames": int(context_frames),
          "pca_components": int(len(pca.components_)),
      },
  }


def format_table(report: Mapping[str, Any]) -> str:
  """The report's rows as a text table (LMD in px at 256)."""
  lines = [f"Ψ expression: {len(report['clips'])} clips, {report['frames']} frames "
           f"(LMD, pixels at {REFERENCE_SIZE} px)",
           f"{'method':<18}{'lmd_mouth':>11}{'lmd_face':>11}"]
  for method, values in report["methods"].items():
    lines.append(f"{method:<18}{values['lmd_mouth']:>11.3f}{values['lmd_face']:>11.3f}")
  return "\n".join(lines)


def evaluate_checkpoint(checkpoint, *, data_dir: str | None, split: str = "test", max_clips: int | None = None,
                        mean_clips: int | None = 500, overrides: Sequence[str] = ()) -> dict[str, Any]:
  """`talkinghead evaluate --stage expression`: Ψ of a run's checkpoint on the prepared `split`,
  the mean expression taken over the first `mean_clips` training clips. `overrides` change the
  run's data settings (`data.builder_config=…`)."""
  stage = trained_stage.load_trained_stage(checkpoint, "expression")
  config = trained_stage.evaluation_config(stage.config, data_dir, overrides)
  prepared = trained_stage.dataset_artifacts(config)
  pca = prepared.pca
  size = int(prepared.info["size"])
  if len(pca.components_) != int(config.model.num_coeffs):
    raise InputError(None, f"the data set's PCA has {len(pca.components_)} components, the run's Ψ predicts "
                           f"{config.model.num_coeffs}")
  train = trained_stage.clip_source(config, "train", mean_clips, ("front", "detected", "num_frames"))
  mean = mean_expression_coefficients(train, pca)
  report = evaluate_expression(
      trained_stage.clip_source(config, split, max_clips, RECORD_KEYS), expression_predictor(stage), pca,
      mean_coefficients=mean, sample_rate=int(config.data.sample_rate), fps=int(config.data.get("fps", 25)),
      context_frames=int(config.data.get("context_frames", 7)), size=size)
  report["checkpoint"] = {"workdir": str(stage.workdir), "step": stage.step}
  report["split"] = split
  report["settings"]["mean_expression_clips"] = mean_clips
  return report
