"""The shared tfds builder of prepared talking-head clips (SynthTalk, VoxCeleb2, LRS3).

A builder turns the clips of a manual folder whose landmark pass is done (a ClipLandmarks file
under the artifacts, see `artifacts.py`) into one example per clip: `preprocess.finish_clip`
crops the frames, computes pose, frontal landmarks, key frame and audio; the example holds
them with the feature names of `features.py`. A clip that `finish_clip` rejects, or that fails
in any other way, is recorded in rejects.jsonl and left out; the build goes on.

The examples are produced in this process, in a pool of `workers` processes, or — with
`use_beam=True` and a `tfds.download.DownloadConfig(beam_runner=...)` — by an Apache Beam
pipeline (`_generate_examples` then returns `beam.Create(clips) | beam.FlatMap(job)`, which
tfds runs and writes with Beam). Build one with `talkinghead prepare`, read one with
`talkinghead_jax.data.tfds.open_dataset`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from talkinghead_jax.data.tfds import artifacts as artifacts_lib
from talkinghead_jax.data.tfds import examples as examples_lib
from talkinghead_jax.data.tfds import features as features_lib
from talkinghead_jax.data.tfds import pool
from talkinghead_jax.data.tfds import sources

DATA_VERSION = "1.0.0"
DEFAULT_AUDIO_RATES = (16000, 50000)
DEFAULT_UNPROJECTION_FRAMES = 4


@dataclasses.dataclass(eq=False)
class PrepareConfig(tfds.core.BuilderConfig):
  """A prepared variant: crop size, audio rates, landmark detector, unprojection frames.

  Its name is f"{detector}_{size}" (`make_config`); the other fields are recorded in the
  artifacts' settings.json, and a set is never extended with other values of them.
  """

  size: int = 256
  audio_rates: tuple[int, ...] = DEFAULT_AUDIO_RATES
  detector: str = "face_alignment"
  unprojection_frames: int = DEFAULT_UNPROJECTION_FRAMES

  def settings(self) -> dict[str, Any]:
    return {"size": int(self.size), "audio_rates": [int(r) for r in self.audio_rates],
            "detector": self.detector, "unprojection_frames": int(self.unprojection_frames)}


def make_config(detector: str, size: int = 256,
                audio_rates: Sequence[int] = DEFAULT_AUDIO_RATES,
                unprojection_frames: int = DEFAULT_UNPROJECTION_FRAMES) -> PrepareConfig:
  rates = tuple(sorted({int(r) for r in audio_rates}))
  return PrepareConfig(
      name=artifacts_lib.config_name(detector, size), version=DATA_VERSION,
      description=f"{detector} landmarks, {size}x{size} crops, audio at "
                  f"{', '.join(str(r) for r in rates)} Hz",
      size=int(size), audio_rates=rates, detector=detector,
      unprojection_frames=int(unprojection_frames))


def config_from_settings(settings: dict[str, Any]) -> PrepareConfig:
  return make_config(settings["detector"], settings["size"], settings["audio_rates"],
                     settings["unprojection_frames"])


class TalkingHeadBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder; subclasses name the data set (`name`, `SOURCE`) and may add ground truth.

  Constructor keywords besides tfds's: workers (processes for the local build), use_beam
  (return Beam transforms: give a beam_runner in the DownloadConfig), max_clips (per split,
  as in the landmark pass).
  """

  VERSION = tfds.core.Version(DATA_VERSION)
  RELEASE_NOTES = {DATA_VERSION: "Clips cropped, with landmarks, pose, frontal landmarks and audio."}
  BUILDER_CONFIG_CLASS = PrepareConfig
  SOURCE = ""
  HOMEPAGE = ""
  DESCRIPTION = ""
  MANUAL_DOWNLOAD_INSTRUCTIONS = ""
  # tfds reads a download-checksums file beside a builder's code, found through `code_path`,
  # which for a builder inside a package needs the `importlib_resources` backport. These
  # builders download nothing: no code path, no checksums, no extra dependency.
  code_path = None

  def __init__(self, *, workers: int = 1, use_beam: bool = False, max_clips: int | None = None,
               **kwargs: Any):
    self._workers = max(1, int(workers))
    self._use_beam = bool(use_beam)
    self._max_clips = max_clips
    super().__init__(**kwargs)

  # --- What the set holds --------------------------------------------------------------------

  @property
  def has_ground_truth(self) -> bool:
    return False

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=features_lib.clip_features(
            config.size, config.audio_rates, synthtalk=self.has_ground_truth,
            unprojection_frames=config.unprojection_frames),
        homepage=self.HOMEPAGE or None,
        metadata=tfds.core.MetadataDict(config.settings()),
    )

  @property
  def artifacts(self) -> artifacts_lib.Artifacts:
    return artifacts_lib.Artifacts.of(self.data_dir_root, self.name, self.builder_config.name)

  def _extra_features(self, manual_dir: pathlib.Path):
    """The `examples.ExampleJob.extra` of this data set (None: no ground truth)."""
    del manual_dir
    return None

  # --- Generation ------------------------------------------------------------------------------

  def clips_to_build(self, manual_dir: str | os.PathLike) -> dict[str, list[sources.ClipSource]]:
    """Per split, the clips whose landmarks are done and that were not rejected."""
    from talkinghead_jax.data import rejects

    artifacts = self.artifacts
    rejected = {r["clip"] for r in rejects.RejectsManifest(artifacts.rejects).records()}
    clips = sources.find_clips(self.SOURCE, manual_dir, self._max_clips)
    return {split: [c for c in clips if c.split == split and c.clip_id not in rejected
                    and artifacts.landmarks(c.split, c.clip_id).is_file()]
            for split in sources.SPLITS}

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = pathlib.Path(dl_manager.manual_dir)
    artifacts = self.artifacts
    canonical = np.load(artifacts.canonical).astype(np.float32)
    config = self.builder_config
    job = examples_lib.ExampleJob(
        artifacts_root=str(artifacts.root), canonical=canonical, size=config.size,
        audio_rates=tuple(config.audio_rates), extra=self._extra_features(manual_dir))
    # A split without a single clip cannot be written (tfds needs one example per shard).
    return {split: self._generate_examples(clips=clips, job=job)
            for split, clips in self.clips_to_build(manual_dir).items() if clips}

  def _generate_examples(self, clips: list[sources.ClipSource], job: examples_lib.ExampleJob):
    if self._use_beam:
      beam = tfds.core.lazy_imports.apache_beam
      return beam.Create(clips) | beam.FlatMap(job)
    return _local_examples(clips, job, self._workers)


def _local_examples(clips: list[sources.ClipSource], job: examples_lib.ExampleJob,
                    workers: int) -> Iterator[examples_lib.KeyExample]:
  for results in pool.ordered_map(job, clips, min(workers, len(clips))):
    yield from results
