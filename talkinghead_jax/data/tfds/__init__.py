"""tfds data sets of prepared clips: builders `synthtalk`, `voxceleb2`, `lrs3`, and their reader.

    dataset = open_dataset("prepared", "synthtalk", "sidecar_64")
    train = dataset.builder.as_dataset(split="train")     # one example per clip
    dataset.canonical, dataset.pca, dataset.info, dataset.split_sizes

Modules: `sources` (clips of a manual folder), `artifacts` (the files beside the tfds data),
`landmark_pass` (pass 1), `examples` (one clip → one example, pass 2's per-clip work),
`synthtalk_truth` (SynthTalk's ground truth in crop coordinates), `pool` (the process pool),
`features` (the feature spec), `builder` (the shared builder), `synthtalk` / `voxceleb2` /
`lrs3` (one builder each), `prepare` (the whole flow behind `talkinghead prepare`). Only
`features`, `builder`, the three builders and `open_dataset` load TensorFlow: the workers of
both passes run without it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import numpy as np

from talkinghead_jax.errors import TalkingHeadError

FPS = 25


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedDataset:
  """A prepared (dataset, config): the tfds builder and the artifacts made with it.

  builder: the tfds builder (`builder.as_dataset(split=...)`, `builder.info`).
  canonical: (68, 3) float32, the canonical face the poses are against (crop pixels).
  pca: geometry.pca.LandmarkPCA of the train split's frontal landmarks.
  info: {"size", "audio_rates", "fps", "detector", "unprojection_frames"}.
  split_sizes: {"train": clips, "test": clips}.
  """

  builder: Any
  canonical: np.ndarray
  pca: Any
  info: dict[str, Any]
  split_sizes: dict[str, int]


def prepare_command(dataset: str, data_dir: str | os.PathLike, config_name: str) -> str:
  """The `talkinghead prepare` command that makes (dataset, config_name) in data_dir."""
  detector, _, size = config_name.rpartition("_")
  if not detector or not size.isdigit():
    detector, size = "DETECTOR", "SIZE"
  return (f"talkinghead prepare --dataset {dataset} --manual-dir DIR --data-dir "
          f"{os.fspath(data_dir)} --detector {detector} --size {size}")


def open_dataset(data_dir: str | os.PathLike, dataset: str,
                 config_name: str | None = None) -> PreparedDataset:
  """The prepared `dataset` with builder config `config_name` (e.g. "sidecar_64") in data_dir;
  without a config name, the only one prepared there.

  Raises TalkingHeadError, naming the `talkinghead prepare` command that makes it, when the
  build or its artifacts are missing.
  """
  from talkinghead_jax.data.tfds import artifacts as artifacts_lib
  from talkinghead_jax.data.tfds import builder as builder_lib
  from talkinghead_jax.data.tfds import prepare
  from talkinghead_jax.geometry.pca import LandmarkPCA

  cls = prepare.builder_class(dataset)
  if config_name is None:
    folder = pathlib.Path(data_dir) / artifacts_lib.ARTIFACTS_DIR / cls.name
    names = sorted(p.parent.name for p in folder.glob("*/settings.json"))
    if len(names) != 1:
      raise TalkingHeadError(
          f"name the builder config of {dataset} in {os.fspath(data_dir)}: "
          + (f"there are {', '.join(names)}" if names else
             f"none is prepared; run `{prepare_command(dataset, data_dir, 'DETECTOR_SIZE')}`"))
    config_name = names[0]
  artifacts = artifacts_lib.Artifacts.of(data_dir, cls.name, config_name)
  missing = f"run `{prepare_command(dataset, data_dir, config_name)}`"
  settings = artifacts.read_settings()
  if settings is None:
    raise TalkingHeadError(f"no prepared {dataset} data set {config_name!r} in "
                           f"{os.fspath(data_dir)} (no {artifacts.settings}); {missing}")
  config = builder_lib.config_from_settings(settings)
  if config.name != config_name:
    raise TalkingHeadError(f"{artifacts.settings} describes config {config.name!r}, not "
                           f"{config_name!r}")
  builder = cls(config=config, data_dir=data_dir)
  if not builder.is_prepared() or not artifacts.canonical.is_file() or not artifacts.pca.is_file():
    raise TalkingHeadError(f"the {dataset} data set {config_name!r} in {os.fspath(data_dir)} is "
                           f"not completely built (no finished {builder.data_dir}); {missing}")
  canonical = prepare.read_canonical(artifacts.canonical)
  pca = LandmarkPCA.load(artifacts.pca)
  info = {"size": config.size, "audio_rates": tuple(config.audio_rates), "fps": FPS,
          "detector": config.detector, "unprojection_frames": config.unprojection_frames}
  split_sizes = {name: int(split.num_examples) for name, split in builder.info.splits.items()}
  return PreparedDataset(builder=builder, canonical=canonical, pca=pca, info=info,
                         split_sizes=split_sizes)
