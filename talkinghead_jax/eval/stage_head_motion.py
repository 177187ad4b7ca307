"""Evaluating Φ, the head-motion learner: pose error and motion statistics of predicted frames.

Windows. As upstream's test (UPSTREAM_NOTES §2.2), each test clip gives a window of τ observed
frames followed by P predicted frames from its start (default τ = P = 64, capped at the run's
largest training lengths, so τ = 20, P = 12 for `synthtalk_tiny`); `windows_per_clip` > 1 takes
further non-overlapping windows. Clips shorter than τ + P are skipped (listed in the report).

Inputs as in training (`data.input_head_motion`): the audio windows of the whole clip
(`audio.frame_windows`, 7 chunks, each (slot, sample) series smoothed over time with a
`data.audio_smoothing_taps`-tap Hanning window, 21 as upstream), cut to the window; the
observed poses (feature `data.pose_feature`, default `pose`) normalised with the run's
statistics, (pose − `data.pose_mean`) / `data.pose_std` (where the config leaves them empty:
the mean and std of the train split's first `data.pose_stats_clips` clips, as the training
pipeline computes them), then smoothed with a
`data.pose_smoothing_taps`-tap Hanning window (11) — over the observed frames only, so no
future pose leaks into the input. The model's output is un-normalised (× std + mean); the
ground truth is the clip's pose as prepared (not smoothed).

Metrics, per degree of freedom (rx, ry, rz: rotation-vector components in degrees, as
`eval.pose`; tx, ty, tz: translation in pixels at 256 px, i.e. × 256 / crop size), over the P
predicted frames of each window, then averaged over windows:
  l1                   mean |pred − gt|
  mean_diff            |mean(pred) − mean(gt)|            (means over the P frames)
  std_diff             |std(pred) − std(gt)|               (population std, ddof 0)
  velocity_l1          mean |Δpred − Δgt|                  (Δ: frame-to-frame differences)
  velocity_mean_diff   |mean(Δpred) − mean(Δgt)|, |std(Δpred) − std(Δgt)| (P − 1 per window)
  velocity_std_diff
(l1, std_diff, velocity_l1 by `eval.pose.pose_metrics`; the four mean/std terms are the
statistics the paper's discriminator compares.)
plus `l1_rotation_deg` and `l1_translation_px`, the mean l1 of the three dofs of each kind.

Rows: `model` (Φ), `last_pose` (the last observed pose repeated), `mean_pose` (the mean
observed pose repeated), and `static` when a not-few-shot checkpoint is given
(`model.few_shot=False`, configs/head_motion.py:synthtalk_tiny_static).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from talkinghead_jax.errors import ConfigError, InputError, TalkingHeadError
from talkinghead_jax.eval import baselines, trained_stage

REFERENCE_SIZE = 256  # translations are reported in pixels of a 256 px crop
DOF_NAMES = ("rx", "ry", "rz", "tx", "ty", "tz")
METRIC_NAMES = ("l1", "mean_diff", "std_diff", "velocity_l1", "velocity_mean_diff", "velocity_std_diff")
UPSTREAM_TEST_FRAMES = 64  # upstream's test: 64 observed, 64 predicted


@dataclasses.dataclass(frozen=True)
class PoseNormalisation:
  """The map between poses and Φ's inputs/outputs: (pose − mean) / std, then smoothing."""

  mean: np.ndarray  # (6,)
  std: np.ndarray  # (6,)
  smooth_taps: int = 11
  align: str = "centered"  # `audio.smooth_windows`' alignment

  def normalise(self, pose: np.ndarray) -> np.ndarray:
    """(T, 6) poses → normalised and smoothed over time (axis 0)."""
    from talkinghead_jax.audio.windows import smooth_windows  # noqa: PLC0415

    normalised = (np.asarray(pose, np.float32) - self.mean) / self.std
    return smooth_windows(normalised, taps=self.smooth_taps, align=self.align).astype(np.float32)

  def denormalise(self, values: np.ndarray) -> np.ndarray:
    return (np.asarray(values, np.float32) * self.std + self.mean).astype(np.float32)


def pose_normalisation(config, statistics: tuple[np.ndarray, np.ndarray] | None = None) -> PoseNormalisation:
  """The run's pose normalisation: `data.pose_mean`/`data.pose_std`, or where the config leaves
  them empty the (mean, std) `statistics` of its training split (`training_pose_statistics`)."""
  data = config.data
  mean, std = tuple(data.get("pose_mean", None) or ()), tuple(data.get("pose_std", None) or ())
  if not (mean and std):
    if statistics is None:
      raise ConfigError("data.pose_mean/pose_std are empty and no training statistics were given")
    mean, std = statistics
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  if mean.shape != (6,) or std.shape != (6,) or np.any(std <= 0):
    raise ConfigError(f"data.pose_mean / data.pose_std must be 6 numbers (std > 0), got {mean} and {std}")
  return PoseNormalisation(mean=mean, std=std, smooth_taps=int(data.get("pose_smoothing_taps", 11)),
                           align=str(data.get("smoothing_align", "centered")))


def training_pose_statistics(config) -> tuple[np.ndarray, np.ndarray] | None:
  """The (mean, std) the training pipeline normalised poses with when the config has none: those
  of the train split's first `data.pose_stats_clips` (256) clips. None when the config has them."""
  from talkinghead_jax.data.input_head_motion import pose_statistics  # noqa: PLC0415

  data = config.data
  if data.get("pose_mean", None) and data.get("pose_std", None):
    return None
  feature = str(data.get("pose_feature", "pose"))
  clips = trained_stage.clip_source(config, "train", int(data.get("pose_stats_clips", 256)), (feature, "num_frames"))
  return pose_statistics([np.asarray(clip[feature])[:trained_stage.num_frames(clip, clip[feature])] for clip in clips])


@dataclasses.dataclass(frozen=True)
class MotionWindow:
  """One evaluation window: what a predictor may see, and the truth it is scored against."""

  clip_id: str
  audio: np.ndarray  # (τ + P, 7, S) audio windows of the observed and predicted frames
  observed_pose: np.ndarray  # (τ, 6) as prepared
  future_pose: np.ndarray  # (P, 6) the truth
  crop_size: int


@dataclasses.dataclass(frozen=True)
class AudioSettings:
  sample_rate: int
  fps: int = 25
  context_frames: int = 7
  smooth_taps: int = 21  # 1: no smoothing
  align: str = "centered"

  @classmethod
  def from_config(cls, config) -> "AudioSettings":
    data = config.data
    return cls(sample_rate=int(data.sample_rate), fps=int(data.get("fps", 25)),
               context_frames=int(data.get("context_frames", 7)),
               smooth_taps=int(data.get("audio_smoothing_taps", 21)),
               align=str(data.get("smoothing_align", "centered")))


def motion_windows(clip: Mapping[str, Any], *, observed: int, predicted: int, audio: AudioSettings,
                   windows_per_clip: int = 1, pose_feature: str = "pose", size: int | None = None
                   ) -> list[MotionWindow]:
  """The clip's evaluation windows (none if it is shorter than τ + P); `size`: the crop size
  when the record has no frames."""
  from talkinghead_jax.audio.windows import frame_windows, smooth_windows  # noqa: PLC0415

  clip_id = trained_stage.clip_name(clip)
  missing = [name for name in ("audio", pose_feature) if name not in clip]
  if missing:
    raise InputError(clip_id, f"clip record lacks {', '.join(missing)}")
  if "frames" not in clip and size is None:
    raise InputError(clip_id, "clip record has no frames to take the crop size from")
  pose = np.asarray(clip[pose_feature], np.float32)[:trained_stage.num_frames(clip, clip[pose_feature])]
  length = observed + predicted
  count = min(windows_per_clip, len(pose) // length)
  if count == 0:
    return []
  windows = frame_windows(np.asarray(clip["audio"], np.float32), audio.sample_rate, audio.fps,
                          context=(audio.context_frames - 1) // 2, num_frames=len(pose))
  if audio.smooth_taps > 1:
    windows = smooth_windows(windows, taps=audio.smooth_taps, align=audio.align)
  size = int(np.shape(clip["frames"])[1]) if "frames" in clip else int(size)
  return [MotionWindow(clip_id=clip_id, audio=windows[k * length:(k + 1) * length],
                       observed_pose=pose[k * length:k * length + observed],
                       future_pose=pose[k * length + observed:(k + 1) * length], crop_size=size)
          for k in range(count)]


def check_observed(model, observed: int) -> None:
  """A few-shot Φ's encoder needs `model.min_observed()` frames (13 with kernel 5, stride 2)."""
  if model.few_shot and observed < model.min_observed():
    raise TalkingHeadError(f"{observed} observed frames are too few: Φ's encoder needs {model.min_observed()}")


# A predictor: audio (B, τ + P, 7, S) and observed poses (B, τ, 6) as prepared → (B, P, 6) poses.
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def head_motion_predictor(stage, observed: int, predicted: int, normalisation: PoseNormalisation,
                          batch_size: int = 8) -> Predictor:
  """Φ of a `TrainedStage` as a `Predictor`: normalises the observed poses with the run's
  `normalisation`, predicts, un-normalises. Batches are padded to `batch_size` (one
  compilation; batch norm uses running statistics, so examples do not interact)."""
  import jax  # noqa: PLC0415

  model = stage.task.model
  check_observed(model, observed)
  variables = jax.device_put(stage.variables)
  lengths = np.full((batch_size,), observed, np.int32), np.full((batch_size,), predicted, np.int32)

  @jax.jit
  def apply(audio, pose):
    poses, _ = model.apply(variables, audio, pose, *lengths, max_observed=observed, train=False)
    return poses

  def predict(audio: np.ndarray, observed_pose: np.ndarray) -> np.ndarray:
    count = len(audio)
    outputs = []
    for start in range(0, count, batch_size):
      part = slice(start, min(start + batch_size, count))
      audio_batch = np.zeros((batch_size,) + audio.shape[1:], np.float32)
      audio_batch[:part.stop - part.start] = audio[part]
      # Future poses stay zero: Φ reads only the observed ones.
      pose_batch = np.zeros((batch_size, observed + predicted, 6), np.float32)
      pose_batch[:part.stop - part.start, :observed] = [normalisation.normalise(p) for p in observed_pose[part]]
      outputs.append(np.asarray(apply(audio_batch, pose_batch))[:part.stop - part.start])
    return normalisation.denormalise(np.concatenate(outputs))

  return predict


def translations_at_256(pose: np.ndarray, crop_size: int | np.ndarray) -> np.ndarray:
  """(..., 6) poses with translations × 256 / crop size (rotations untouched); `crop_size`
  broadcasts against the leading axes (one per window)."""
  pose = np.asarray(pose, np.float32)
  scale = REFERENCE_SIZE / np.asarray(crop_size, np.float32)
  scale = scale.reshape(scale.shape + (1,) * (pose.ndim - scale.ndim))
  return np.concatenate([pose[..., :3], pose[..., 3:] * scale], axis=-1)


def motion_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
  """Per-window metrics of (B, P, 6) pose sequences (rotation vectors in radians, translations
  in px at 256) → {metric: (B, 6)} in report units (degrees, px).

  l1, std_diff (population std) and velocity_l1 are `eval.pose.pose_metrics`'; the mean and the
  velocity's mean and std complete the discriminator's statistics (models/head_motion.py).
  """
  from talkinghead_jax.eval import pose as pose_lib  # noqa: PLC0415

  pred, gt = np.asarray(pred, np.float32), np.asarray(gt, np.float32)
  if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 6 or pred.shape[1] < 3:
    raise ValueError(f"need (B, P >= 3, 6) sequences of equal shape, got {pred.shape} and {gt.shape}")
  shared = pose_lib.pose_metrics(pred, gt)
  pred_units = np.asarray(pose_lib.to_report_units(pred), np.float64)
  gt_units = np.asarray(pose_lib.to_report_units(gt), np.float64)
  velocity_pred, velocity_gt = np.diff(pred_units, axis=1), np.diff(gt_units, axis=1)
  return {
      "l1": shared["l1"],
      "mean_diff": np.abs(pred_units.mean(axis=1) - gt_units.mean(axis=1)),
      "std_diff": shared["std_diff"],
      "velocity_l1": shared["velocity_l1"],
      "velocity_mean_diff": np.abs(velocity_pred.mean(axis=1) - velocity_gt.mean(axis=1)),
      "velocity_std_diff": np.abs(velocity_pred.std(axis=1) - velocity_gt.std(axis=1)),
  }


def _summarise(sums: Mapping[str, np.ndarray], count: int) -> dict[str, Any]:
  row: dict[str, Any] = {name: {dof: float(v) for dof, v in zip(DOF_NAMES, sums[name] / count)}
                         for name in METRIC_NAMES}
  l1 = sums["l1"] / count
  row["l1_rotation_deg"] = float(l1[:3].mean())
  row["l1_translation_px"] = float(l1[3:].mean())
  return row


def evaluate_head_motion(clips: Iterable[Mapping[str, Any]], predictors: Mapping[str, Predictor], *,
                         observed: int, predicted: int, audio: AudioSettings, windows_per_clip: int = 1,
                         batch_size: int = 8, pose_feature: str = "pose", size: int | None = None) -> dict[str, Any]:
  """Scores `predictors` (e.g. {"model": Φ, "static": …}) and the two pose baselines on `clips`
  (module docstring). Returns the report: `methods` {row: {metric: {dof: value}, …}}, `windows`,
  `clips` (per clip: windows and l1 per row), `skipped`, `settings`."""
  if predicted < 3:
    raise TalkingHeadError(f"--predicted must be at least 3 (velocity statistics), got {predicted}")
  methods = {**dict(predictors),
             "last_pose": lambda _audio, pose: baselines.repeat_last_pose(pose, predicted),
             "mean_pose": lambda _audio, pose: baselines.mean_observed_pose(pose, predicted)}
  sums = {name: {metric: np.zeros(6) for metric in METRIC_NAMES} for name in methods}
  per_clip: dict[str, dict[str, Any]] = {}
  skipped: list[dict[str, str]] = []
  count = 0
  pending: list[MotionWindow] = []

  def flush():
    nonlocal count
    audio_batch = np.stack([w.audio for w in pending])
    observed_batch = np.stack([w.observed_pose for w in pending])
    sizes = np.array([w.crop_size for w in pending])
    truth = translations_at_256(np.stack([w.future_pose for w in pending]), sizes)
    for name, predict in methods.items():
      poses = np.asarray(predict(audio_batch, observed_batch))
      if poses.shape != truth.shape:
        raise ValueError(f"predictor {name!r} gave {poses.shape}, expected {truth.shape}")
      errors = motion_errors(translations_at_256(poses, sizes), truth)
      for metric, values in errors.items():
        sums[name][metric] += values.sum(axis=0)
      for window, l1 in zip(pending, errors["l1"]):
        entry = per_clip[window.clip_id]
        entry.setdefault("l1", {}).setdefault(name, []).append(l1.tolist())
    count += len(pending)
    pending.clear()

  for clip in clips:
    windows = motion_windows(clip, observed=observed, predicted=predicted, audio=audio,
                             windows_per_clip=windows_per_clip, pose_feature=pose_feature, size=size)
    clip_id = trained_stage.clip_name(clip)
    if not windows:
      frames = trained_stage.num_frames(clip, clip[pose_feature])
      skipped.append({"clip_id": clip_id, "reason": f"{frames} frames, fewer than {observed} + {predicted}"})
      continue
    per_clip[clip_id] = {"clip_id": clip_id, "windows": len(windows)}
    pending.extend(windows)
    if len(pending) >= batch_size:
      flush()
  if pending:
    flush()
  if not count:
    raise InputError(None, f"no test clip has {observed} + {predicted} frames")
  clip_rows = []
  for entry in per_clip.values():
    l1 = {name: {dof: float(v) for dof, v in zip(DOF_NAMES, np.mean(values, axis=0))}
          for name, values in entry.pop("l1").items()}
    clip_rows.append({**entry, "l1": l1})
  return {
      "stage": "head_motion",
      "methods": {name: _summarise(sums[name], count) for name in methods},
      "windows": count,
      "clips": clip_rows,
      "skipped": skipped,
      "settings": {
          "observed": int(observed), "predicted": int(predicted), "windows_per_clip": int(windows_per_clip),
          "units": {"rx, ry, rz": "degrees (rotation-vector components)",
                    "tx, ty, tz": f"pixels at {REFERENCE_SIZE} px (x {REFERENCE_SIZE}/crop size)"},
          "std": "population (ddof 0) over the predicted frames of a window",
          "ground_truth": f"clip feature {pose_feature!r} as prepared (not smoothed)",
          "audio_smoothing_align": audio.align,
          "aggregate": "mean over windows",
          "sample_rate": audio.sample_rate, "fps": audio.fps, "context_frames": audio.context_frames,
          "audio_smoothing_taps": audio.smooth_taps,
      },
  }


def default_lengths(config) -> tuple[int, int]:
  """(τ, P) for evaluation: upstream's 64 + 64, capped at the run's largest training lengths."""
  return (min(UPSTREAM_TEST_FRAMES, int(config.data.observed_frames[1])),
          min(UPSTREAM_TEST_FRAMES, int(config.data.predicted_frames[1])))


def format_table(report: Mapping[str, Any]) -> str:
  """L1 per dof, and the statistics match summed over dofs of a kind, one row per method."""
  settings = report["settings"]
  lines = [f"Φ head motion: {len(report['clips'])} clips, {report['windows']} windows of "
           f"{settings['observed']} observed + {settings['predicted']} predicted frames "
           f"(rotations in deg, translations in px at {REFERENCE_SIZE} px)",
           f"{'method':<12}" + "".join(f"{'L1 ' + dof:>9}" for dof in DOF_NAMES)
           + f"{'L1 rot':>9}{'L1 tr':>9}{'|Δstd| rot':>12}{'|Δstd| tr':>11}{'|Δvstd| rot':>13}{'|Δvstd| tr':>12}"]
  for name, row in report["methods"].items():
    kinds = lambda metric: (np.mean([row[metric][d] for d in DOF_NAMES[:3]]),  # noqa: E731
                            np.mean([row[metric][d] for d in DOF_NAMES[3:]]))
    std_rot, std_tr = kinds("std_diff")
    vstd_rot, vstd_tr = kinds("velocity_std_diff")
    lines.append(f"{name:<12}" + "".join(f"{row['l1'][dof]:>9.3f}" for dof in DOF_NAMES)
                 + f"{row['l1_rotation_deg']:>9.3f}{row['l1_translation_px']:>9.3f}"
                 + f"{std_rot:>12.3f}{std_tr:>11.3f}{vstd_rot:>13.3f}{vstd_tr:>12.3f}")
  return "\n".join(lines)


def evaluate_checkpoint(checkpoint, *, data_dir: str | None, split: str = "test", observed: int | None = None,
                        predicted: int | None = None, baseline_checkpoint=None, windows_per_clip: int = 1,
                        max_clips: int | None = None, batch_size: int = 8, overrides: Sequence[str] = ()
                        ) -> dict[str, Any]:
  """`talkinghead evaluate --stage head_motion`: Φ of a run's checkpoint on the prepared `split`,
  with the pose baselines and, from `baseline_checkpoint`, the not-few-shot network.
  `overrides` change the runs' data settings (`data.builder_config=…`)."""
  stage = trained_stage.load_trained_stage(checkpoint, "head_motion")
  config = trained_stage.evaluation_config(stage.config, data_dir, overrides)
  default_observed, default_predicted = default_lengths(config)
  observed = default_observed if observed is None else int(observed)
  predicted = default_predicted if predicted is None else int(predicted)
  audio = AudioSettings.from_config(config)
  pose_feature = str(config.data.get("pose_feature", "pose"))
  runs = {"model": (stage, config)}
  if baseline_checkpoint is not None:
    baseline = trained_stage.load_trained_stage(baseline_checkpoint, "head_motion")
    baseline_config = trained_stage.evaluation_config(baseline.config, data_dir, overrides)
    if AudioSettings.from_config(baseline_config) != audio:
      raise TalkingHeadError(f"{baseline.workdir}: its audio settings {AudioSettings.from_config(baseline_config)} "
                             f"differ from the evaluated run's {audio}")
    if str(baseline_config.data.get("pose_feature", "pose")) != pose_feature:
      raise TalkingHeadError(f"{baseline.workdir}: trained on another pose feature than the evaluated run")
    runs["baseline" if baseline.task.model.few_shot else "static"] = (baseline, baseline_config)
  predictors, described = {}, {}
  for run, _ in runs.values():
    check_observed(run.task.model, observed)  # before any data is read
  for name, (run, run_config) in runs.items():
    normalisation = pose_normalisation(run_config, training_pose_statistics(run_config))
    predictors[name] = head_motion_predictor(run, observed, predicted, normalisation, batch_size)
    described[name] = {"workdir": str(run.workdir), "step": run.step, "few_shot": bool(run.task.model.few_shot),
                       "pose_mean": normalisation.mean.tolist(), "pose_std": normalisation.std.tolist()}
  size = int(trained_stage.dataset_artifacts(config).info["size"])
  report = evaluate_head_motion(
      trained_stage.clip_source(config, split, max_clips, ("clip_id", pose_feature, "num_frames")), predictors,
      observed=observed, predicted=predicted, audio=audio, windows_per_clip=windows_per_clip, batch_size=batch_size,
      pose_feature=pose_feature, size=size)
  report["checkpoint"] = described
  report["split"] = split
  return report
