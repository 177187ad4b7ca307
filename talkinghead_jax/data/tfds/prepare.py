"""`talkinghead prepare` as a function: manual folder → landmarks → canonical face and PCA → tfds.

    summary = prepare("synthtalk", manual_dir="synthtalk", data_dir="prepared",
                      detector="sidecar", size=64)

1. Find the clips (`sources.find_clips`).
2. Landmark pass (`landmark_pass`): every clip without a landmark file, in this process, a
   process pool (`workers`) or on Beam (`beam_runner`); rejects go to rejects.jsonl.
3. The canonical face (`canonical` file, or `preprocess.fit_canonical` over the train split's
   landmarks) and the landmark PCA (`preprocess.fit_landmark_pca` over the train split's
   frontalized landmarks of detected frames), saved once in the artifacts folder.
4. The tfds build (`builder.TalkingHeadBuilder`), on Beam too when a runner is given.
5. The summary: per split, clips kept, rejected by reason, frames, hours of audio; printed by
   the command and written to artifacts/summary.json.

A rerun does only what is missing: landmark files that exist are kept, rejected clips are not
retried, the canonical face and PCA are kept, and a complete tfds build is reused as it is.
"""

from __future__ import annotations

import collections
import os
import pathlib
import shlex
import shutil
from typing import Any, Sequence

import numpy as np

from talkinghead_jax.data.tfds import artifacts as artifacts_lib
from talkinghead_jax.data.tfds import landmark_pass
from talkinghead_jax.data.tfds import sources
from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.fileio import atomic_write_path

FPS = 25
PCA_COMPONENTS = 20
PCA_FRAMES_PER_CLIP = 32  # evenly spaced frames of each train clip that the PCA sees


def builder_class(dataset: str):
  """The tfds builder class of `dataset` (importing it registers it with tfds)."""
  if dataset == "synthtalk":
    from talkinghead_jax.data.tfds.synthtalk import Synthtalk
    return Synthtalk
  if dataset == "voxceleb2":
    from talkinghead_jax.data.tfds.voxceleb2 import Voxceleb2
    return Voxceleb2
  if dataset == "lrs3":
    from talkinghead_jax.data.tfds.lrs3 import Lrs3
    return Lrs3
  raise TalkingHeadError(f"unknown data set {dataset!r}; known: {', '.join(sources.DATASETS)}")


# --- Beam -----------------------------------------------------------------------------------------


def beam_runner(name: str):
  """A Beam runner for `name`. "DirectRunner" is Beam's in-process FnApiRunner: Beam's own
  DirectRunner would first try to download its Prism binary from GitHub, which an offline
  machine cannot; other names go to Beam as they are (e.g. "DataflowRunner", "FlinkRunner")."""
  if name == "DirectRunner":
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    return FnApiRunner()
  return name


def beam_options(text: str | None):
  """PipelineOptions from a command-line string ("--direct_num_workers=4 ...")."""
  from apache_beam.options.pipeline_options import PipelineOptions

  try:
    arguments = shlex.split(text or "")
  except ValueError as error:
    raise TalkingHeadError(f"--beam-options {text!r}: {error}") from error
  return PipelineOptions(arguments)


# --- Canonical face and PCA -----------------------------------------------------------------------


def _load_landmarks(clips: Sequence[sources.ClipSource], artifacts: artifacts_lib.Artifacts):
  from talkinghead_jax.data import preprocess

  return [preprocess.ClipLandmarks.load(artifacts.landmarks(c.split, c.clip_id)) for c in clips]


def _save_npy(path: pathlib.Path, array: np.ndarray) -> None:
  with atomic_write_path(path) as temporary, open(temporary, "wb") as stream:
    np.save(stream, array)  # a stream, so np.save adds no ".npy" to the temporary name


def read_canonical(path: str | os.PathLike) -> np.ndarray:
  try:
    canonical = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as error:
    raise InputError(path, f"unreadable canonical face ({error})") from error
  if canonical.shape != (68, 3) or not np.all(np.isfinite(canonical)):
    raise InputError(path, f"a canonical face must be a finite (68, 3) array, got {canonical.shape}")
  return canonical.astype(np.float32)


def fit_shape_models(train_clips: Sequence[sources.ClipSource],
                     artifacts: artifacts_lib.Artifacts,
                     given: np.ndarray | None = None) -> np.ndarray:
  """Writes canonical_face.npy (the `given` face, or one fitted to the train clips) and
  landmark_pca.npz unless they exist; returns the canonical face."""
  from talkinghead_jax.data import preprocess
  from talkinghead_jax.geometry import rigid

  if artifacts.canonical.is_file():
    canonical = read_canonical(artifacts.canonical)
    if given is not None and not np.array_equal(given, canonical):
      raise TalkingHeadError(
          f"{artifacts.canonical} holds another canonical face than --canonical; the set was "
          "made with it (delete the artifacts and tfds folders of this config to remake it)")
  elif given is not None:
    canonical = given
  else:
    if not train_clips:
      raise TalkingHeadError(f"no train clip has landmarks to fit a canonical face to; see "
                             f"{artifacts.rejects}")
    loaded = _load_landmarks(train_clips, artifacts)
    canonical = np.asarray(preprocess.fit_canonical([c.landmarks for c in loaded],
                                                    loaded[0].size), np.float32)
  if not artifacts.canonical.is_file():
    _save_npy(artifacts.canonical, canonical)

  if not artifacts.pca.is_file():
    fronts = []
    for clip_landmarks in _load_landmarks(train_clips, artifacts):
      pose = rigid.pose_from_landmarks(clip_landmarks.landmarks, canonical)
      front = rigid.frontalize(clip_landmarks.landmarks, pose)
      # Only frames with a face found: gap-filled frames are interpolations, not data.
      fronts.append(front[np.asarray(clip_landmarks.detected, bool)])
    samples = sum(min(len(f), PCA_FRAMES_PER_CLIP) for f in fronts)
    if samples < 2:
      raise TalkingHeadError(f"the train split has {samples} frames with a face: too few for "
                             f"the landmark PCA; see {artifacts.rejects}")
    pca = preprocess.fit_landmark_pca(fronts, num_components=min(PCA_COMPONENTS, samples),
                                      frames_per_clip=PCA_FRAMES_PER_CLIP)
    pca.save(artifacts.pca)
  return canonical


# --- Summary ----------------------------------------------------------------------------------------


def _num_frames(landmarks_path: pathlib.Path) -> int:
  """A ClipLandmarks file's frame count, without reading its arrays (summaries of big sets)."""
  with np.load(landmarks_path, allow_pickle=False) as archive:
    return int(archive["num_frames"])


def summarize(clips: Sequence[sources.ClipSource], artifacts: artifacts_lib.Artifacts,
              builder) -> dict[str, Any]:
  """Per split: clips found, kept (tfds examples), rejected by reason, frames, hours of audio."""
  from talkinghead_jax.data import rejects

  records = rejects.RejectsManifest(artifacts.rejects).records()
  reason_of = {r["clip"]: r["reason"] for r in records}
  splits = {}
  for split in sources.SPLITS:
    in_split = [c for c in clips if c.split == split]
    kept = [c for c in in_split if c.clip_id not in reason_of
            and artifacts.landmarks(split, c.clip_id).is_file()]
    frames = sum(_num_frames(artifacts.landmarks(split, c.clip_id)) for c in kept)
    examples = builder.info.splits[split].num_examples if split in builder.info.splits else 0
    splits[split] = {
        "clips": len(in_split),
        "kept": int(examples),
        "rejected": dict(sorted(collections.Counter(
            reason_of[c.clip_id] for c in in_split if c.clip_id in reason_of).items())),
        "frames": int(frames),
        "hours_of_audio": frames / FPS / 3600.0,
    }
  return {"dataset": builder.name, "config": builder.builder_config.name,
          "version": str(builder.version), "tfds_dir": os.fspath(builder.data_dir),
          "artifacts_dir": os.fspath(artifacts.root), "settings": builder.builder_config.settings(),
          "splits": splits}


def summary_line(summary: dict[str, Any]) -> str:
  parts = []
  for split, numbers in summary["splits"].items():
    rejected = sum(numbers["rejected"].values())
    reasons = ", ".join(f"{reason} {count}" for reason, count in numbers["rejected"].items())
    parts.append(f"{split} {numbers['kept']} clips kept ({numbers['frames']} frames, "
                 f"{numbers['hours_of_audio']:.2f} h of audio), {rejected} rejected"
                 + (f" ({reasons})" if reasons else ""))
  return (f"prepare {summary['dataset']}/{summary['config']}: " + "; ".join(parts)
          + f"; shards in {summary['tfds_dir']}")


# --- The whole flow -------------------------------------------------------------------------------


def _build(cls, config, data_dir: pathlib.Path, manual_dir, *, workers: int,
           beam_runner_name: str | None, beam_options_text: str | None,
           max_clips: int | None):
  """The tfds build (pass 2); returns the builder that holds it."""
  import tensorflow_datasets as tfds

  use_beam = beam_runner_name is not None

  def build():
    builder = cls(config=config, data_dir=data_dir, workers=workers, use_beam=use_beam,
                  max_clips=max_clips)
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir), try_download_gcs=False,
        beam_runner=beam_runner(beam_runner_name) if use_beam else None,
        beam_options=beam_options(beam_options_text) if use_beam else None)
    builder.download_and_prepare(download_dir=data_dir / "downloads",
                                 download_config=download_config)
    return builder

  probe = cls(config=config, data_dir=data_dir, max_clips=max_clips)
  # A build killed part-way leaves an "incomplete.*" folder that tfds never reuses.
  for stale in probe.data_path.parent.glob("incomplete.*"):
    shutil.rmtree(stale, ignore_errors=True)
  splits_before = probe.clips_to_build(manual_dir)
  try:
    return build()
  except Exception:
    # tfds cannot write a split whose every clip was rejected during the build. Those clips
    # are in rejects.jsonl now, so a second build leaves that split out.
    splits_after = probe.clips_to_build(manual_dir)
    if not any(splits_before[s] and not splits_after[s] for s in sources.SPLITS):
      raise
    return build()


def prepare(dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike,
            detector: str, *, size: int = 256, audio_rates: Sequence[int] = (16000, 50000),
            canonical: str | os.PathLike | None = None, workers: int = 1,
            beam_runner_name: str | None = None, beam_options_text: str | None = None,
            max_clips: int | None = None, unprojection_frames: int = 4,
            detector_options: dict[str, Any] | None = None,
            progress: bool = True) -> dict[str, Any]:
  """Prepares `dataset` from `manual_dir` into `data_dir` (module docstring); the summary.

  detector_options go to `detectors.get_detector(detector, **detector_options)`; dlib gets
  `canonical=` (to lift its 2D points to 3D) unless they name one.
  """
  from talkinghead_jax.data import detectors
  from talkinghead_jax.data import preprocess
  from talkinghead_jax.data.tfds import builder as builder_lib

  # Settings are checked here, once: inside the per-clip jobs a bad one would reject every clip.
  preprocess.PrepareOptions(size=size, audio_rates=tuple(audio_rates))
  if detector not in detectors.available_detectors():
    detectors.get_detector(detector)  # raises, saying what it needs
  if unprojection_frames < 1:
    raise TalkingHeadError(f"--unprojection-frames must be >= 1, got {unprojection_frames}")
  if max_clips is not None and max_clips < 1:
    raise TalkingHeadError(f"--max-clips must be >= 1, got {max_clips}")
  given_canonical = None if canonical is None else read_canonical(canonical)
  detector_options = dict(detector_options or {})
  if detector == "dlib" and "canonical" not in detector_options:
    # dlib finds 2D points; they are lifted to 3D by fitting a 3D face (weak perspective, any
    # scale): --canonical's, or SynthTalk's template head.
    from talkinghead_jax.data import synthetic
    detector_options["canonical"] = (given_canonical if given_canonical is not None
                                     else synthetic.canonical_face(size))
  cls = builder_class(dataset)
  config = builder_lib.make_config(detector, size, audio_rates, unprojection_frames)
  clips = sources.find_clips(dataset, manual_dir, max_clips)
  data_dir = pathlib.Path(data_dir)
  artifacts = artifacts_lib.Artifacts.of(data_dir, cls.name, config.name)
  builder = cls(config=config, data_dir=data_dir, max_clips=max_clips)
  artifacts.check_or_write_settings(config.settings())

  if not builder.is_prepared():
    # Pass 1: landmarks.
    job = landmark_pass.LandmarkJob(
        artifacts_root=str(artifacts.root), detector=detector, size=config.size,
        audio_rates=tuple(config.audio_rates),
        detector_options=tuple(sorted(detector_options.items())))
    todo = landmark_pass.pending(clips, artifacts)
    if todo and beam_runner_name is not None:
      landmark_pass.run_beam(todo, job, beam_runner(beam_runner_name),
                             beam_options(beam_options_text))
    elif todo:
      landmark_pass.run_local(todo, job, workers, progress)
    # The canonical face and PCA, from the train split; then pass 2.
    fit_shape_models(builder.clips_to_build(manual_dir)["train"], artifacts, given_canonical)
    builder = _build(cls, config, data_dir, manual_dir, workers=workers,
                     beam_runner_name=beam_runner_name, beam_options_text=beam_options_text,
                     max_clips=max_clips)

  summary = summarize(clips, artifacts, builder)
  artifacts.write_json(artifacts.summary, summary)
  return summary
