"""`talkinghead demo --out DIR [--quick] [--seed S]`: the whole method on a fresh machine.

One command, everything in DIR:

  1. `synthtalk/`     a small SynthTalk set (`data.synthetic.generate`);
  2. `prepared/`      prepared with the `sidecar` landmarks (`data.tfds.prepare`, TensorFlow);
  3. `runs/<stage>/`  Ψ, Φ, the unprojection net and Θ trained with their `synthtalk_tiny`
                      configs (fewer steps than the configs' own, so that the demo fits in
                      20 minutes on a 2-core CPU), one after another in this process;
  4. `checkpoints/`   the four runs exported as one checkpoint set;
  5. `generated.mp4`  a video of a held-out (test split) identity X: reference = one test clip
                      of X, speech = another test clip of X; neither was trained on, and the
                      speech clip's frames and SynthTalk ground truth are the answer;
  6. `report.json`    metrics against that ground truth (docs/generate.md "talkinghead demo"):
                      SSIM of the frames, mouth LMD of the landmarks that drive Θ, pose L1 of Φ's
                      poses, each next to the "copy the reference clip" baseline.

Finished steps are skipped when the command is run again on the same DIR (a prepared set,
finished runs and an exported set are reused), so an interrupted demo resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Any, Mapping, TextIO

from talkinghead_jax import cli
from talkinghead_jax.data.schema import STAGES

AUDIO_RATES = (4000, 5000, 16000)  # Φ's tiny 4 kHz, Ψ's tiny 5 kHz, the 16 kHz of the vox configs
REPORT_NAME = "report.json"
# --quick: a handful of steps per stage, so compiling dominates: compile fast, run slower.
QUICK_XLA_FLAGS = ("--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0 "
                   "--xla_llvm_disable_expensive_passes=true")


@dataclasses.dataclass(frozen=True)
class Preset:
  """How big the demo's data set is and how long each stage trains."""

  name: str
  identities: int
  clips_per_identity: int
  seconds: float
  size: int
  steps: Mapping[str, int]
  # Extra `--set` overrides per stage on top of the synthtalk_tiny configs.
  overrides: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  samples_per_clip: int = 4


PRESETS = {
    # 20 identities × 4 clips × 4 s at 64 px: the set of docs/results.md. Test split: id00002,
    # id00007, id00012, id00017 (identity i is held out when i % 5 == 1).
    "full": Preset(
        name="full", identities=20, clips_per_identity=4, seconds=4.0, size=64,
        steps={"expression": 2000, "head_motion": 500, "unprojection": 400, "generator": 500}),
    # A smoke run for the test: 4 identities (one held out: id00002), 2 clips of 2 s, a handful
    # of steps; Φ's windows shortened to fit 50-frame clips; Θ without its perceptual network
    # and with the discriminator reusing the generator step's fakes (compiles in a fraction of
    # the time; the trained Θ is the same network).
    "quick": Preset(
        name="quick", identities=4, clips_per_identity=2, seconds=2.0, size=64,
        steps={"expression": 20, "head_motion": 6, "unprojection": 4, "generator": 2},
        overrides={
            "head_motion": ("data.observed_frames=(13, 16)", "data.predicted_frames=(8, 16)"),
            "generator": ("loss.vgg=0.0", "loss.d_fakes=reuse", "log.images_every_steps=0"),
            "unprojection": ("log.images_every_steps=0",),
            "expression": ("log.images_every_steps=0",),
        },
        samples_per_clip=2),
}


class _Log:
  """Timed steps: a line when each starts and ends, seconds kept for the report."""

  def __init__(self, stream: TextIO):
    self.stream = stream
    self.seconds: dict[str, float] = {}

  def say(self, text: str) -> None:
    print(text, file=self.stream, flush=True)

  def step(self, name: str, fn, *args, **kwargs):
    self.say(f"demo: {name} …")
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    self.seconds[name] = time.perf_counter() - start
    self.say(f"demo: {name} done in {self.seconds[name]:.1f} s")
    return result


def make_synthtalk(out: pathlib.Path, preset: Preset, seed: int) -> dict[str, Any]:
  from talkinghead_jax.data import synthetic

  workers = max(1, min(2, os.cpu_count() or 1))
  return synthetic.generate(out, preset.identities, preset.clips_per_identity, preset.seconds, preset.size,
                            seed, workers=workers)


def prepare_synthtalk(synth_dir: pathlib.Path, data_dir: pathlib.Path, preset: Preset) -> dict[str, Any]:
  from talkinghead_jax.data.tfds import prepare

  workers = max(1, min(2, os.cpu_count() or 1))
  return prepare.prepare("synthtalk", synth_dir, data_dir, "sidecar", size=preset.size, audio_rates=AUDIO_RATES,
                         workers=workers, progress=False)


def builder_config(preset: Preset) -> str:
  return f"sidecar_{preset.size}"


def stage_overrides(stage: str, preset: Preset, data_dir: pathlib.Path, runs: pathlib.Path) -> list[str]:
  """The `--set` list that trains `stage` of the demo."""
  overrides = [f"data.data_dir={data_dir}", f"data.builder_config={builder_config(preset)}",
               f"data.samples_per_clip={preset.samples_per_clip}", f"total_steps={preset.steps[stage]}",
               # One device: the tiny batches (Θ's is 4) need not split over a host's devices.
               "mesh.data=1"]
  if stage == "generator":
    overrides.append(f"model.unprojection_checkpoint={runs / 'unprojection'}")
  return overrides + list(preset.overrides.get(stage, ()))


def train_stage(stage: str, preset: Preset, data_dir: pathlib.Path, runs: pathlib.Path, stream: TextIO) -> Any:
  """Trains (or resumes, or finds finished) one stage in this process, as `talkinghead train`
  would with the command line it prints."""
  from talkinghead_jax import config as config_lib
  from talkinghead_jax.train import loop

  spec = f"configs/{stage}.py:synthtalk_tiny"
  overrides = stage_overrides(stage, preset, data_dir, runs)
  sets = " ".join(f"--set '{item}'" for item in overrides)
  print(f"demo:   talkinghead train --config {spec} --workdir {runs / stage} {sets}", file=stream, flush=True)
  return loop.train(config_lib.load(spec, overrides), runs / stage, stream=stream)


def export(out: pathlib.Path, data_dir: pathlib.Path, runs: pathlib.Path, preset: Preset) -> pathlib.Path:
  from talkinghead_jax.infer import checkpoint_set

  return checkpoint_set.export_checkpoint_set(
      out, expression=runs / "expression", head_motion=runs / "head_motion", generator=runs / "generator",
      unprojection=runs / "unprojection", data_dir=data_dir, builder_config=builder_config(preset), overwrite=True)


# --- The held-out example --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """Two test-split clips of one identity: the reference video and the speech (+ its truth)."""

  identity: str
  reference: pathlib.Path  # <clip>.mp4 with its <clip>.npz sidecar beside it
  speech: pathlib.Path  # the clip whose sound drives the video and whose frames are the answer


def choose_held_out(synth_dir: pathlib.Path, manifest: Mapping[str, Any]) -> HeldOut:
  """The first test identity with two clips: its first two clips of one video when it has them
  (same background and light, so the speech clip's frames are what a perfect model would make),
  else its first two."""
  from talkinghead_jax.errors import TalkingHeadError

  by_identity: dict[str, list[Mapping[str, Any]]] = {}
  for clip in manifest["clips"]:
    if clip["split"] == "test":
      by_identity.setdefault(clip["identity"], []).append(clip)
  for identity in sorted(by_identity):
    clips = sorted(by_identity[identity], key=lambda c: c["clip"])
    if len(clips) < 2:
      continue
    same_video = [(a, b) for a, b in zip(clips, clips[1:]) if a["video"] == b["video"]]
    first, second = same_video[0] if same_video else (clips[0], clips[1])
    return HeldOut(identity=identity, reference=synth_dir / first["path"], speech=synth_dir / second["path"])
  raise TalkingHeadError(f"{synth_dir}: no test-split identity with two clips (use more identities or clips)")


def copy_inputs(held_out: HeldOut, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """DIR/inputs/reference.mp4 (+ its .npz sidecar) and DIR/inputs/speech.wav (the speech clip's
  sound, aligned with its first frame): the two files a user would give `talkinghead generate`."""
  import shutil

  import soundfile

  from talkinghead_jax import media

  folder.mkdir(parents=True, exist_ok=True)
  reference = folder / "reference.mp4"
  shutil.copyfile(held_out.reference, reference)
  shutil.copyfile(held_out.reference.with_suffix(".npz"), reference.with_suffix(".npz"))
  video = media.read_video(held_out.speech)
  speech = folder / "speech.wav"
  soundfile.write(speech, video.audio, int(video.sample_rate), subtype="PCM_16")
  return reference, speech


# --- Metrics ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class GroundTruth:
  """The speech clip's truth in the reference's crop at Θ's size (what the output should be)."""

  frames: Any  # uint8 (T, S, S, 3): its frames cropped with the reference's box
  landmarks: Any  # (T, 68, 3) SynthTalk's landmarks through the same crop
  pose: Any  # (T, 6) their pose against the set's canonical face at S (the reference's convention)
  front: Any  # (T, 68, 3) frontalized with that pose


def ground_truth(speech_clip: pathlib.Path, reference, checkpoints) -> GroundTruth:
  """Crops the speech clip's frames and SynthTalk landmarks with the reference's box and poses
  them as `infer.reference` poses the reference (Kabsch on the stable points against the set's
  canonical face scaled to S), so every quantity is in the convention of Φ's and Ψ's output."""
  import numpy as np

  from talkinghead_jax import media
  from talkinghead_jax.data import crop
  from talkinghead_jax.errors import InputError
  from talkinghead_jax.geometry import rigid

  size = int(checkpoints.image_size)
  video = media.read_video(speech_clip, fps=checkpoints.fps)
  sidecar = speech_clip.with_suffix(".npz")
  with np.load(sidecar) as truth:
    points = truth["landmarks"].astype(np.float64)
  if len(points) != video.num_frames:
    raise InputError(sidecar, f"holds {len(points)} frames, the video {video.num_frames}")
  landmarks = crop.crop_points(points, reference.box, size)
  canonical = np.asarray(checkpoints.canonical, np.float64) * checkpoints.scale
  pose = rigid.pose_from_landmarks(landmarks, canonical)
  return GroundTruth(frames=crop.crop_frames(video.frames, reference.box, size),
                     landmarks=landmarks.astype(np.float32), pose=np.asarray(pose, np.float32),
                     front=np.asarray(rigid.frontalize(landmarks, pose), np.float32))


def score(frames, landmarks, front, pose, truth: GroundTruth, size: int) -> dict[str, Any]:
  """SSIM/PSNR of the frames, mouth/face LMD (posed and frontal), pose L1 against the truth;
  over the first T frames both have. LMD and pose translations in pixels at 256 px."""
  import numpy as np

  from talkinghead_jax.eval import image_metrics, landmark_distance, pose as pose_lib, stage_head_motion

  count = min(len(frames), len(landmarks), len(front), len(pose), len(truth.frames))
  ssim, psnr = image_metrics.ssim_psnr(np.asarray(frames[:count]), truth.frames[:count])
  lmd = {name: float(landmark_distance.landmark_distance(landmarks[:count], truth.landmarks[:count],
                                                        (size, size), name).mean())
         for name in ("mouth", "face")}
  frontal = float(landmark_distance.landmark_distance(front[:count], truth.front[:count], (size, size),
                                                      "mouth").mean())
  # Φ's numbers as docs/results.md gives them: degrees, and pixels of a 256 px crop.
  pred = stage_head_motion.translations_at_256(np.asarray(pose[:count], np.float32), size)
  gt = stage_head_motion.translations_at_256(truth.pose[:count], size)
  l1 = pose_lib.pose_metrics(pred, gt)["l1"]
  return {
      "frames": int(count),
      "ssim": float(np.mean(ssim)),
      "psnr_db": float(np.mean(psnr)),
      "lmd_mouth": lmd["mouth"],
      "lmd_face": lmd["face"],
      "lmd_mouth_frontal": frontal,
      "pose_l1_rotation_deg": float(np.mean(l1[:3])),
      "pose_l1_translation_px": float(np.mean(l1[3:])),
      "pose_l1": {dof: float(value) for dof, value in zip(pose_lib.DOF_NAMES, l1)},
  }


def copy_reference_baseline(reference, count: int) -> dict[str, Any]:
  """The reference clip itself as the answer, played forwards and backwards to `count` frames:
  its crops, landmarks and poses (the score a model that ignores the speech could get)."""
  import numpy as np

  length = reference.num_frames
  period = max(2 * (length - 1), 1)
  phase = np.arange(count) % period
  rows = np.where(phase < length, phase, period - phase)  # 0, 1, …, n−1, n−2, …, 1, 0, 1, …
  return {"frames": reference.frames[rows], "landmarks": reference.landmarks[rows], "front": reference.front[rows],
          "pose": reference.pose[rows]}


def evaluate_output(video_path: pathlib.Path, speech_path: pathlib.Path, held_out: HeldOut, checkpoints,
                    seed: int) -> dict[str, Any]:
  """The generated video and the motion that drove it, scored against the speech clip's truth,
  next to the copy-the-reference baseline."""
  from talkinghead_jax import audio as audio_lib
  from talkinghead_jax import media
  from talkinghead_jax.infer import motion as motion_lib, reference as reference_lib

  size = int(checkpoints.image_size)
  reference = reference_lib.prepare_reference(held_out.reference, checkpoints)
  # `generate` computed this motion inside; it is deterministic given the seed, so the same
  # call gives the landmarks and poses that drove Θ (the test checks its length).
  speech = audio_lib.decode_audio(speech_path)
  motion = motion_lib.motion_from_audio(speech.samples, int(speech.sample_rate), reference, checkpoints, seed=seed)
  truth = ground_truth(held_out.speech, reference, checkpoints)
  output = media.read_video(video_path, fps=checkpoints.fps, with_audio=False).frames
  model = score(output, motion.landmarks, motion.front, motion.pose, truth, size)
  model["motion_frames"] = int(len(motion.pose))
  baseline = copy_reference_baseline(reference, len(truth.frames))
  return {"model": model,
          "copy_reference": score(baseline["frames"], baseline["landmarks"], baseline["front"], baseline["pose"],
                                  truth, size),
          "truth": truth, "output": output}


def write_comparison(path: pathlib.Path, output, truth: GroundTruth, speech_path: pathlib.Path) -> None:
  """generated | ground truth, side by side, with the speech."""
  import numpy as np

  from talkinghead_jax import audio as audio_lib
  from talkinghead_jax import media

  count = min(len(output), len(truth.frames))
  frames = np.concatenate([output[:count], truth.frames[:count]], axis=2)
  speech = audio_lib.decode_audio(speech_path)
  media.write_video(path, frames, fps=25, audio=speech.samples, sample_rate=int(speech.sample_rate))


METRIC_ROWS = (("ssim", "SSIM ↑", "{:.3f}"), ("psnr_db", "PSNR (dB) ↑", "{:.2f}"),
               ("lmd_mouth", "mouth LMD, posed (px @256) ↓", "{:.2f}"),
               ("lmd_mouth_frontal", "mouth LMD, frontal (px @256) ↓", "{:.2f}"),
               ("lmd_face", "face LMD, posed (px @256) ↓", "{:.2f}"),
               ("pose_l1_rotation_deg", "pose L1 rotation (°) ↓", "{:.2f}"),
               ("pose_l1_translation_px", "pose L1 translation (px @256) ↓", "{:.2f}"))


METRIC_NOTES = {
    "ssim": "generated frames vs the speech clip's frames cropped with the reference's box at Θ's size "
            "(eval.image_metrics: Gaussian 11x11, per RGB channel)",
    "lmd_mouth": "the posed landmarks that drive Θ (Ψ's expression + Φ's pose) vs SynthTalk's ground-truth "
                 "landmarks through the same crop; mean 2-D distance of points 48-67 in pixels at 256 px",
    "lmd_mouth_frontal": "Ψ alone: the motion's frontal landmarks vs the ground truth frontalized with its own pose",
    "pose_l1": "Φ's poses vs the ground-truth landmarks' pose against the set's canonical face (the reference's "
               "convention); rotation-vector components in degrees, translations in pixels at 256 px",
    "copy_reference": "the reference clip's own crops, landmarks and poses played forwards and backwards",
}

def metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
  lines = [f"  {'metric':34s} {'model':>10s} {'copy reference':>15s}"]
  for key, label, form in METRIC_ROWS:
    lines.append(f"  {label:34s} {form.format(metrics['model'][key]):>10s} "
                 f"{form.format(metrics['copy_reference'][key]):>15s}")
  return "\n".join(lines)


# --- The whole demo --------------------------------------------------------------------------------


def run_demo(out: str | os.PathLike, preset: Preset, seed: int = 0, stream: TextIO | None = None) -> dict[str, Any]:
  """Runs the demo into `out` (module docstring); returns the report also written to report.json."""
  from talkinghead_jax import bench
  from talkinghead_jax.fileio import atomic_write_path
  from talkinghead_jax.infer import checkpoint_set, pipeline

  stream = stream or sys.stdout
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  log = _Log(stream)
  synth_dir, data_dir, runs = out / "synthtalk", out / "prepared", out / "runs"
  manifest = log.step("synth", make_synthtalk, synth_dir, preset, seed)
  log.step("prepare", prepare_synthtalk, synth_dir, data_dir, preset)
  for stage in STAGES:
    log.step(f"train {stage}", train_stage, stage, preset, data_dir, runs, stream)
  set_dir = log.step("export", export, out / "checkpoints", data_dir, runs, preset)
  checkpoints = checkpoint_set.load_checkpoint_set(set_dir)

  held_out = choose_held_out(synth_dir, manifest)
  reference_path, speech_path = copy_inputs(held_out, out / "inputs")
  video_path = out / "generated.mp4"
  generated = log.step("generate", pipeline.generate, reference_path, speech_path, video_path, checkpoints,
                       pipeline.GenerateOptions(seed=seed, progress=False))
  log.say(f"demo: {generated.summary()}")
  metrics = log.step("metrics", evaluate_output, video_path, speech_path, held_out, checkpoints, seed)
  write_comparison(out / "comparison.mp4", metrics.pop("output"), metrics.pop("truth"), speech_path)

  report = {
      "command": "talkinghead demo --out " + str(out) + (" --quick" if preset.name == "quick" else "")
                 + f" --seed {seed}",
      "preset": {**dataclasses.asdict(preset), "steps": dict(preset.steps),
                 "overrides": {k: list(v) for k, v in preset.overrides.items()}},
      "seed": seed,
      "held_out": {"identity": held_out.identity, "reference": str(held_out.reference),
                   "speech": str(held_out.speech)},
      "files": {"video": str(video_path), "comparison": str(out / "comparison.mp4"),
                "checkpoints": str(set_dir), "reference": str(reference_path), "speech": str(speech_path)},
      "metrics": metrics,
      "metric_notes": METRIC_NOTES,
      "generate": {"frames": generated.frames, "wall_seconds": generated.wall_seconds,
                   "stage_seconds": generated.stage_seconds},
      "seconds": {**log.seconds, "total": time.perf_counter() - start},
      "environment": bench.environment(),
  }
  with atomic_write_path(out / REPORT_NAME) as path:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
  log.say(f"demo: held-out identity {held_out.identity}: reference {held_out.reference.name} of video "
          f"{held_out.reference.parent.name}, speech {held_out.speech.name}; "
          f"{metrics['model']['frames']} frames scored")
  log.say(metrics_table(metrics))
  log.say(f"demo: done in {report['seconds']['total'] / 60:.1f} min; everything is in {out} "
          f"(video {video_path.name}, metrics {out / REPORT_NAME})")
  return report



@cli.register("demo", "The whole method on a fresh machine: make and prepare a small SynthTalk set, train every "
              "stage, generate a held-out identity speaking held-out audio, and score it against the truth.")
def _configure(parser):
  parser.add_argument("--out", required=True, help="folder for everything (data, runs, checkpoints, video, report)")
  parser.add_argument("--quick", action="store_true",
                      help="a smoke run (6 identities, 2-s clips, a handful of steps per stage; about 2 minutes)")
  parser.add_argument("--seed", type=int, default=0, help="SynthTalk's seed and generate's seed")

  def run(args) -> int:
    preset = PRESETS["quick" if args.quick else "full"]
    if args.quick and "jax" not in sys.modules:
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + QUICK_XLA_FLAGS).strip()
    # tfds logs each data set opening and a deprecation per feature: noise around the demo's lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    run_demo(args.out, preset, seed=args.seed)
    return 0

  return run

